// Ops against hand-computed small cases, against their own straightforward definitions, and
// finite-difference first and second derivatives (in float64).
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <chrono>
#include <cstdio>
#include <cstdlib>
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

// ---------------------------------------------------------------------------------------------
// Fused bias_act (the CPU loop over cuda/bias_act_math.h, the arithmetic the CUDA kernel runs)
// against the ATen formulation bias_act_ref: forward, backward (x and b) and double backward
// (torch::autograd::grad with create_graph) for every activation. Tolerances: float64 1e-12
// relative (the same formulas, different evaluation order); float32 1e-5 of the values' scale.

namespace {

struct BiasActCase {
  std::vector<int64_t> shape;
  int dim;
  bool bias;
  std::optional<double> alpha, gain, clamp;
};

// Returns y, dy/dx and dy/db of sum(y * p) and the double-backward gradients of
// sum((dL/dx)^2 * q) with respect to x and b.
std::vector<at::Tensor> bias_act_derivs(bool fused, const at::Tensor& x0, const at::Tensor& b0, ops::Act act,
                                        const BiasActCase& c, const at::Tensor& p, const at::Tensor& q) {
  at::Tensor x = x0.detach().clone().requires_grad_(true);
  at::Tensor b = b0.defined() ? b0.detach().clone().requires_grad_(true) : at::Tensor();
  auto f = fused ? &ops::bias_act_fused : &ops::bias_act_ref;
  at::Tensor y = f(x, b, c.dim, act, c.alpha, c.gain, c.clamp);
  std::vector<at::Tensor> in = {x};
  if (b.defined()) in.push_back(b);
  auto g = torch::autograd::grad({(y * p).sum()}, in, {}, true, true);
  at::Tensor h = (g[0].square() * q).sum();
  std::vector<at::Tensor> gg(in.size());
  if (h.requires_grad()) gg = torch::autograd::grad({h}, in, {}, false, false, /*allow_unused=*/true);
  std::vector<at::Tensor> out = {y.detach(), g[0].detach()};
  out.push_back(b.defined() ? g[1].detach() : at::Tensor());
  for (auto& t : gg) out.push_back(t.defined() ? t : at::zeros_like(in[out.size() - 3]));
  return out;
}

void expect_rel(const at::Tensor& a, const at::Tensor& b, double tol, const std::string& what) {
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  const double scale = std::max(1.0, b.abs().max().item<double>());
  const double err = (a - b).abs().max().item<double>();
  EXPECT_LE(err, tol * scale) << what << ": max abs difference " << err << " (scale " << scale << ")";
}

const std::vector<ops::Act> kAllActs = {ops::Act::Linear, ops::Act::Relu,     ops::Act::Lrelu,
                                        ops::Act::Tanh,   ops::Act::Sigmoid,  ops::Act::Elu,
                                        ops::Act::Selu,   ops::Act::Softplus, ops::Act::Swish};

}  // namespace

TEST(BiasActFused, MatchesAtenForwardBackwardAndDoubleBackward) {
  const std::vector<BiasActCase> cases = {
      {{3, 5, 7, 9}, 1, true, std::nullopt, std::nullopt, std::nullopt},  // odd sizes, dim 1
      {{3, 5, 7, 9}, 1, false, std::nullopt, std::nullopt, std::nullopt},  // no bias
      {{4, 6}, 1, true, 0.3, 1.7, std::nullopt},                           // fully-connected layout, alpha/gain
      {{5, 3, 4}, 0, true, std::nullopt, std::nullopt, 0.9},               // dim 0, clamp
      {{2, 3, 11}, 2, true, std::nullopt, 2.0, 1.5},                       // last dim, gain and clamp
      {{7}, 0, true, std::nullopt, 1.0, 0.0},                              // clamp 0
      {{2, 3, 5, 5}, 3, false, 0.05, 0.5, 2.0},
  };
  uint64_t seed = 100;
  for (ops::Act act : kAllActs) {
    for (size_t ci = 0; ci < cases.size(); ++ci) {
      const BiasActCase& c = cases[ci];
      for (at::ScalarType st : {at::kDouble, at::kFloat}) {
        auto opt = at::TensorOptions().dtype(st);
        auto g = at::detail::createCPUGenerator(seed++);
        at::Tensor x = at::randn(c.shape, g, opt) * 2;
        at::Tensor b = c.bias ? at::randn({c.shape[static_cast<size_t>(c.dim)]}, g, opt) : at::Tensor();
        at::Tensor p = at::randn(c.shape, g, opt), q = at::randn(c.shape, g, opt);
        auto ref = bias_act_derivs(false, x, b, act, c, p, q);
        auto got = bias_act_derivs(true, x, b, act, c, p, q);
        const double tol = st == at::kDouble ? 1e-12 : 1e-5;
        const std::string what = "act " + std::to_string(static_cast<int>(act)) + " case " + std::to_string(ci) +
                                 (st == at::kDouble ? " f64" : " f32");
        expect_rel(got[0], ref[0], tol, what + " forward");
        expect_rel(got[1], ref[1], tol, what + " dx");
        if (c.bias) expect_rel(got[2], ref[2], tol, what + " db");
        expect_rel(got[3], ref[3], tol * 10, what + " ddx");
        if (c.bias) expect_rel(got[4], ref[4], tol * 10, what + " ddb");
      }
    }
  }
}

// The fused op's second-order gradients also pass finite differences (float64).
TEST(BiasActFused, FiniteDifferenceSecondOrder) {
  at::Tensor b = dbl({3}, 31);
  for (ops::Act act : {ops::Act::Tanh, ops::Act::Sigmoid, ops::Act::Swish, ops::Act::Elu, ops::Act::Selu,
                       ops::Act::Softplus}) {
    gradcheck2([&](const at::Tensor& x) { return ops::bias_act_fused(x, b, 1, act).cos().sum(); }, dbl({2, 3}, 32),
               dbl({2, 3}, 33));
    gradcheck([&](const at::Tensor& bb) { return ops::bias_act_fused(dbl({2, 3}, 34), bb, 1, act).sin().sum(); }, b);
  }
}

TEST(BiasActFused, ThirdOrderIsRefusedNotWrong) {
  at::Tensor x = dbl({4}, 35).requires_grad_(true);
  at::Tensor y = ops::bias_act_fused(x, at::Tensor(), 0, ops::Act::Tanh);
  at::Tensor g1 = torch::autograd::grad({y.sum()}, {x}, {}, true, true)[0];
  at::Tensor g2 = torch::autograd::grad({g1.sum()}, {x}, {}, true, true)[0];
  EXPECT_THROW(torch::autograd::grad({g2.sum()}, {x}), std::exception);
}

// Which path runs by default on the CPU (the faster, per the benchmark in the report): the
// dispatcher honours the setting, and both give the same values.
TEST(BiasActFused, CpuDefaultSwitch) {
  const bool before = ops::bias_act_fused_is_default(false);
  at::Tensor x = dbl({2, 3}, 36), b = dbl({3}, 37);
  ops::set_bias_act_cpu_default(true);
  at::Tensor y1 = ops::bias_act(x, b, 1, ops::Act::Lrelu);
  ops::set_bias_act_cpu_default(false);
  at::Tensor y2 = ops::bias_act(x, b, 1, ops::Act::Lrelu);
  ops::set_bias_act_cpu_default(before);
  expect_close(y1, y2, 1e-15);
  // CUDA tensors take the fused kernel only when STYLEFORGE_FUSED_KERNELS=1 (read once).
  const char* e = std::getenv("STYLEFORGE_FUSED_KERNELS");
  EXPECT_EQ(ops::bias_act_fused_is_default(true), e != nullptr && std::string(e) == "1");
}

// channels_last input (--nhwc): the same values and gradients, and the output stays channels_last.
TEST(BiasActFused, ChannelsLastInput) {
  at::Tensor x = dbl({2, 5, 3, 4}, 41), b = dbl({5}, 42), p = dbl({2, 5, 3, 4}, 43);
  at::Tensor xl = x.contiguous(at::MemoryFormat::ChannelsLast);
  ASSERT_FALSE(xl.is_contiguous());
  for (ops::Act act : {ops::Act::Lrelu, ops::Act::Swish}) {
    at::Tensor y = ops::bias_act_fused(x, b, 1, act, std::nullopt, std::nullopt, 1.0);
    at::Tensor xg = xl.detach().clone(at::MemoryFormat::ChannelsLast).requires_grad_(true);
    at::Tensor yl = ops::bias_act_fused(xg, b, 1, act, std::nullopt, std::nullopt, 1.0);
    EXPECT_TRUE(yl.is_contiguous(at::MemoryFormat::ChannelsLast));
    expect_close(yl, y, 0);
    at::Tensor gl = torch::autograd::grad({(yl * p).sum()}, {xg})[0];
    at::Tensor xr = x.detach().clone().requires_grad_(true);
    at::Tensor gr = torch::autograd::grad({(ops::bias_act_ref(xr, b, 1, act, std::nullopt, std::nullopt, 1.0) * p).sum()},
                                          {xr})[0];
    expect_close(gl, gr, 1e-12);
  }
}

// Timing of the two CPU paths (not a check; run with --gtest_also_run_disabled_tests): the
// forward + backward of a lrelu with bias and clamp, the synthesis layer's shape.
TEST(BiasActFused, DISABLED_BenchmarkCpuPaths) {
  for (std::vector<int64_t> shape : {std::vector<int64_t>{8, 64, 32, 32}, std::vector<int64_t>{16, 128, 64, 64},
                                     std::vector<int64_t>{64, 512}}) {
    auto g = at::detail::createCPUGenerator(40);
    at::Tensor x0 = at::randn(shape, g), b0 = at::randn({shape[1]}, g);
    for (bool fused : {false, true}) {
      auto f = fused ? &ops::bias_act_fused : &ops::bias_act_ref;
      double best = 1e30;
      for (int rep = 0; rep < 7; ++rep) {
        at::Tensor x = x0.clone().requires_grad_(true), b = b0.clone().requires_grad_(true);
        auto t0 = std::chrono::steady_clock::now();
        at::Tensor y = f(x, b, 1, ops::Act::Lrelu, std::nullopt, std::nullopt, 256.0);
        auto gr = torch::autograd::grad({y.sum()}, {x, b});
        auto t1 = std::chrono::steady_clock::now();
        best = std::min(best, std::chrono::duration<double, std::milli>(t1 - t0).count());
      }
      std::printf("bias_act %s %s: %.3f ms (forward + backward, best of 7)\n", fused ? "fused" : "aten ",
                  c10::IntArrayRef(shape).vec().size() == 4 ? (std::to_string(shape[0]) + "x" + std::to_string(shape[1]) + "x" + std::to_string(shape[2]) + "x" + std::to_string(shape[3])).c_str() : (std::to_string(shape[0]) + "x" + std::to_string(shape[1])).c_str(), best);
    }
  }
}
