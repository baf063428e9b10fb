// Ops against hand-computed small cases, against their own straightforward definitions, and
// finite-difference first and second derivatives (in float64).
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <functional>

#include "trainer/ops.h"

namespace ops = sf::ops;

namespace {

at::Tensor dbl(std::vector<int64_t> shape, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return at::randn(shape, gen, at::TensorOptions().dtype(at::kDouble));
}

void expect_close(const at::Tensor& a, const at::Tensor& b, double tol = 1e-10) {
  ASSERT_EQ(a.sizes(), b.sizes());
  double err = (a - b).abs().max().item<double>();
  EXPECT_LE(err, tol) << "max abs difference " << err;
}

// Checks d f(x) / dx (f returns a scalar) against central differences at every element of x.
void gradcheck(const std::function<at::Tensor(const at::Tensor&)>& f, at::Tensor x, double tol = 1e-6) {
  x = x.detach().clone().requires_grad_(true);
  at::Tensor g = torch::autograd::grad({f(x)}, {x})[0];
  at::Tensor xd = x.detach().clone();
  auto flat = xd.view(-1);
  auto gflat = g.reshape(-1);
  const double eps = 1e-6;
  for (int64_t i = 0; i < flat.numel(); ++i) {
    double v = flat[i].item<double>();
    flat[i] = v + eps;
    double fp = f(xd).item<double>();
    flat[i] = v - eps;
    double fm = f(xd).item<double>();
    flat[i] = v;
    double num = (fp - fm) / (2 * eps);
    EXPECT_NEAR(gflat[i].item<double>(), num, tol * std::max(1.0, std::abs(num))) << "element " << i;
  }
}

// Second order: checks the gradient of h(x) = sum((df/dx)^2 * probe), which needs a double backward.
void gradcheck2(const std::function<at::Tensor(const at::Tensor&)>& f, const at::Tensor& x0, const at::Tensor& probe,
                double tol = 1e-5) {
  auto h = [&](const at::Tensor& x) {
    at::Tensor xi = x.requires_grad() ? x : x.detach().clone().requires_grad_(true);
    at::Tensor g = torch::autograd::grad({f(xi)}, {xi}, {}, true, /*create_graph=*/true)[0];
    return (g.square() * probe).sum();
  };
  gradcheck(h, x0, tol);
}

TEST(Upfirdn2d, ZeroInsertionPaddingAndFilterByHand) {
  // One row [1, 2, 3]; up=2 gives [1,0,2,0,3,0]; filter [1, 1] (not normalised) sums neighbours.
  at::Tensor x = at::tensor({1.0, 2.0, 3.0}, at::kDouble).reshape({1, 1, 1, 3});
  at::Tensor f = ops::setup_filter({1, 1}, /*normalize=*/false).to(at::kDouble).slice(0, 0, 1);  // [1, 2]
  at::Tensor y = ops::upfirdn2d(x, f, 2, 1, 1, 1, {1, 0, 0, 0});
  // padded: [0,1,0,2,0,3,0], 2-tap sums: [1,1,2,2,3,3]
  expect_close(y.reshape(-1), at::tensor({1.0, 1.0, 2.0, 2.0, 3.0, 3.0}, at::kDouble));
}

TEST(Upfirdn2d, NegativePaddingCrops) {
  at::Tensor x = at::arange(20, at::kDouble).reshape({1, 1, 4, 5});
  at::Tensor y = ops::upfirdn2d(x, at::Tensor(), 1, 1, 1, 1, {-1, -2, 1, -1});
  // x: crop 1 left, 2 right -> columns 1..2; y: pad 1 on top, crop 1 at the bottom.
  ASSERT_EQ(y.sizes(), (at::IntArrayRef{1, 1, 4, 2}));
  expect_close(y[0][0][0], at::zeros({2}, at::kDouble));
  expect_close(y[0][0][1], at::tensor({1.0, 2.0}, at::kDouble));
  expect_close(y[0][0][3], at::tensor({11.0, 12.0}, at::kDouble));
}

TEST(Upfirdn2d, FlipFilterIsCorrelation) {
  at::Tensor x = at::zeros({1, 1, 1, 5}, at::kDouble);
  x[0][0][0][2] = 1;  // impulse
  at::Tensor f = at::tensor({1.0, 2.0, 3.0}, at::kDouble).reshape({1, 3});
  at::Tensor conv = ops::upfirdn2d(x, f, 1, 1, 1, 1, {1, 1, 0, 0}, false).reshape(-1);
  at::Tensor corr = ops::upfirdn2d(x, f, 1, 1, 1, 1, {1, 1, 0, 0}, true).reshape(-1);
  expect_close(conv, at::tensor({0.0, 1.0, 2.0, 3.0, 0.0}, at::kDouble));  // convolution reproduces the filter
  expect_close(corr, at::tensor({0.0, 3.0, 2.0, 1.0, 0.0}, at::kDouble));  // correlation reverses it
}

TEST(Upfirdn2d, DownsampleAndGain) {
  at::Tensor x = at::arange(16, at::kDouble).reshape({1, 1, 4, 4});
  at::Tensor y = ops::upfirdn2d(x, at::Tensor(), 1, 1, 2, 2, {}, false, 3.0);
  expect_close(y.reshape(-1), at::tensor({0.0, 6.0, 24.0, 30.0}, at::kDouble));
}

TEST(Upfirdn2d, SeparableFilterEqualsOuterProduct) {
  std::vector<float> taps = {1, 2, 3, 4, 4, 3, 2, 1};
  at::Tensor sep = ops::setup_filter(taps);  // >= 8 taps: separable
  at::Tensor full = ops::setup_filter(taps, true, false, 1.0, false);
  ASSERT_EQ(sep.dim(), 1);
  ASSERT_EQ(full.dim(), 2);
  at::Tensor x = dbl({2, 3, 9, 7}, 1);
  // float32 filters: the two orders of summation differ by rounding only.
  expect_close(ops::upfirdn2d(x, sep, 2, 1, {3, 4, 3, 4}), ops::upfirdn2d(x, full, 2, 1, {3, 4, 3, 4}), 1e-6);
}

TEST(Upfirdn2d, SetupFilterNormalisesAndFlips) {
  at::Tensor f = ops::setup_filter({1, 3, 3, 1});
  EXPECT_NEAR(f.sum().item<double>(), 1.0, 1e-7);
  EXPECT_NEAR(f[0][0].item<double>(), 1.0 / 64, 1e-9);
  at::Tensor g = ops::setup_filter({1, 2}, false, true, 4.0);  // flipped, gain 4 -> x4 for 2-D
  EXPECT_NEAR(g[0][0].item<double>(), 16.0, 1e-6);
  EXPECT_NEAR(g[1][1].item<double>(), 4.0, 1e-6);
}

TEST(Upfirdn2d, FirstAndSecondDerivatives) {
  at::Tensor f = ops::setup_filter({1, 3, 3, 1});
  at::Tensor w = dbl({1, 2, 5, 4}, 2);
  auto fn = [&](const at::Tensor& x) { return (ops::upfirdn2d(x, f, 2, 1, {2, 1, 0, 3}).sin() * 1.0).sum(); };
  gradcheck(fn, dbl({1, 2, 4, 3}, 3));
  auto fd = [&](const at::Tensor& x) { return ops::downsample2d(x, f).cos().sum(); };
  gradcheck(fd, dbl({1, 2, 6, 4}, 4));
  gradcheck2([&](const at::Tensor& x) { return ops::upsample2d(x, f).square().sum(); }, dbl({1, 1, 3, 3}, 5),
             dbl({1, 1, 3, 3}, 6));
  (void)w;
}

// conv2d_resample's fast paths must equal the plain definition: resample, convolve, resample.
at::Tensor conv_by_definition(const at::Tensor& x, const at::Tensor& w, const at::Tensor& f, int up, int down, int pad,
                              bool flip_weight) {
  auto [fw, fh] = ops::filter_size(f);
  int px0 = pad, px1 = pad, py0 = pad, py1 = pad;
  if (up > 1) {
    px0 += (fw + up - 1) / 2;
    px1 += (fw - up) / 2;
    py0 += (fh + up - 1) / 2;
    py1 += (fh - up) / 2;
  }
  if (down > 1) {
    px0 += (fw - down + 1) / 2;
    px1 += (fw - down) / 2;
    py0 += (fh - down + 1) / 2;
    py1 += (fh - down) / 2;
  }
  at::Tensor y = ops::upfirdn2d(x, up > 1 ? f : at::Tensor(), up, up, 1, 1, {px0, px1, py0, py1}, false, up * up);
  at::Tensor k = flip_weight ? w : w.flip({2, 3});
  y = at::conv2d(y, k);
  if (down > 1) y = ops::upfirdn2d(y, f, 1, 1, down, down, {});
  return y;
}

TEST(Conv2dResample, FastPathsEqualTheDefinition) {
  at::Tensor f = ops::setup_filter({1, 3, 3, 1}).to(at::kDouble);
  at::Tensor x = dbl({2, 3, 8, 6}, 7);
  at::Tensor w3 = dbl({5, 3, 3, 3}, 8), w1 = dbl({5, 3, 1, 1}, 9);
  // Synthesis conv0: up-2 3x3 through a transposed convolution, weights not flipped.
  expect_close(ops::conv2d_resample(x, w3, f, 2, 1, ops::Pad::all(1), 1, false),
               conv_by_definition(x, w3, f, 2, 1, 1, false), 1e-9);
  // Discriminator conv1: down-2 3x3.
  expect_close(ops::conv2d_resample(x, w3, f, 1, 2, ops::Pad::all(1), 1, true),
               conv_by_definition(x, w3, f, 1, 2, 1, true), 1e-9);
  // 1x1 up (synthesis resnet skip) and down (discriminator skip).
  expect_close(ops::conv2d_resample(x, w1, f, 2, 1, {}, 1, false), conv_by_definition(x, w1, f, 2, 1, 0, false), 1e-9);
  expect_close(ops::conv2d_resample(x, w1, f, 1, 2, {}, 1, true), conv_by_definition(x, w1, f, 1, 2, 0, true), 1e-9);
  // Shapes: up doubles, down halves.
  EXPECT_EQ(ops::conv2d_resample(x, w3, f, 2, 1, ops::Pad::all(1)).sizes(), (at::IntArrayRef{2, 5, 16, 12}));
  EXPECT_EQ(ops::conv2d_resample(x, w3, f, 1, 2, ops::Pad::all(1)).sizes(), (at::IntArrayRef{2, 5, 4, 3}));
}

TEST(Conv2dResample, GroupedUpEqualsPerGroup) {
  at::Tensor f = ops::setup_filter({1, 3, 3, 1}).to(at::kDouble);
  at::Tensor x = dbl({1, 4, 4, 4}, 10), w = dbl({6, 2, 3, 3}, 11);
  at::Tensor y = ops::conv2d_resample(x, w, f, 2, 1, ops::Pad::all(1), 2, false);
  at::Tensor y0 = ops::conv2d_resample(x.slice(1, 0, 2), w.slice(0, 0, 3), f, 2, 1, ops::Pad::all(1), 1, false);
  at::Tensor y1 = ops::conv2d_resample(x.slice(1, 2, 4), w.slice(0, 3, 6), f, 2, 1, ops::Pad::all(1), 1, false);
  expect_close(y, at::cat({y0, y1}, 1), 1e-9);
}

TEST(Conv2dResample, FirstAndSecondDerivatives) {
  at::Tensor f = ops::setup_filter({1, 3, 3, 1});
  at::Tensor w = dbl({2, 2, 3, 3}, 12);
  gradcheck([&](const at::Tensor& x) { return ops::conv2d_resample(x, w, f, 2, 1, ops::Pad::all(1), 1, false).sin().sum(); },
            dbl({1, 2, 3, 3}, 13));
  gradcheck([&](const at::Tensor& ww) { return ops::conv2d_resample(dbl({1, 2, 6, 6}, 14), ww, f, 1, 2, ops::Pad::all(1)).sin().sum(); },
            w);
  gradcheck2([&](const at::Tensor& x) { return ops::conv2d_resample(x, w, f, 1, 2, ops::Pad::all(1)).tanh().sum(); },
             dbl({1, 2, 4, 4}, 15), dbl({1, 2, 4, 4}, 16));
}

TEST(BiasAct, LreluGainAndBiasByHand) {
  at::Tensor x = at::tensor({-1.0, 2.0, -3.0, 4.0}, at::kDouble).reshape({2, 2});
  at::Tensor b = at::tensor({0.5, -1.0}, at::kDouble);
  at::Tensor y = ops::bias_act(x, b, 1, ops::Act::Lrelu);
  const double s = std::sqrt(2.0);
  // x + b = [[-0.5, 1], [-2.5, 3]]; lrelu(0.2) * sqrt(2)
  expect_close(y.reshape(-1), at::tensor({-0.1 * s, 1.0 * s, -0.5 * s, 3.0 * s}, at::kDouble), 1e-12);
  EXPECT_DOUBLE_EQ(ops::default_gain(ops::Act::Lrelu), s);
  EXPECT_DOUBLE_EQ(ops::default_alpha(ops::Act::Lrelu), 0.2);
  EXPECT_THROW(ops::parse_act("gelu-ish"), std::invalid_argument);
}

TEST(BiasAct, ClampHasZeroGradientWhereClamped) {
  at::Tensor x = at::tensor({-5.0, -0.5, 0.5, 5.0}, at::kDouble).requires_grad_(true);
  at::Tensor y = ops::bias_act(x, at::Tensor(), 0, ops::Act::Linear, std::nullopt, 1.0, 1.0);
  expect_close(y.detach(), at::tensor({-1.0, -0.5, 0.5, 1.0}, at::kDouble));
  at::Tensor g = torch::autograd::grad({y.sum()}, {x})[0];
  expect_close(g, at::tensor({0.0, 1.0, 1.0, 0.0}, at::kDouble));
}

TEST(BiasAct, FirstAndSecondDerivatives) {
  at::Tensor b = dbl({3}, 17);
  for (ops::Act act : {ops::Act::Lrelu, ops::Act::Linear, ops::Act::Tanh, ops::Act::Softplus, ops::Act::Swish}) {
    auto fn = [&](const at::Tensor& x) { return (ops::bias_act(x, b, 1, act, std::nullopt, std::nullopt, 2.5).sin()).sum(); };
    gradcheck(fn, dbl({2, 3, 2}, 18));
    gradcheck2([&](const at::Tensor& x) { return ops::bias_act(x, b, 1, act).cos().sum(); }, dbl({2, 3}, 19),
               dbl({2, 3}, 20));
  }
  // Bias gradient.
  at::Tensor x = dbl({2, 3, 2}, 21);
  gradcheck([&](const at::Tensor& bb) { return ops::bias_act(x, bb, 1, ops::Act::Lrelu).sin().sum(); }, b);
}

TEST(ModulatedConv, FusedEqualsNonFusedAndPerSampleDefinition) {
  at::Tensor f = ops::setup_filter({1, 3, 3, 1}).to(at::kDouble);
  at::Tensor x = dbl({3, 4, 5, 5}, 22), w = dbl({6, 4, 3, 3}, 23), s = dbl({3, 4}, 24), noise = dbl({3, 1, 10, 10}, 25);
  for (bool demod : {true, false}) {
    at::Tensor fused = ops::modulated_conv2d(x, w, s, noise, 2, 1, 1, f, demod, false, true);
    at::Tensor plain = ops::modulated_conv2d(x, w, s, noise, 2, 1, 1, f, demod, false, false);
    expect_close(fused, plain, 1e-9);
    // Per sample: scale the weights by the style, normalise each output filter, convolve.
    for (int n = 0; n < 3; ++n) {
      at::Tensor wn = w * s[n].reshape({1, 4, 1, 1});
      if (demod) wn = wn * (wn.square().sum({1, 2, 3}, true) + 1e-8).rsqrt();
      at::Tensor yn = ops::conv2d_resample(x.slice(0, n, n + 1), wn, f, 2, 1, ops::Pad::all(1), 1, false) + noise[n];
      expect_close(fused.slice(0, n, n + 1), yn, 1e-9);
    }
  }
}

TEST(ModulatedConv, Derivatives) {
  at::Tensor w = dbl({2, 3, 3, 3}, 26), x = dbl({2, 3, 4, 4}, 27);
  gradcheck([&](const at::Tensor& s) {
    return ops::modulated_conv2d(x, w, s, at::Tensor(), 1, 1, 1, at::Tensor(), true, true, true).sin().sum();
  }, dbl({2, 3}, 28));
  gradcheck2([&](const at::Tensor& xx) {
    return ops::modulated_conv2d(xx, w, dbl({2, 3}, 29), at::Tensor(), 1, 1, 1, at::Tensor(), true, true, false).tanh().sum();
  }, dbl({2, 3, 3, 3}, 30), dbl({2, 3, 3, 3}, 31));
}

TEST(MinibatchStd, ByHandAndDerivatives) {
  // Two samples, group 2, one channel, 1x1: std = sqrt(((a - b) / 2)^2 + 1e-8).
  at::Tensor x = at::tensor({1.0, 4.0}, at::kDouble).reshape({2, 1, 1, 1});
  at::Tensor y = ops::minibatch_std(x, 2, 1);
  ASSERT_EQ(y.sizes(), (at::IntArrayRef{2, 2, 1, 1}));
  double expect = std::sqrt(1.5 * 1.5 + 1e-8);
  EXPECT_NEAR(y[0][1][0][0].item<double>(), expect, 1e-12);
  EXPECT_NEAR(y[1][1][0][0].item<double>(), expect, 1e-12);
  // Group 2 in a batch of 4: samples i and i+2 form a group.
  at::Tensor x4 = dbl({4, 4, 3, 3}, 32);
  at::Tensor y4 = ops::minibatch_std(x4, 2, 2);
  ASSERT_EQ(y4.sizes(), (at::IntArrayRef{4, 6, 3, 3}));
  at::Tensor pair = at::stack({x4[0], x4[2]}).slice(1, 0, 2);  // first channel half of group 0
  double sd = ((pair - pair.mean(0)).square().mean(0) + 1e-8).sqrt().mean().item<double>();
  EXPECT_NEAR(y4[0][4][0][0].item<double>(), sd, 1e-12);
  EXPECT_NEAR(y4[2][4][1][2].item<double>(), sd, 1e-12);
  EXPECT_THROW(ops::minibatch_std(dbl({3, 2, 2, 2}, 33), 2, 1), c10::Error);
  gradcheck([&](const at::Tensor& t) { return ops::minibatch_std(t, 2, 1).sin().sum(); }, dbl({4, 2, 2, 2}, 34));
  gradcheck2([&](const at::Tensor& t) { return ops::minibatch_std(t, 4, 1).sum(); }, dbl({4, 2, 2, 2}, 35),
             dbl({4, 2, 2, 2}, 36), 1e-4);
}

TEST(Normalize2ndMoment, UnitMeanSquare) {
  at::Tensor z = dbl({3, 7}, 37) * 5;
  at::Tensor y = ops::normalize_2nd_moment(z);
  expect_close(y.square().mean(1), at::ones({3}, at::kDouble), 1e-7);
}

}  // namespace
