// GPU checks of the fused upfirdn2d kernel (ctest label `gpu` through tests/gpu_tests.sh, world
// rank 0; compiled in CUDA builds so a CPU machine type-checks them; like the other Gpu* suites
// they fail, not skip, without a CUDA device):
//   GpuKernelUpfirdn2d.*  the kernel on CUDA against the CPU loop (the same cuda/upfirdn2d_math.h
//                         arithmetic) and against the ATen formulation on CUDA: forward, backward
//                         and double backward, float32 and float16, and the dispatch switch;
//                         the 32- and 64-bit index paths of both element-wise kernels agree.
#ifdef STYLEFORGE_WITH_CUDA
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <mpi.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "tests/gpu_test_util.h"
#include "trainer/cuda/index_width.h"
#include "trainer/device.h"
#include "trainer/ops.h"

using namespace sf;
using namespace sf::trainer;

namespace {

using sf::gpu_test::world_rank0;

using sf::gpu_test::kCuda;

// Sets the CUDA dispatch of upfirdn2d for one scope.
struct CudaFused {
  explicit CudaFused(bool on) : before(ops::upfirdn2d_fused_is_default(true)) { ops::set_upfirdn2d_cuda_default(on); }
  ~CudaFused() { ops::set_upfirdn2d_cuda_default(before); }
  bool before;
};

struct GpuUpfCase {
  std::string name;
  std::vector<int64_t> shape;
  int filter;  // 0: identity, 1: 2-D fh x fw, 2: separable fh taps
  int fh, fw;
  int upx, upy, downx, downy;
  ops::Pad pad;
  bool flip;
  double gain;
};

const std::vector<GpuUpfCase> kCases = {
    {"identity odd", {2, 3, 5, 7}, 0, 1, 1, 1, 1, 1, 1, {}, false, 1.0},
    {"2-D 3x4 flip gain", {2, 2, 5, 7}, 1, 3, 4, 1, 1, 1, 1, {2, 1, 1, 1}, true, 1.7},
    {"up 2 4x4", {2, 3, 5, 7}, 1, 4, 4, 2, 2, 1, 1, {2, 1, 2, 1}, false, 4.0},
    {"down 2 4x4", {2, 3, 9, 11}, 1, 4, 4, 1, 1, 2, 2, {1, 1, 1, 1}, false, 1.0},
    {"up 2 down 2", {1, 3, 6, 5}, 1, 4, 4, 2, 2, 2, 2, {1, 2, 2, 1}, true, 1.3},
    {"per-axis up/down", {2, 2, 7, 5}, 1, 3, 5, 3, 1, 1, 2, {2, 0, 1, 3}, false, 1.0},
    {"negative padding", {2, 2, 9, 8}, 1, 2, 3, 1, 2, 1, 1, {-2, -1, -1, -3}, false, 1.0},
    {"separable 12-tap up 2", {2, 3, 8, 9}, 2, 12, 12, 2, 2, 1, 1, {6, 5, 6, 5}, false, 4.0},
    {"separable 12-tap down 2 flip", {2, 3, 16, 17}, 2, 12, 12, 1, 1, 2, 2, {-1, -2, -2, -1}, true, 1.0},
    {"network up 8x128x16x16", {8, 128, 16, 16}, 1, 4, 4, 2, 2, 1, 1, {2, 1, 2, 1}, false, 4.0},
    {"large 64x96x67x45", {64, 96, 67, 45}, 1, 4, 4, 2, 2, 2, 2, {1, 2, 2, 1}, false, 1.0},
    // Past the grid's 65535 blocks along z (planes, 64 per block at 1x1) and y (rows, 256 per block
    // one pixel wide): the kernel's stride loops.
    {"4.4M planes of 1x1, 3x3 pad 1", {4, 1100000, 1, 1}, 1, 3, 3, 1, 1, 1, 1, {1, 1, 1, 1}, false, 1.0},
    {"one column of 16.8M rows, up 2", {1, 1, 16800000, 1}, 2, 4, 4, 2, 2, 1, 1, {2, 1, 2, 1}, false, 2.0},
};

// y; the gradient of sum(y^2 * p); the gradient of sum(g^2 * q) (double backward). Returned in
// float32 on the CPU. mode 0: fused on x's device; 1: ATen on x's device (fused off).
std::vector<at::Tensor> derivs(int mode, const at::Tensor& x0, const at::Tensor& f, const GpuUpfCase& c,
                               const at::Tensor& p, const at::Tensor& q) {
  at::Tensor x = x0.detach().clone().requires_grad_(true);
  at::Tensor y;
  if (mode == 0) {
    y = ops::upfirdn2d_fused(x, f, c.upx, c.upy, c.downx, c.downy, c.pad, c.flip, c.gain);
  } else {
    CudaFused off(false);
    const ops::Upfirdn2dCpuPath cpu_before = ops::upfirdn2d_cpu_path();
    ops::set_upfirdn2d_cpu_default(false);
    y = ops::upfirdn2d(x, f, c.upx, c.upy, c.downx, c.downy, c.pad, c.flip, c.gain);
    ops::set_upfirdn2d_cpu_path(cpu_before);
  }
  EXPECT_EQ(y.scalar_type(), x0.scalar_type()) << c.name;
  at::Tensor g = torch::autograd::grad({(y.square() * p).sum()}, {x}, {}, true, true)[0];
  at::Tensor gg = torch::autograd::grad({(g.square() * q).sum()}, {x})[0];
  auto host = [](const at::Tensor& t) { return t.detach().to(at::kFloat).cpu().contiguous(); };
  return {host(y), host(g), host(gg)};
}

// max |a - b| <= tol * max(1, max |b|); returns the ratio to that bound (<= 1 passes).
double bound_ratio(const at::Tensor& a, const at::Tensor& b, double tol) {
  if (a.sizes() != b.sizes()) return 1e30;
  const double scale = std::max(1.0, b.abs().max().item<double>());
  return (a - b).abs().max().item<double>() / (tol * scale);
}

}  // namespace

// The kernel against the CPU loop and the ATen formulation. Tolerances, of the values' scale
// max(1, max|ref|): float32 1e-5 (forward, first order), 1e-4 (second order); float16 in units
// of the float16 ulp at that scale (2^-10): against the CPU loop in float32 on the same float16
// inputs 2 ulp forward, 16 and 64 ulp for the first and second order (the losses are evaluated
// in float16 there); against the ATen formulation in float16 (rounds after every operator) 4, 32
// and 128 ulp.
TEST(GpuKernelUpfirdn2d, FusedMatchesCpuLoopAndAten) {
  if (!world_rank0()) return;
  ASSERT_GE(visible_gpu_count(), 1) << "no CUDA device visible";
  const double ulp16 = std::ldexp(1.0, -10);
  uint64_t seed = 900;
  for (const GpuUpfCase& c : kCases) {
    for (at::ScalarType st : {at::kFloat, at::kHalf}) {
      auto g = at::detail::createCPUGenerator(seed++);
      at::Tensor x = at::randn(c.shape, g).to(st);
      at::Tensor f;
      if (c.filter == 1) f = at::rand({c.fh, c.fw}, g) + 0.1;
      if (c.filter == 2) f = at::rand({c.fh}, g) + 0.1;
      // The output shape, for the probe p.
      at::Tensor y0 = ops::upfirdn2d_fused(x.to(at::kFloat), f, c.upx, c.upy, c.downx, c.downy, c.pad, c.flip, c.gain);
      at::Tensor p = (at::randn(y0.sizes(), g) * 0.5).to(st), q = (at::randn(c.shape, g) * 0.5).to(st);
      auto cu = [&](const at::Tensor& t) { return t.defined() ? t.to(kCuda) : t; };
      auto fused = derivs(0, cu(x), cu(f), c, cu(p), cu(q));
      auto aten = derivs(1, cu(x), cu(f), c, cu(p), cu(q));
      auto cpu = derivs(0, x.to(at::kFloat), f, c, p.to(at::kFloat), q.to(at::kFloat));
      const bool half = st == at::kHalf;
      const double tc[3] = {half ? 2 * ulp16 : 1e-5, half ? 16 * ulp16 : 1e-5, half ? 64 * ulp16 : 1e-4};
      const double ta[3] = {half ? 4 * ulp16 : 1e-5, half ? 32 * ulp16 : 1e-5, half ? 128 * ulp16 : 1e-4};
      const char* names[3] = {"forward", "backward", "double backward"};
      for (int k = 0; k < 3; ++k) {
        const std::string what = c.name + (half ? " f16 " : " f32 ") + names[k];
        EXPECT_LE(bound_ratio(fused[k], cpu[k], tc[k]), 1.0) << what << " CUDA vs CPU loop";
        EXPECT_LE(bound_ratio(fused[k], aten[k], ta[k]), 1.0) << what << " CUDA fused vs ATen";
        EXPECT_TRUE(fused[k].isfinite().all().item<bool>()) << what;
      }
    }
  }
}

// upfirdn2d() dispatches CUDA tensors to the kernel exactly when switched on; a third order works.
TEST(GpuKernelUpfirdn2d, DispatchAndThirdOrder) {
  if (!world_rank0()) return;
  ASSERT_GE(visible_gpu_count(), 1) << "no CUDA device visible";
  at::Tensor f = ops::setup_filter({1, 3, 3, 1}).to(kCuda);
  at::Tensor x = at::randn({2, 4, 6, 6}, at::detail::createCPUGenerator(3)).to(kCuda).requires_grad_(true);
  at::Tensor r = at::randn({2, 4, 6, 6}, at::detail::createCPUGenerator(4)).to(kCuda);
  std::vector<at::Tensor> g3s;
  for (bool on : {false, true}) {
    CudaFused sw(on);
    at::Tensor y = ops::upsample2d(x, f);
    const std::string node = y.grad_fn() ? y.grad_fn()->name() : "";
    EXPECT_EQ(node.find("Upfirdn2dFn") != std::string::npos, on) << node;
    at::Tensor g1 = torch::autograd::grad({y.pow(4).sum()}, {x}, {}, true, true)[0];
    at::Tensor g2 = torch::autograd::grad({g1.square().sum()}, {x}, {}, true, true)[0];
    g3s.push_back(torch::autograd::grad({(g2 * r).sum()}, {x})[0].cpu());
  }
  EXPECT_LE(bound_ratio(g3s[1], g3s[0], 1e-4), 1.0);
}

// The 32-bit index path (taken wherever every index fits, so by all the cases above) and the 64-bit
// one give the same values, bit for bit: only the index arithmetic differs. Forward and both
// gradients of upfirdn2d (every case above) and of bias_act (bias along dims 1 and 3).
TEST(GpuKernelUpfirdn2d, WideIndicesGiveTheSameValues) {
  if (!world_rank0()) return;
  ASSERT_GE(visible_gpu_count(), 1) << "no CUDA device visible";
  struct Wide {
    explicit Wide(bool on) { kernels::force_wide_index(on); }
    ~Wide() { kernels::force_wide_index(false); }
  };
  uint64_t seed = 1900;
  for (const GpuUpfCase& c : kCases) {
    auto g = at::detail::createCPUGenerator(seed++);
    at::Tensor x = at::randn(c.shape, g).to(kCuda);
    at::Tensor f;
    if (c.filter == 1) f = (at::rand({c.fh, c.fw}, g) + 0.1).to(kCuda);
    if (c.filter == 2) f = (at::rand({c.fh}, g) + 0.1).to(kCuda);
    at::Tensor y0 = ops::upfirdn2d_fused(x, f, c.upx, c.upy, c.downx, c.downy, c.pad, c.flip, c.gain);
    at::Tensor p = at::randn(y0.sizes(), g).to(kCuda), q = at::randn(c.shape, g).to(kCuda);
    std::vector<at::Tensor> r[2];
    for (int wide : {0, 1}) {
      Wide w(wide == 1);
      r[wide] = derivs(0, x, f, c, p, q);
    }
    for (int k = 0; k < 3; ++k) EXPECT_TRUE(at::equal(r[0][k], r[1][k])) << c.name << " output " << k;
  }
  for (int64_t dim : {1, 3}) {
    auto g = at::detail::createCPUGenerator(seed++);
    at::Tensor x0 = at::randn({4, 8, 5, 7}, g).to(kCuda), b0 = at::randn({x0.size(dim)}, g).to(kCuda);
    at::Tensor p = at::randn(x0.sizes(), g).to(kCuda), q = at::randn(x0.sizes(), g).to(kCuda);
    std::vector<at::Tensor> r[2];
    for (int wide : {0, 1}) {
      Wide w(wide == 1);
      at::Tensor x = x0.clone().requires_grad_(true), b = b0.clone().requires_grad_(true);
      at::Tensor y = ops::bias_act_fused(x, b, dim, ops::Act::Lrelu, std::nullopt, std::nullopt, 256.0);
      auto d = torch::autograd::grad({(y * p).sum()}, {x, b}, {}, true, true);
      auto dd = torch::autograd::grad({(d[0].square() * q).sum()}, {x, b});
      r[wide] = {y.detach().cpu(), d[0].detach().cpu(), d[1].detach().cpu(), dd[0].cpu(), dd[1].cpu()};
    }
    for (size_t k = 0; k < r[0].size(); ++k)
      EXPECT_TRUE(at::equal(r[0][k], r[1][k])) << "bias_act dim " << dim << " output " << k;
  }
}

#endif  // STYLEFORGE_WITH_CUDA
