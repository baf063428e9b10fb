// Fused upfirdn2d (the CPU loop over cuda/upfirdn2d_math.h, the arithmetic the CUDA kernel runs)
// against the ATen formulation (upfirdn2d with the fused CPU default off): forward, backward and
// double backward (torch::autograd::grad with create_graph) over the resampling edge cases, and
// through the wrappers the networks call. Tolerances, of the values' scale max(1, max|ATen|):
// float64 1e-12 (the same sums, another evaluation order), float32 1e-5 (first order) and 1e-4.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tests/network_paths_util.h"
#include "trainer/cuda/upfirdn2d_math.h"
#include "trainer/ops.h"

namespace ops = sf::ops;

namespace {

// Sets the CPU dispatch of upfirdn2d for one scope.
struct CpuFused {
  explicit CpuFused(bool on) : before(ops::upfirdn2d_cpu_path()) { ops::set_upfirdn2d_cpu_default(on); }
  ~CpuFused() { ops::set_upfirdn2d_cpu_path(before); }
  ops::Upfirdn2dCpuPath before;
};

struct UpfCase {
  std::string name;
  std::vector<int64_t> shape;  // N, C, H, W
  int filter;                  // 0: none (identity), 1: 2-D fh x fw, 2: separable `taps`
  int fh, fw;                  // 2-D size, or taps in fh
  int upx, upy, downx, downy;
  ops::Pad pad;
  bool flip;
  double gain;
};

const std::vector<UpfCase>& cases() {
  static const std::vector<UpfCase> c = {
      {"identity", {2, 3, 5, 7}, 0, 1, 1, 1, 1, 1, 1, {}, false, 1.0},
      {"identity 1x1 pad", {1, 2, 5, 7}, 1, 1, 1, 1, 1, 1, 1, {1, 2, -1, 3}, false, 2.5},
      {"2-D 3x3 odd", {2, 3, 5, 7}, 1, 3, 3, 1, 1, 1, 1, {1, 1, 1, 1}, false, 1.0},
      {"2-D 3x4 flip gain", {2, 2, 5, 7}, 1, 3, 4, 1, 1, 1, 1, {2, 1, 1, 1}, true, 1.7},
      {"up 2 4x4", {2, 3, 5, 7}, 1, 4, 4, 2, 2, 1, 1, {2, 1, 2, 1}, false, 4.0},
      {"down 2 4x4", {2, 3, 9, 11}, 1, 4, 4, 1, 1, 2, 2, {1, 1, 1, 1}, false, 1.0},
      {"up 2 down 2", {1, 3, 6, 5}, 1, 4, 4, 2, 2, 2, 2, {1, 2, 2, 1}, true, 1.3},
      {"per-axis up/down", {2, 2, 7, 5}, 1, 3, 5, 3, 1, 1, 2, {2, 0, 1, 3}, false, 1.0},
      {"negative padding", {2, 2, 9, 8}, 1, 2, 3, 1, 2, 1, 1, {-2, -1, -1, -3}, false, 1.0},
      {"asymmetric crop up", {1, 3, 6, 7}, 1, 4, 4, 2, 2, 1, 1, {-3, 5, 4, -2}, true, 1.0},
      {"pad wider than filter", {1, 2, 4, 5}, 1, 3, 3, 1, 1, 3, 2, {6, 0, 0, 5}, false, 0.5},
      {"separable 12-tap up 2", {2, 3, 8, 9}, 2, 12, 12, 2, 2, 1, 1, {6, 5, 6, 5}, false, 4.0},
      {"separable 12-tap down 2 flip", {2, 3, 16, 17}, 2, 12, 12, 1, 1, 2, 2, {-1, -2, -2, -1}, true, 1.0},
      {"separable 5-tap per-axis", {3, 2, 7, 6}, 2, 5, 5, 2, 1, 1, 3, {1, 3, 2, 0}, false, 2.0},
      // Separable, up or down 2 or neither: the CPU's whole-row loop (4 taps fixed, others generic).
      {"separable 4-tap filter only", {2, 3, 9, 10}, 2, 4, 4, 1, 1, 1, 1, {2, 1, 2, 1}, false, 4.0},
      {"separable 4-tap crop flip", {2, 2, 8, 7}, 2, 4, 4, 1, 1, 1, 1, {-1, 3, 2, -2}, true, 1.0},
      {"separable 3-tap rows off the input", {1, 2, 4, 5}, 2, 3, 3, 1, 1, 1, 1, {5, 0, 0, 6}, false, 0.5},
      {"separable 12-tap filter only flip", {2, 3, 14, 13}, 2, 12, 12, 1, 1, 1, 1, {5, 6, 6, 5}, true, 1.0},
      {"separable 4-tap down 2 odd", {2, 3, 9, 11}, 2, 4, 4, 1, 1, 2, 2, {1, 2, 2, 1}, false, 1.0},
      {"separable 4-tap down 2 crop flip", {1, 2, 12, 10}, 2, 4, 4, 1, 1, 2, 2, {-1, 0, 1, -2}, true, 2.0},
      {"separable 4-tap up 2", {2, 3, 5, 7}, 2, 4, 4, 2, 2, 1, 1, {2, 1, 2, 1}, false, 4.0},
      {"separable 4-tap up 2 crop flip", {1, 2, 6, 7}, 2, 4, 4, 2, 2, 1, 1, {-3, 5, 4, -2}, true, 1.0},
      {"separable 3-tap up 2 wide pad", {1, 2, 3, 4}, 2, 3, 3, 2, 2, 1, 1, {7, 1, 0, 8}, false, 1.0},
  };
  return c;
}

at::Tensor filter_of(const UpfCase& c, uint64_t seed) {
  auto g = at::detail::createCPUGenerator(seed);
  if (c.filter == 0) return at::Tensor();
  if (c.filter == 1) return at::rand({c.fh, c.fw}, g) + 0.1;  // float32, like the networks' buffers
  return at::rand({c.fh}, g) + 0.1;
}

at::Tensor run_case(bool fused, const at::Tensor& x, const at::Tensor& f, const UpfCase& c) {
  if (fused) return ops::upfirdn2d_fused(x, f, c.upx, c.upy, c.downx, c.downy, c.pad, c.flip, c.gain);
  CpuFused off(false);
  return ops::upfirdn2d(x, f, c.upx, c.upy, c.downx, c.downy, c.pad, c.flip, c.gain);
}

// y; the gradient of sum(y^2 * p) w.r.t. x (create_graph); the gradient of sum(g^2 * q) w.r.t. x
// (a double backward: g depends on x through y).
std::vector<at::Tensor> derivs(bool fused, const at::Tensor& x0, const at::Tensor& f, const UpfCase& c,
                               uint64_t seed) {
  at::Tensor x = x0.detach().clone().requires_grad_(true);
  at::Tensor y = run_case(fused, x, f, c);
  auto gen = at::detail::createCPUGenerator(seed);
  at::Tensor p = at::randn(y.sizes(), gen, x0.options());
  at::Tensor q = at::randn(x0.sizes(), gen, x0.options());
  at::Tensor g = torch::autograd::grad({(y.square() * p).sum()}, {x}, {}, true, true)[0];
  at::Tensor gg = torch::autograd::grad({(g.square() * q).sum()}, {x})[0];
  return {y.detach(), g.detach(), gg.detach()};
}

void expect_rel(const at::Tensor& a, const at::Tensor& b, double tol, const std::string& what) {
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  const double scale = std::max(1.0, b.abs().max().item<double>());
  const double err = (a - b).abs().max().item<double>();
  EXPECT_LE(err, tol * scale) << what << ": max abs difference " << err << " (scale " << scale << ")";
}

}  // namespace

TEST(Upfirdn2dFused, MatchesAtenForwardBackwardAndDoubleBackward) {
  uint64_t seed = 300;
  for (const UpfCase& c : cases()) {
    for (at::ScalarType st : {at::kDouble, at::kFloat}) {
      auto g = at::detail::createCPUGenerator(seed++);
      at::Tensor x = at::randn(c.shape, g, at::TensorOptions().dtype(st));
      at::Tensor f = filter_of(c, seed++);
      auto ref = derivs(false, x, f, c, seed);
      auto got = derivs(true, x, f, c, seed);
      seed++;
      const bool d = st == at::kDouble;
      const std::string what = c.name + (d ? " f64" : " f32");
      EXPECT_EQ(got[0].scalar_type(), st) << what;
      expect_rel(got[0], ref[0], d ? 1e-12 : 1e-5, what + " forward");
      expect_rel(got[1], ref[1], d ? 1e-12 : 1e-5, what + " backward");
      expect_rel(got[2], ref[2], d ? 1e-12 : 1e-4, what + " double backward");
      EXPECT_GT(ref[2].abs().max().item<double>(), 0) << what << ": the double backward is not trivial";
    }
  }
}

// The kernel's parameters for case c with filter f (defined) and output y.
sf::ops::upfirdn2d_math::Params params_of(const UpfCase& c, const at::Tensor& f, const at::Tensor& y) {
  sf::ops::upfirdn2d_math::Params p;
  p.in_h = c.shape[2], p.in_w = c.shape[3];
  p.upx = c.upx, p.upy = c.upy, p.downx = c.downx, p.downy = c.downy, p.padx0 = c.pad.x0, p.pady0 = c.pad.y0;
  p.separable = f.dim() == 1;
  p.fh = static_cast<int>(f.size(0)), p.fw = static_cast<int>(f.size(-1));
  p.flip = c.flip;
  p.out_h = y.size(2), p.out_w = y.size(3);
  return p;
}

// Case c in float64 for the kernel's arithmetic: the input x, the CPU loop's output y, the filter fk
// as the op prepares it (gain^(ndim/2) applied in float32, then float64), and the parameters.
struct KernelInputs {
  at::Tensor x, y, fk;
  sf::ops::upfirdn2d_math::Params p;
};

KernelInputs kernel_inputs(const UpfCase& c, uint64_t& seed) {
  KernelInputs in;
  in.x = at::randn(c.shape, at::detail::createCPUGenerator(seed++), at::TensorOptions().dtype(at::kDouble));
  at::Tensor f = filter_of(c, seed++);
  in.y = ops::upfirdn2d_fused(in.x, f, c.upx, c.upy, c.downx, c.downy, c.pad, c.flip, c.gain);
  if (!f.defined()) f = at::ones({1, 1});
  in.fk = (f * std::pow(c.gain, f.dim() / 2.0)).to(at::kDouble).contiguous();
  in.p = params_of(c, f, in.y);
  return in;
}

// The CPU loop (whole rows per tap) gives the values of the per-pixel form the CUDA kernel runs
// (upfirdn2d_math.h's pixel(), called here on the host): the same sums in the same order.
TEST(Upfirdn2dFused, CpuLoopEqualsPerPixelForm) {
  namespace um = sf::ops::upfirdn2d_math;
  uint64_t seed = 600;
  for (const UpfCase& c : cases()) {
    const KernelInputs in = kernel_inputs(c, seed);
    const at::Tensor &x = in.x, &y = in.y, &fk = in.fk;
    const um::Params& p = in.p;
    // The per-pixel form with 64-bit indices (as on the CPU and in the kernel's wide path) and with
    // the 32-bit indices the kernel runs wherever they fit.
    const int64_t planes = c.shape[0] * c.shape[1];
    ASSERT_TRUE(um::fits_int32(p, planes)) << c.name;
    const um::ParamsT<int32_t> q = um::narrow(p);
    at::Tensor ref = at::empty_like(y), ref32 = at::empty_like(y);
    const double* xv = x.data_ptr<double>();
    double* rv = ref.data_ptr<double>();
    double* rv32 = ref32.data_ptr<double>();
    for (int64_t pl = 0; pl < planes; ++pl) {
      const double* xp = xv + pl * p.in_h * p.in_w;
      auto read = [&](int64_t iy, int64_t ix) { return xp[iy * p.in_w + ix]; };
      auto read32 = [&](int32_t iy, int32_t ix) { return xp[iy * q.in_w + ix]; };
      for (int64_t oy = 0; oy < p.out_h; ++oy)
        for (int64_t ox = 0; ox < p.out_w; ++ox) {
          const int64_t o = (pl * p.out_h + oy) * p.out_w + ox;
          rv[o] = um::pixel<double>(p, fk.data_ptr<double>(), oy, ox, read);
          rv32[o] = um::pixel<double>(q, fk.data_ptr<double>(), static_cast<int32_t>(oy), static_cast<int32_t>(ox), read32);
        }
    }
    expect_rel(y, ref, 1e-14, c.name + " CPU loop vs per-pixel form");
    EXPECT_TRUE(at::equal(ref32, ref)) << c.name << ": 32-bit indices change the per-pixel form";
  }
}

// The CUDA kernel's launch run on the host, thread by thread (upfirdn2d_math::launch_of and
// thread_work, as upfirdn2d.cu runs them, with 32-bit indices): every output is written exactly once
// and holds the CPU loop's value. Besides CUDA's grid limit of 65535 blocks along y and z, limits of
// 1, 2 and 3 make the threads loop over rows and planes as they would past 65535 blocks.
TEST(Upfirdn2dFused, KernelLaunchWritesEveryOutputOnce) {
  namespace um = sf::ops::upfirdn2d_math;
  uint64_t seed = 700;
  std::vector<UpfCase> all = cases();
  all.push_back({"many small planes", {9, 40, 2, 3}, 1, 3, 3, 1, 1, 1, 1, {1, 1, 1, 1}, false, 1.0});
  all.push_back({"wide and tall", {1, 1, 70, 45}, 2, 4, 4, 2, 2, 1, 1, {2, 1, 2, 1}, false, 1.0});
  all.push_back({"one column past 32", {1, 2, 3, 33}, 0, 1, 1, 1, 1, 1, 1, {}, false, 1.0});
  for (const UpfCase& c : all) {
    const KernelInputs in = kernel_inputs(c, seed);
    const at::Tensor &x = in.x, &y = in.y, &fk = in.fk;
    const um::Params& p = in.p;
    const int64_t planes = c.shape[0] * c.shape[1], n = y.numel();
    const um::ParamsT<int32_t> q = um::narrow(p);
    for (int64_t cap : {int64_t(65535), int64_t(1), int64_t(2), int64_t(3)}) {
      const std::string what = c.name + ", grid limit " + std::to_string(cap);
      const um::Launch l = um::launch_of(p.out_w, p.out_h, planes, cap);
      EXPECT_LE(l.block.x * l.block.y * l.block.z, 256u) << what;
      EXPECT_LE(l.block.z, 64u) << what;
      EXPECT_LE(std::max(l.grid.y, l.grid.z), static_cast<unsigned>(cap)) << what;
      std::vector<int> writes(static_cast<size_t>(n), 0);
      at::Tensor out = at::full_like(y, std::nan(""));
      double* ov = out.data_ptr<double>();
      auto load = [](const double* xp, int32_t i) { return xp[i]; };
      auto store = [&](int32_t i, double v) {
        ASSERT_TRUE(i >= 0 && i < n) << what << ": index " << i;
        ++writes[static_cast<size_t>(i)];
        ov[i] = v;
      };
      um::Dim3 b, t;
      for (b.z = 0; b.z < l.grid.z; ++b.z)
        for (b.y = 0; b.y < l.grid.y; ++b.y)
          for (b.x = 0; b.x < l.grid.x; ++b.x)
            for (t.z = 0; t.z < l.block.z; ++t.z)
              for (t.y = 0; t.y < l.block.y; ++t.y)
                for (t.x = 0; t.x < l.block.x; ++t.x)
                  um::thread_work<double>(q, fk.data_ptr<double>(), x.data_ptr<double>(), static_cast<int32_t>(planes),
                                          l, b, t, load, store);
      const int64_t once = std::count(writes.begin(), writes.end(), 1);
      EXPECT_EQ(once, n) << what << ": outputs written other than once";
      expect_rel(out, y, 1e-14, what);
    }
  }
}

// The kernel's 32-bit index path is taken only where every intermediate index fits.
TEST(Upfirdn2dFused, Int32IndicesOnlyWhereTheyFit) {
  namespace um = sf::ops::upfirdn2d_math;
  auto params = [](int64_t in_h, int64_t in_w, int up, int down, int pad0, int pad1, int taps) {
    um::Params p;
    p.in_h = in_h, p.in_w = in_w, p.upx = p.upy = up, p.downx = p.downy = down;
    p.padx0 = p.pady0 = pad0, p.fh = p.fw = taps;
    p.out_h = um::out_size(in_h, up, down, pad0, pad1, taps);
    p.out_w = um::out_size(in_w, up, down, pad0, pad1, taps);
    return p;
  };
  const int64_t big = int64_t(1) << 30;
  // Up 2 from 512x512 to 1024x1024: batch 4 of 64 channels fits (2^28 outputs); batch 32 (2^31)
  // does not.
  EXPECT_TRUE(um::fits_int32(params(512, 512, 2, 1, 2, 1, 4), 4 * 64));
  EXPECT_FALSE(um::fits_int32(params(512, 512, 2, 1, 2, 1, 4), 32 * 64));
  EXPECT_FALSE(um::fits_int32(params(512, 512, 1, 1, 1, 1, 4), 8192));  // the inputs alone: 2^31
  // One long row: in * up reaches 2^30 although the element counts would fit.
  EXPECT_FALSE(um::fits_int32(params(1, big / 2, 2, 2, 0, 0, 1), 1));
  EXPECT_TRUE(um::fits_int32(params(1, big / 8, 2, 2, 0, 0, 1), 1));
  // A row cropped by 2^29 pixels: in + the crop reach 2^30 (taps_of's first index), although only
  // 8 outputs remain.
  auto cropped = [&](int64_t crop) {
    um::Params p = params(1, crop + 8, 1, 1, 0, 0, 1);
    p.padx0 = -static_cast<int>(crop);
    p.out_w = um::out_size(p.in_w, 1, 1, p.padx0, 0, 1);
    return p;
  };
  EXPECT_EQ(cropped(big / 2).out_w, 8);
  EXPECT_FALSE(um::fits_int32(cropped(big / 2), 1));
  EXPECT_TRUE(um::fits_int32(cropped(big / 4), 1));
  EXPECT_FALSE(um::fits_int32(params(8, 8, 1, 1, 0, 0, 1), 0));
}

// The output size is the reference's: (in * up + pad0 + pad1 - taps) / down + 1 per axis.
TEST(Upfirdn2dFused, OutputSizes) {
  for (const UpfCase& c : cases()) {
    at::Tensor x = at::zeros(c.shape, at::kDouble);
    at::Tensor y = ops::upfirdn2d_fused(x, filter_of(c, 1), c.upx, c.upy, c.downx, c.downy, c.pad, c.flip, c.gain);
    const int fh = c.filter == 0 ? 1 : c.fh, fw = c.filter == 0 ? 1 : (c.filter == 1 ? c.fw : c.fh);
    EXPECT_EQ(y.size(2), (c.shape[2] * c.upy + c.pad.y0 + c.pad.y1 - fh) / c.downy + 1) << c.name;
    EXPECT_EQ(y.size(3), (c.shape[3] * c.upx + c.pad.x0 + c.pad.x1 - fw) / c.downx + 1) << c.name;
  }
}

// Gradients beyond the second order (the gradient is upfirdn2d again, to any order).
TEST(Upfirdn2dFused, ThirdOrderMatchesAten) {
  const UpfCase& c = cases()[6];  // up 2 down 2, flip, gain
  at::Tensor f = filter_of(c, 77);
  at::Tensor x0 = at::randn(c.shape, at::detail::createCPUGenerator(78), at::TensorOptions().dtype(at::kDouble));
  at::Tensor r = at::randn(c.shape, at::detail::createCPUGenerator(79), at::TensorOptions().dtype(at::kDouble));
  std::vector<at::Tensor> res;
  for (bool fused : {false, true}) {
    at::Tensor x = x0.clone().requires_grad_(true);
    at::Tensor y = run_case(fused, x, f, c);
    at::Tensor g1 = torch::autograd::grad({y.pow(4).sum()}, {x}, {}, true, true)[0];
    at::Tensor g2 = torch::autograd::grad({g1.square().sum()}, {x}, {}, true, true)[0];
    at::Tensor g3 = torch::autograd::grad({(g2 * r).sum()}, {x})[0];
    res.push_back(g3);
  }
  ASSERT_GT(res[0].abs().max().item<double>(), 0);
  expect_rel(res[1], res[0], 1e-11, "third order");
}

// The filter is a constant: a filter that requires grad gets none, x still does.
TEST(Upfirdn2dFused, FilterGetsNoGradient) {
  at::Tensor f = at::rand({4, 4}, at::detail::createCPUGenerator(5)).to(at::kDouble).requires_grad_(true);
  at::Tensor x = at::randn({1, 2, 5, 5}, at::detail::createCPUGenerator(6), at::TensorOptions().dtype(at::kDouble))
                     .requires_grad_(true);
  at::Tensor y = ops::upfirdn2d_fused(x, f, 2, 2, 1, 1, {2, 1, 2, 1});
  auto g = torch::autograd::grad({y.sum()}, {x, f}, {}, false, false, /*allow_unused=*/true);
  EXPECT_TRUE(g[0].defined());
  EXPECT_FALSE(g[1].defined() && g[1].abs().max().item<double>() != 0);
}

// Bad input: a filter larger than the padded input, or a non-float input, throws (as the ATen
// formulation does for the former).
TEST(Upfirdn2dFused, RejectsBadInput) {
  at::Tensor x = at::randn({1, 1, 3, 3}, at::kDouble), f = at::ones({5, 5}, at::kFloat);
  EXPECT_THROW(ops::upfirdn2d_fused(x, f, 1, 1, 1, 1, {}), std::exception);
  EXPECT_THROW(ops::upfirdn2d_fused(x, f.reshape({25}), 1, 1, 1, 1, {}), std::exception);
  EXPECT_THROW(ops::upfirdn2d_fused(at::ones({1, 1, 8, 8}, at::kLong), f, 1, 1, 1, 1, {}), std::exception);
  EXPECT_THROW(ops::upfirdn2d_fused(at::ones({8, 8}, at::kFloat), f, 1, 1, 1, 1, {}), std::exception);
  EXPECT_NO_THROW(ops::upfirdn2d_fused(x, f, 1, 1, 1, 1, {1, 1, 1, 1}));
}

// float16 on the CPU: accumulated in float, so within one float16 rounding of the float32 result.
TEST(Upfirdn2dFused, HalfAccumulatesInFloat) {
  const UpfCase& c = cases()[11];  // separable 12-tap up 2
  at::Tensor x = at::randn(c.shape, at::detail::createCPUGenerator(9)).to(at::kHalf);
  at::Tensor f = filter_of(c, 10);
  at::Tensor y16 = ops::upfirdn2d_fused(x, f, c.upx, c.upy, c.downx, c.downy, c.pad, c.flip, c.gain);
  at::Tensor y32 = ops::upfirdn2d_fused(x.to(at::kFloat), f, c.upx, c.upy, c.downx, c.downy, c.pad, c.flip, c.gain);
  ASSERT_EQ(y16.scalar_type(), at::kHalf);
  expect_rel(y16.to(at::kFloat), y32, std::ldexp(1.0, -11), "float16 vs float32");
}

// upfirdn2d() dispatches CPU tensors to the fused op exactly when switched on, and the wrappers
// the networks and the augmentation call (upsample2d, downsample2d, filter2d, conv2d_resample)
// give the same values and first and second derivatives either way.
TEST(Upfirdn2dFused, DispatchAndWrappers) {
  at::Tensor f4 = ops::setup_filter({1, 3, 3, 1}).to(at::kDouble);
  std::vector<float> taps12 = {-0.0010f, 0.0081f, -0.0340f, 0.0865f, -0.1705f, 0.6109f,
                               0.6109f,  -0.1705f, 0.0865f, -0.0340f, 0.0081f, -0.0010f};
  at::Tensor f12 = ops::setup_filter(taps12);  // separable (>= 8 taps)
  ASSERT_EQ(f12.dim(), 1);
  at::Tensor w = at::randn({4, 3, 3, 3}, at::detail::createCPUGenerator(20), at::TensorOptions().dtype(at::kDouble));
  using Fn = std::function<at::Tensor(const at::Tensor&)>;
  const std::vector<std::pair<std::string, Fn>> fns = {
      {"upsample2d", [&](const at::Tensor& x) { return ops::upsample2d(x, f4); }},
      {"downsample2d", [&](const at::Tensor& x) { return ops::downsample2d(x, f4); }},
      {"filter2d", [&](const at::Tensor& x) { return ops::filter2d(x, f4, ops::Pad::all(1)); }},
      {"augment up", [&](const at::Tensor& x) { return ops::upsample2d(x, f12, 2); }},
      {"augment down", [&](const at::Tensor& x) { return ops::downsample2d(x, f12, 2, ops::Pad::all(-4), true); }},
      {"conv2d_resample up", [&](const at::Tensor& x) { return ops::conv2d_resample(x, w, f4, 2, 1, ops::Pad::all(1), 1, false); }},
      {"conv2d_resample down", [&](const at::Tensor& x) { return ops::conv2d_resample(x, w, f4, 1, 2, ops::Pad::all(1)); }},
  };
  at::Tensor x0 = at::randn({2, 3, 12, 10}, at::detail::createCPUGenerator(21), at::TensorOptions().dtype(at::kDouble));
  for (const auto& [name, fn] : fns) {
    std::vector<std::vector<at::Tensor>> res;
    for (bool on : {false, true}) {
      CpuFused sw(on);
      at::Tensor x = x0.clone().requires_grad_(true);
      at::Tensor y = fn(x);
      bool saw_fused = false;
      // The fused node is in the graph exactly when switched on.
      std::vector<torch::autograd::Node*> stack = {y.grad_fn().get()};
      for (size_t i = 0; i < stack.size() && i < 64; ++i) {
        if (!stack[i]) continue;
        if (stack[i]->name().find("Upfirdn2dFn") != std::string::npos) saw_fused = true;
        for (const auto& e : stack[i]->next_edges()) stack.push_back(e.function.get());
      }
      EXPECT_EQ(saw_fused, on) << name;
      at::Tensor g = torch::autograd::grad({y.tanh().sum()}, {x}, {}, true, true)[0];
      at::Tensor gg = torch::autograd::grad({g.square().sum()}, {x})[0];
      res.push_back({y.detach(), g.detach(), gg.detach()});
    }
    expect_rel(res[1][0], res[0][0], 1e-12, name + " forward");
    expect_rel(res[1][1], res[0][1], 1e-12, name + " backward");
    expect_rel(res[1][2], res[0][2], 1e-11, name + " double backward");
  }
}

// A generator (skip: up-sampling convolutions and image up-sampling) and the discriminator's R1
// penalty (resnet: down-sampling, second order into D's parameters) with the fused op on the CPU
// give the ATen formulation's values and gradients (float32).
TEST(Upfirdn2dFused, NetworksAndR1MatchAten) {
  CpuFused keep(ops::upfirdn2d_cpu_path() == ops::Upfirdn2dCpuPath::Fused);
  sf::path_test::SmallNetworks nets("skip", 128, 50);
  sf::path_test::expect_same_outputs(nets, [](bool on) { ops::set_upfirdn2d_cpu_default(on); }, 1e-4);
}

// The CPU's default choice runs a 2-D filter that is a symmetric outer product a a^T (the networks'
// [1, 3, 3, 1] blur) as the separable filter a: the values are those of the fused op given a
// itself, and within float rounding of the ATen formulation with the 2-D filter, to the second
// order. Other 2-D filters (not of rank one, -a a^T, with a NaN) and negative gains keep the
// per-shape rule: ATen's values exactly on 20 channels.
TEST(Upfirdn2dFused, RankOneFiltersRunSeparably) {
  const ops::Upfirdn2dCpuPath before = ops::upfirdn2d_cpu_path();
  ops::set_upfirdn2d_cpu_path(ops::Upfirdn2dCpuPath::PerShape);
  const at::Tensor f2 = ops::setup_filter({1, 3, 3, 1});
  const at::Tensor f1 = at::tensor(std::vector<float>{1, 3, 3, 1}) / 8;  // exact: f2 = f1 f1^T
  ASSERT_EQ(f2.dim(), 2);
  at::Tensor g2 = f2.clone();
  g2[1][2] += 0.01f;
  g2[2][1] += 0.01f;  // symmetric, rank two
  struct Geo {
    const char* name;
    int up, down;
    ops::Pad pad;
    double gain;
  };
  const std::vector<Geo> geos = {{"blur before a strided convolution", 1, 1, ops::Pad::all(2), 1.0},
                                 {"blur after a transposed convolution", 1, 1, ops::Pad::all(1), 4.0},
                                 {"up 2", 2, 1, {2, 1, 2, 1}, 4.0},
                                 {"down 2", 1, 2, ops::Pad::all(1), 1.0}};
  uint64_t seed = 900;
  for (const Geo& gm : geos) {
    auto gen = at::detail::createCPUGenerator(seed++);
    const at::Tensor x = at::randn({2, 20, 9, 8}, gen);
    auto call = [&](const at::Tensor& xx, const at::Tensor& f) {
      return ops::upfirdn2d(xx, f, gm.up, gm.up, gm.down, gm.down, gm.pad, false, gm.gain);
    };
    const at::Tensor sep = ops::upfirdn2d_fused(x, f1, gm.up, gm.up, gm.down, gm.down, gm.pad, false, gm.gain);
    EXPECT_TRUE(at::equal(call(x, f2), sep)) << gm.name << ": the rank-one filter did not run as its factor";
    at::Tensor with_nan = f2.clone();
    with_nan[0][3] = std::nanf("");
    for (const at::Tensor& other : {g2, at::neg(f2), with_nan}) {
      const at::Tensor got = call(x, other);
      CpuFused off(false);
      const at::Tensor want = call(x, other);
      EXPECT_TRUE(at::equal(got.nan_to_num(7), want.nan_to_num(7)))
          << gm.name << ": a filter not of the form a a^T left ATen's path";
    }
    {  // A negative gain is the 2-D filter's (sqrt(gain) per axis would not be).
      const at::Tensor got = ops::upfirdn2d(x, f2, gm.up, gm.up, gm.down, gm.down, gm.pad, false, -gm.gain);
      CpuFused off(false);
      EXPECT_TRUE(at::equal(got, ops::upfirdn2d(x, f2, gm.up, gm.up, gm.down, gm.down, gm.pad, false, -gm.gain)))
          << gm.name << ": negative gain";
    }
    // Forward, backward and double backward against ATen with the 2-D filter.
    auto run_default = [&](bool aten) {
      at::Tensor xx = x.detach().clone().requires_grad_(true);
      std::unique_ptr<CpuFused> off;
      if (aten) off = std::make_unique<CpuFused>(false);
      at::Tensor y = call(xx, f2);
      auto g = at::detail::createCPUGenerator(seed);
      at::Tensor p = at::randn(y.sizes(), g), q = at::randn(x.sizes(), g);
      at::Tensor d1 = torch::autograd::grad({(y.square() * p).sum()}, {xx}, {}, true, true)[0];
      at::Tensor d2 = torch::autograd::grad({(d1.square() * q).sum()}, {xx})[0];
      return std::vector<at::Tensor>{y.detach(), d1.detach(), d2.detach()};
    };
    const auto ref = run_default(true), got = run_default(false);
    expect_rel(got[0], ref[0], 1e-5, std::string(gm.name) + " forward");
    expect_rel(got[1], ref[1], 1e-5, std::string(gm.name) + " backward");
    expect_rel(got[2], ref[2], 1e-4, std::string(gm.name) + " double backward");
  }
  ops::set_upfirdn2d_cpu_path(before);
}

// The same networks on the CPU's default path (the networks' blur runs separably) against ATen.
TEST(Upfirdn2dFused, NetworksOnTheDefaultPathMatchAten) {
  const ops::Upfirdn2dCpuPath before = ops::upfirdn2d_cpu_path();
  sf::path_test::SmallNetworks nets("skip", 128, 51);
  sf::path_test::expect_same_outputs(
      nets,
      [](bool on) { ops::set_upfirdn2d_cpu_path(on ? ops::Upfirdn2dCpuPath::PerShape : ops::Upfirdn2dCpuPath::Aten); },
      1e-4);
  ops::set_upfirdn2d_cpu_path(before);
}

// The CPU path per shape (upfirdn2d_use_fused): the fused loop for separable filters and few
// channels, ATen's depthwise convolution for activations with a 2-D filter (upfirdn2d() first
// turns a rank-one one into its separable factor); Aten/Fused force one.
TEST(Upfirdn2dFused, CpuPathPerShape) {
  const ops::Upfirdn2dCpuPath before = ops::upfirdn2d_cpu_path();
  const at::Tensor f4 = ops::setup_filter({1, 3, 3, 1});
  const at::Tensor f12 = ops::setup_filter({1, 2, 3, 4, 5, 6, 6, 5, 4, 3, 2, 1});
  ASSERT_EQ(f4.dim(), 2);
  ASSERT_EQ(f12.dim(), 1);
  const at::Tensor img = at::zeros({2, 3, 8, 8}), act = at::zeros({2, 128, 8, 8});
  ops::set_upfirdn2d_cpu_path(ops::Upfirdn2dCpuPath::PerShape);
  EXPECT_TRUE(ops::upfirdn2d_use_fused(img, f4));
  EXPECT_TRUE(ops::upfirdn2d_use_fused(act, f12));
  EXPECT_FALSE(ops::upfirdn2d_use_fused(act, f4));
  EXPECT_FALSE(ops::upfirdn2d_fused_is_default(false));
  ops::set_upfirdn2d_cpu_default(true);
  EXPECT_TRUE(ops::upfirdn2d_use_fused(act, f4));
  EXPECT_TRUE(ops::upfirdn2d_fused_is_default(false));
  ops::set_upfirdn2d_cpu_default(false);
  EXPECT_FALSE(ops::upfirdn2d_use_fused(img, f12));
  ops::set_upfirdn2d_cpu_path(before);
}
