// Device-generic training: device resolution, the wrong-device check, the bucket hooks that
// launch gradient reductions while backward runs, the shared gradient clean-up arithmetic, and
// random streams saved with their device kind.
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "sharding/bucket_reducer.h"
#include "sharding/communicator.h"
#include "test_data_util.h"
#include "trainer/cuda/bucket_ops.h"
#include "trainer/device.h"
#include "trainer/training_step.h"

using namespace sf;

namespace {

trainer::TrainOptions small_options() {
  trainer::TrainOptions o;
  o.dataset_name = "device";
  o.batch_override = 4;
  o.cbase_override = 256;
  o.cmax_override = 16;
  o.map_override = 2;
  o.mbstd_override = 2;
  o.aug = "noaug";
  o.resolve(16, 1, 0, 16, 1);
  return o;
}

// Records launches; `probe` runs at each launch (to look at what backward has written so far).
class RecordingReducer final : public sharding::BucketReducer {
 public:
  std::vector<std::pair<float*, size_t>> launched;
  std::function<void()> probe;
  int finishes = 0;
  void launch(float* data, size_t count) override {
    launched.emplace_back(data, count);
    if (probe) probe();
  }
  void finish() override { ++finishes; }
  std::string describe() const override { return "recording"; }
};

}  // namespace

TEST(Device, ResolvesSpecsAndRefusesMissingGpus) {
  EXPECT_TRUE(trainer::resolve_device("cpu", 0, 1, false).is_cpu());
  EXPECT_THROW(trainer::resolve_device("tpu", 0, 1, false), std::invalid_argument);
  if (trainer::visible_gpu_count() == 0) {
    EXPECT_TRUE(trainer::resolve_device("auto", 0, 1, false).is_cpu());
    try {
      trainer::resolve_device("cuda", 0, 1, false);
      ADD_FAILURE() << "--device cuda without a GPU was accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("no GPU is visible"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("CUDA_VISIBLE_DEVICES"), std::string::npos) << e.what();
    }
  } else {
    const int n = trainer::visible_gpu_count();
    EXPECT_TRUE(trainer::resolve_device("auto", 0, 1, false).is_cuda());
    EXPECT_EQ(trainer::resolve_device("cuda", n - 1, n, false).index(), n == 1 ? 0 : n - 1);
    EXPECT_THROW(trainer::resolve_device("cuda", 0, n + 1, false), std::invalid_argument);  // more trainers than GPUs
    EXPECT_TRUE(trainer::resolve_device("cuda", 0, n + 1, true).is_cuda());
  }
}

TEST(Device, StepRefusesTensorsOnAnotherDevice) {
  sharding::LocalCommunicator comm;
  trainer::TrainingStep step(small_options(), comm, {});
  at::Tensor reals = at::zeros({4, 1, 16, 16}, at::kByte);
  // Inputs on a device that is neither the host nor the step's device.
  try {
    step.iteration(at::empty({4, 1, 16, 16}, at::TensorOptions().dtype(at::kByte).device(at::kMeta)), at::Tensor());
    ADD_FAILURE() << "images on the meta device were accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("are on meta, the step runs on cpu"), std::string::npos) << e.what();
  }
  // A gradient created on the wrong device is caught by name before the step uses it.
  const trainer::NamedTensor* pe = nullptr;
  for (const auto& x : step.D().state().entries())
    if (!x.is_buffer && x.trainable && !pe) pe = &x;
  ASSERT_NE(pe, nullptr);
  const auto& e = *pe;
  const_cast<at::Tensor&>(e.tensor).mutable_grad() = at::empty(e.tensor.sizes(), at::TensorOptions().device(at::kMeta));
  try {
    step.iteration(reals, at::Tensor());
    ADD_FAILURE() << "a gradient on the meta device was accepted";
  } catch (const std::runtime_error& err) {
    EXPECT_NE(std::string(err.what()).find("D." + e.name + ".grad is on meta"), std::string::npos) << err.what();
  }
  const_cast<at::Tensor&>(e.tensor).mutable_grad() = at::Tensor();
  step.iteration(reals, at::Tensor());  // and a clean step runs
  EXPECT_EQ(step.counters().batch_idx, 1);
}

TEST(GradientSyncHooks, BucketsLaunchInOrderWhileBackwardRuns) {
  // A chain x -> W1 -> W2 -> W3 -> loss; registration order W1, W2, W3, so the buckets (filled in
  // reverse) are [W3], [W2], [W1] with a tiny bucket size. Backward produces W3's gradient first.
  at::Generator g = trainer::make_cpu_generator(5);
  std::vector<at::Tensor> params;
  for (int i = 0; i < 3; ++i) params.push_back(at::randn({8, 8}, g).requires_grad_(true));
  trainer::GradientSync sync(16);
  sync.attach(params);
  ASSERT_EQ(sync.num_buckets(), 3);
  RecordingReducer rec;
  std::vector<double> w1_grad_norm_at_launch;
  rec.probe = [&] { w1_grad_norm_at_launch.push_back(params[0].grad().abs().sum().item<double>()); };
  at::Tensor x = at::randn({4, 8}, g);
  for (int round = 0; round < 2; ++round) {  // two accumulation rounds; only the last one is armed
    if (round == 1) sync.arm(&rec);
    at::Tensor y = at::tanh(at::matmul(at::tanh(at::matmul(at::tanh(at::matmul(x, params[0])), params[1])), params[2]));
    y.square().sum().backward();
    if (round == 0) EXPECT_TRUE(rec.launched.empty()) << "launched in a round that was not armed";
  }
  // Every bucket was launched by the hooks during backward, before finish(), in bucket order.
  ASSERT_EQ(rec.launched.size(), 3u);
  EXPECT_EQ(rec.launched[0].first, params[2].grad().data_ptr<float>());
  EXPECT_EQ(rec.launched[1].first, params[1].grad().data_ptr<float>());
  EXPECT_EQ(rec.launched[2].first, params[0].grad().data_ptr<float>());
  // When W3's bucket went out, backward had not yet finished W1's gradient of the last round: its
  // bucket held only the first round's contribution.
  ASSERT_EQ(w1_grad_norm_at_launch.size(), 3u);
  EXPECT_LT(w1_grad_norm_at_launch[0], w1_grad_norm_at_launch[2]);
  sync.finish(&rec);
  EXPECT_EQ(rec.finishes, 1);
  EXPECT_EQ(rec.launched.size(), 3u);  // nothing launched twice
}

TEST(GradientSyncHooks, UnusedParametersAreLaunchedAtFinish) {
  std::vector<at::Tensor> params = {at::ones({4}).requires_grad_(true), at::ones({4}).requires_grad_(true)};
  trainer::GradientSync sync(8);
  sync.attach(params);
  ASSERT_EQ(sync.num_buckets(), 2);
  RecordingReducer rec;
  sync.arm(&rec);
  (params[0] * 3).sum().backward();  // params[1] (bucket 0) never gets a gradient
  EXPECT_TRUE(rec.launched.empty());  // bucket 1 waits for bucket 0: launches stay in order
  sync.finish(&rec);
  ASSERT_EQ(rec.launched.size(), 2u);
  EXPECT_EQ(rec.launched[0].first, params[1].grad().data_ptr<float>());
  EXPECT_EQ(params[0].grad()[0].item<float>(), 3.0f);
  EXPECT_EQ(params[1].grad()[0].item<float>(), 0.0f);
}

TEST(GradientSyncHooks, SanitizeArithmeticMatchesNanToNum) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> v = {0.0f, -0.0f, 1.5f, -2.0f, 1e30f, -1e30f, 1e5f, 1.0001e5f, inf, -inf, nan,
                          std::numeric_limits<float>::denorm_min(), std::numeric_limits<float>::max()};
  at::Tensor ref = at::nan_to_num(at::tensor(v), 0.0, 1e5, -1e5);
  std::vector<float> ours = v;
  kernels::sanitize_gradients_host(ours.data(), ours.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const float r = ref[static_cast<int64_t>(i)].item<float>();
    EXPECT_EQ(std::memcmp(&ours[i], &r, 4), 0) << "element " << i << ": " << v[i] << " -> " << ours[i] << " vs " << r;
  }
  // The bucket pass through GradientSync gives the same values.
  std::vector<at::Tensor> params = {at::zeros({static_cast<int64_t>(v.size())}).requires_grad_(true)};
  trainer::GradientSync sync;
  sync.attach(params);
  params[0].mutable_grad().copy_(at::tensor(v));
  sync.finish(nullptr);
  sync.sanitize();
  EXPECT_TRUE(at::equal(params[0].grad(), ref));
}

TEST(Device, RandomStreamsCarryTheirDeviceKind) {
  sharding::LocalCommunicator comm;
  trainer::TrainingStep a(small_options(), comm, {});
  at::Tensor reals = at::zeros({4, 1, 16, 16}, at::kByte);
  a.iteration(reals, at::Tensor());
  auto states = a.gather_rng_states();
  for (const auto& [name, t] : states) EXPECT_EQ(name.rfind("cuda.", 0), std::string::npos) << name;
  trainer::TrainingStep b(small_options(), comm, {});
  EXPECT_TRUE(b.restore_rng_states(states));  // same device kind: exact
  auto from_gpu = states;
  from_gpu["cuda.global"] = at::zeros({16}, at::kByte);
  from_gpu["cuda.local"] = at::zeros({16}, at::kByte);
  from_gpu["cuda.augment"] = at::zeros({16}, at::kByte);
  trainer::TrainingStep c(small_options(), comm, {});
  EXPECT_FALSE(c.restore_rng_states(from_gpu));  // a CUDA run's device streams: re-seeded here
  // The CPU streams continue exactly either way.
  b.iteration(reals, at::Tensor());
  c.iteration(reals, at::Tensor());
  for (size_t i = 0; i < b.G().state().entries().size(); ++i)
    EXPECT_TRUE(at::equal(b.G().state().entries()[i].tensor, c.G().state().entries()[i].tensor))
        << b.G().state().entries()[i].name;
}
