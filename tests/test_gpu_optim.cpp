// GPU checks of the multi-tensor optimiser kernels (cuda/optim_kernels.cu), ctest label `gpu`
// through tests/gpu_tests.sh (world rank 0; compiled in CUDA builds so a CPU machine type-checks
// them; like the other Gpu* suites they fail, not skip, without a CUDA device):
//   GpuKernelOptim.*  sanitize + Adam + EMA on many tensors (several chunks per tensor, hundreds of
//                     chunks per launch, NaN/inf gradients, per-tensor step counts, float16
//                     gradients) on CUDA against the fused CPU loops: the same bits, since both run
//                     cuda/optim_math.h and every operation there is one IEEE operation (nvcc
//                     without fast math: IEEE division and sqrt, no contraction of the explicit
//                     fma's operands).
#ifdef STYLEFORGE_WITH_CUDA
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tests/gpu_test_util.h"
#include "trainer/device.h"
#include "trainer/optim.h"
#include "trainer/param_store.h"

using namespace sf::trainer;

namespace {

using sf::gpu_test::world_rank0;

using sf::gpu_test::kCuda;

// Fused optimiser on both device kinds while a test runs; restores the previous choice.
struct FusedOptim {
  FusedOptim() : cpu(set_optim_cpu_path(true)), cuda(set_optim_cuda_path(true)) {}
  ~FusedOptim() {
    set_optim_cpu_path(cpu);
    set_optim_cuda_path(cuda);
  }
  std::optional<bool> cpu, cuda;
};

// 300 small tensors of odd sizes and a few spanning several 16384-element chunks.
std::vector<int64_t> sizes() {
  std::vector<int64_t> out = {1, 0, 16384, 16385, 3 * 16384 + 7, (1 << 20) + 3};
  auto g = at::detail::createCPUGenerator(77);
  at::Tensor r = at::randint(1, 5000, {300}, g, at::kLong);
  for (int64_t i = 0; i < r.numel(); ++i) out.push_back(r[i].item<int64_t>());
  return out;
}

ParamStore make_store(uint64_t seed) {
  ParamStore s;
  auto g = at::detail::createCPUGenerator(seed);
  const auto n = sizes();
  for (size_t i = 0; i < n.size(); ++i) s.param("p" + std::to_string(i), at::randn({n[i]}, g));
  s.buffer("buf", at::randn({33}, g));
  return s;
}

// Gradients of step k (CPU, float32): tensor 3 has none at step 0; NaN/+-inf sprinkled in.
std::map<std::string, at::Tensor> make_grads(int k) {
  std::map<std::string, at::Tensor> out;
  auto g = at::detail::createCPUGenerator(500 + k);
  const auto n = sizes();
  for (size_t i = 0; i < n.size(); ++i) {
    if (i == 3 && k == 0) continue;
    at::Tensor t = at::randn({n[i]}, g) * (i % 2 ? 5.0 : 0.01);
    for (int64_t j = k; j < n[i]; j += 997) {
      const float special[] = {std::numeric_limits<float>::quiet_NaN(), INFINITY, -INFINITY};
      t[j] = special[(j / 997) % 3];
    }
    out["p" + std::to_string(i)] = t;
  }
  return out;
}

void set_grads(const ParamStore& s, const std::map<std::string, at::Tensor>& grads, c10::Device dev,
               at::ScalarType dtype) {
  for (const auto& e : s.entries()) {
    if (e.is_buffer) continue;
    auto it = grads.find(e.name);
    e.tensor.mutable_grad() = it == grads.end() ? at::Tensor() : it->second.to(dtype).to(dev);
  }
}

::testing::AssertionResult same_bits(const at::Tensor& cuda, const at::Tensor& cpu) {
  at::Tensor a = cuda.detach().cpu().contiguous(), b = cpu.detach().contiguous();
  if (!a.sizes().equals(b.sizes()) || a.scalar_type() != b.scalar_type())
    return ::testing::AssertionFailure() << "shape or dtype differs";
  if (a.numel() == 0 || std::memcmp(a.data_ptr(), b.data_ptr(), a.nbytes()) == 0)
    return ::testing::AssertionSuccess();
  at::Tensor d = (a - b).abs();
  return ::testing::AssertionFailure() << "not the same bits: " << (a != b).sum().item<int64_t>() << " of " << a.numel()
                                       << " differ, max |diff| " << d.nan_to_num().max().item<double>();
}

void run_and_compare(bool half_grads) {
  FusedOptim fused;
  ParamStore cpu = make_store(1), gpu = make_store(1);
  gpu.to(kCuda);
  ParamStore ema_cpu = make_store(2), ema_gpu = make_store(2);
  ema_gpu.to(kCuda);
  const Adam::Options o{0.002, 0.3, 0.99, 1e-8};
  Adam a_cpu(cpu, o), a_gpu(gpu, o);
  for (int k = 0; k < 3; ++k) {
    const auto grads = make_grads(k);
    // float16 gradients on CUDA; the CPU sees the same values in float32 (exact).
    set_grads(cpu, grads, c10::Device(c10::kCPU), half_grads ? at::kHalf : at::kFloat);
    for (const auto& e : cpu.entries())
      if (!e.is_buffer && e.tensor.grad().defined()) e.tensor.mutable_grad() = e.tensor.grad().to(at::kFloat);
    set_grads(gpu, grads, kCuda, half_grads ? at::kHalf : at::kFloat);
    if (!half_grads) {
      sanitize_gradients(cpu);
      sanitize_gradients(gpu);
      for (const auto& [n, g] : grads) ASSERT_TRUE(same_bits(gpu.at(n).grad(), cpu.at(n).grad())) << n << " step " << k;
    } else {
      // float16 cannot hold 1e5: the gradients are cleaned before the cast.
      for (const auto* s : {&cpu, &gpu})
        for (const auto& e : s->entries())
          if (!e.is_buffer && e.tensor.grad().defined())
            e.tensor.mutable_grad() = at::nan_to_num(e.tensor.grad(), 0.0, 100.0, -100.0);
    }
    a_cpu.step();
    a_gpu.step();
    update_ema(ema_cpu, cpu, 0.99);
    update_ema(ema_gpu, gpu, 0.99);
    std::map<std::string, at::Tensor> sc, sg;
    for (const auto& [key, t] : a_cpu.state_tensors()) sc[key] = t;
    for (const auto& [key, t] : a_gpu.state_tensors()) sg[key] = t;
    ASSERT_EQ(sc.size(), sg.size());
    for (const auto& [key, t] : sc) {
      ASSERT_TRUE(sg.count(key)) << key;
      if (key.size() > 5 && key.substr(key.size() - 5) == "/step")
        EXPECT_EQ(t.item<int64_t>(), sg.at(key).item<int64_t>()) << key;
      else
        ASSERT_TRUE(same_bits(sg.at(key), t)) << key << " step " << k;
    }
    for (size_t i = 0; i < cpu.entries().size(); ++i) {
      const auto& e = cpu.entries()[i];
      ASSERT_TRUE(same_bits(gpu.entries()[i].tensor, e.tensor)) << e.name << " step " << k;
      ASSERT_TRUE(same_bits(ema_gpu.entries()[i].tensor, ema_cpu.entries()[i].tensor)) << "ema " << e.name << " step " << k;
    }
  }
  // Tensor 3 missed step 0: its step count lags.
  EXPECT_EQ(a_gpu.state_tensors().size(), a_cpu.state_tensors().size());
  for (const auto& [key, t] : a_gpu.state_tensors())
    if (key == "p3/step") EXPECT_EQ(t.item<int64_t>(), 2);
  // The EMA buffer is a copy.
  EXPECT_TRUE(same_bits(ema_gpu.at("buf"), gpu.at("buf").cpu()));
}

}  // namespace

TEST(GpuKernelOptim, MultiTensorMatchesCpuFused) {
  if (!world_rank0()) return;
  ASSERT_GE(visible_gpu_count(), 1) << "no CUDA device visible";
  run_and_compare(false);
}

TEST(GpuKernelOptim, MultiTensorHalfGradientsMatchCpuFused) {
  if (!world_rank0()) return;
  ASSERT_GE(visible_gpu_count(), 1) << "no CUDA device visible";
  run_and_compare(true);
}

#endif  // STYLEFORGE_WITH_CUDA
