// GPU training checks (ctest label `gpu`, with tests/gpu_tests.sh; compiled in CUDA builds so a CPU
// machine type-checks them): one training iteration on CUDA in float32 against the same iteration
// on the CPU, and the gradient clean-up kernel against its host arithmetic. World rank 0 runs them.
#ifdef STYLEFORGE_WITH_CUDA
#include <ATen/ATen.h>
#include <c10/cuda/CUDAStream.h>
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <vector>

#include "tests/gpu_test_util.h"
#include "sharding/communicator.h"
#include "trainer/cuda/bucket_ops.h"
#include "trainer/device.h"
#include "trainer/training_step.h"

using namespace sf;

namespace {

using sf::gpu_test::world_rank0;

// Deterministic on both devices: constant synthesis noise, no style mixing, augmentation at a fixed
// percentile, and no path length (its noise is drawn from the device's own stream).
trainer::TrainOptions comparable_options() {
  trainer::TrainOptions o;
  o.dataset_name = "gpu";
  o.batch_override = 8;
  o.cbase_override = 2048;
  o.cmax_override = 64;
  o.mbstd_override = 4;
  o.aug = "ada";
  o.resolve(32, 3, 0, 64, 1);
  o.style_mixing_prob = 0;
  o.noise_mode = "const";
  o.augment_debug_percentile = 0.3;
  o.augment_p = 0.5;
  o.pl_weight = 0;
  return o;
}

}  // namespace

TEST(GpuTraining, OneIterationMatchesTheCpu) {
  if (!world_rank0()) return;
  ASSERT_GE(trainer::visible_gpu_count(), 1);
  at::globalContext().setAllowTF32CuBLAS(false);
  at::globalContext().setAllowTF32CuDNN(false);
  sharding::LocalCommunicator comm;
  trainer::TrainingStep cpu(comparable_options(), comm, {}, c10::Device(c10::kCPU));
  trainer::TrainingStep gpu(comparable_options(), comm, {}, c10::Device(c10::kCUDA, 0));
  at::Generator g = trainer::make_cpu_generator(7);
  at::Tensor reals = at::randint(0, 256, {8, 3, 32, 32}, g, at::kByte);
  cpu.iteration(reals, at::Tensor());
  gpu.iteration(reals.pin_memory(), at::Tensor());
  double worst = 0;
  std::string worst_name;
  for (auto [a, b, net] : {std::tuple{&cpu.G(), &gpu.G(), "G"}, std::tuple{&cpu.G_ema(), &gpu.G_ema(), "G_ema"}}) {
    for (size_t i = 0; i < a->state().entries().size(); ++i) {
      const auto& ea = a->state().entries()[i];
      at::Tensor tb = b->state().entries()[i].tensor.cpu();
      const double den = std::max(ea.tensor.norm().item<double>(), 1e-12);
      const double rel = (ea.tensor - tb).norm().item<double>() / den;
      if (rel > worst) worst = rel, worst_name = std::string(net) + "." + ea.name;
      EXPECT_LE(rel, 1e-4) << net << "." << ea.name;
    }
  }
  for (size_t i = 0; i < cpu.D().state().entries().size(); ++i) {
    const auto& ea = cpu.D().state().entries()[i];
    at::Tensor tb = gpu.D().state().entries()[i].tensor.cpu();
    const double rel = (ea.tensor - tb).norm().item<double>() / std::max(ea.tensor.norm().item<double>(), 1e-12);
    if (rel > worst) worst = rel, worst_name = "D." + ea.name;
    EXPECT_LE(rel, 1e-4) << "D." << ea.name;
  }
  std::printf("[ cuda vs cpu ] one iteration (Gmain, Dmain, Dreg), float32: largest relative error %.3g (%s)\n", worst,
              worst_name.c_str());
}

TEST(GpuTraining, SanitizeKernelMatchesHostArithmetic) {
  if (!world_rank0()) return;
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> v;
  for (int i = 0; i < 100003; ++i) v.push_back(i % 7 == 0 ? nan : i % 11 == 0 ? inf : i % 13 == 0 ? -inf : (i - 5e4f) * 3.7f);
  at::Tensor dev = at::tensor(v).to(at::Device(at::kCUDA, 0));
  kernels::sanitize_gradients_device(dev.data_ptr<float>(), v.size(), c10::cuda::getCurrentCUDAStream(0).stream());
  at::Tensor back = dev.cpu();
  kernels::sanitize_gradients_host(v.data(), v.size());
  EXPECT_EQ(std::memcmp(back.data_ptr<float>(), v.data(), v.size() * 4), 0);
}

#endif  // STYLEFORGE_WITH_CUDA
