// grid_sample_2d (forward, first and second derivatives against finite differences in float64)
// and the ADA augment pipe (settings, presets, identity at p = 0, reproducible draws, the
// single-channel colour rule and its generalisation to any channel count, R1-style double backward through the whole pipe). Agreement with
// the reference's outputs is checked by `styleforge selftest` on the augment_* fixtures.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <functional>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "trainer/augment.h"
#include "trainer/grid_sample.h"

using sf::trainer::AugmentConfig;
using sf::trainer::AugmentPipe;
using sf::trainer::grid_sample_2d;

namespace {

at::Tensor randn_t(std::vector<int64_t> shape, uint64_t seed, at::ScalarType dt = at::kDouble) {
  auto gen = at::detail::createCPUGenerator(seed);
  return at::randn(shape, gen, at::TensorOptions().dtype(dt));
}

at::Tensor uniform_grid(int64_t n, int64_t h, int64_t w, uint64_t seed, at::ScalarType dt = at::kDouble) {
  auto gen = at::detail::createCPUGenerator(seed);
  return at::rand({n, h, w, 2}, gen, at::TensorOptions().dtype(dt)) * 2.4 - 1.2;  // some points outside
}

double rel(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).norm().item<double>() / std::max(b.norm().item<double>(), 1e-30);
}

// Checks d f(x) / dx (f returns a scalar) against central differences at every element of x.
void fd_check(const std::function<at::Tensor(const at::Tensor&)>& f, const at::Tensor& x0, double tol = 1e-6) {
  at::Tensor x = x0.detach().clone().requires_grad_(true);
  at::Tensor g = torch::autograd::grad({f(x)}, {x})[0].reshape(-1);
  at::Tensor xd = x0.detach().clone();
  auto flat = xd.view(-1);
  const double eps = 1e-6;
  for (int64_t i = 0; i < flat.numel(); ++i) {
    const double v = flat[i].item<double>();
    flat[i] = v + eps;
    const double fp = f(xd).item<double>();
    flat[i] = v - eps;
    const double fm = f(xd).item<double>();
    flat[i] = v;
    const double num = (fp - fm) / (2 * eps);
    EXPECT_NEAR(g[i].item<double>(), num, tol * std::max(1.0, std::abs(num))) << "element " << i;
  }
}

at::Tensor sample_builtin(const at::Tensor& x, const at::Tensor& grid) {
  return at::grid_sampler_2d(x, grid, /*bilinear*/ 0, /*zeros*/ 0, /*align_corners*/ false);
}

}  // namespace

// ---- grid_sample_2d ------------------------------------------------------------------------------

TEST(GridSample2d, ForwardEqualsBuiltin) {
  at::Tensor x = randn_t({2, 3, 5, 6}, 1, at::kFloat), grid = uniform_grid(2, 4, 7, 2, at::kFloat);
  EXPECT_TRUE(at::equal(grid_sample_2d(x, grid), sample_builtin(x, grid)));
}

TEST(GridSample2d, FirstDerivativesMatchFiniteDifferences) {
  at::Tensor x = randn_t({1, 2, 4, 5}, 3), grid = uniform_grid(1, 3, 3, 4), probe = randn_t({1, 2, 3, 3}, 5);
  fd_check([&](const at::Tensor& xi) { return (grid_sample_2d(xi, grid) * probe).sum(); }, x);
  fd_check([&](const at::Tensor& gi) { return (grid_sample_2d(x, gi) * probe).sum(); }, grid);
  // And the same gradients as the built-in op.
  at::Tensor xr = x.clone().requires_grad_(true), gr = grid.clone().requires_grad_(true);
  auto ours = torch::autograd::grad({(grid_sample_2d(xr, gr) * probe).sum()}, {xr, gr});
  auto theirs = torch::autograd::grad({(sample_builtin(xr, gr) * probe).sum()}, {xr, gr});
  EXPECT_LT(rel(ours[0], theirs[0]), 1e-14);
  EXPECT_LT(rel(ours[1], theirs[1]), 1e-14);
}

TEST(GridSample2d, DoubleBackwardWrtGradOutput) {
  // grad_input is linear in grad_output: d<grad_input, w>/d grad_output = grid_sample(w, grid).
  at::Tensor x = randn_t({1, 2, 4, 5}, 6), grid = uniform_grid(1, 3, 3, 7), w = randn_t({1, 2, 4, 5}, 8);
  auto h = [&](const at::Tensor& go) {
    at::Tensor xi = x.clone().requires_grad_(true);
    at::Tensor gi = torch::autograd::grad({grid_sample_2d(xi, grid)}, {xi}, {go}, true, /*create_graph=*/true)[0];
    return (gi * w).sum();
  };
  at::Tensor go0 = randn_t({1, 2, 3, 3}, 9);
  fd_check(h, go0);
  at::Tensor go = go0.clone().requires_grad_(true);
  at::Tensor d = torch::autograd::grad({h(go)}, {go})[0];
  EXPECT_LT(rel(d, sample_builtin(w, grid)), 1e-14);
}

TEST(GridSample2d, SecondDerivativeThroughInputMatchesFiniteDifferences) {
  // h(x) = sum((d/dx sum(probe * gs(x)^2))^2 * probe2): the inner gradient depends on x through
  // grad_output, so d h/dx runs the double backward.
  at::Tensor x = randn_t({1, 2, 4, 4}, 10), grid = uniform_grid(1, 3, 4, 11);
  at::Tensor probe = randn_t({1, 2, 3, 4}, 12), probe2 = randn_t({1, 2, 4, 4}, 13);
  auto h = [&](const at::Tensor& xin) {
    at::Tensor xi = xin.requires_grad() ? xin : xin.detach().clone().requires_grad_(true);
    at::Tensor y = grid_sample_2d(xi, grid);
    at::Tensor g = torch::autograd::grad({(y.square() * probe).sum()}, {xi}, {}, true, /*create_graph=*/true)[0];
    return (g.square() * probe2).sum();
  };
  fd_check(h, x, 1e-5);
}

TEST(GridSample2d, SecondOrderGradientWrtGridIsRejected) {
  at::Tensor x = randn_t({1, 1, 4, 4}, 14).requires_grad_(true);
  at::Tensor grid = uniform_grid(1, 2, 2, 15).requires_grad_(true);
  at::Tensor gx = torch::autograd::grad({grid_sample_2d(x, grid).square().sum()}, {x}, {}, true, true)[0];
  EXPECT_THROW(torch::autograd::grad({gx.square().sum()}, {grid}), c10::Error);
}

// ---- AugmentConfig -------------------------------------------------------------------------------

TEST(AugmentConfig, NamedPipelines) {
  EXPECT_EQ(AugmentConfig::pipeline_names().size(), 11u);
  AugmentConfig blit = AugmentConfig::from_pipeline("blit");
  EXPECT_EQ(blit.xflip, 1);
  EXPECT_EQ(blit.rotate90, 1);
  EXPECT_EQ(blit.xint, 1);
  EXPECT_EQ(blit.scale, 0);
  AugmentConfig bgc = AugmentConfig::from_pipeline("bgc");
  EXPECT_EQ(bgc.xfrac, 1);
  EXPECT_EQ(bgc.saturation, 1);
  EXPECT_EQ(bgc.imgfilter, 0);
  EXPECT_EQ(bgc.xint_max, 0.125);  // ranges keep their defaults
  AugmentConfig all = AugmentConfig::from_pipeline("bgcfnc");
  EXPECT_EQ(all.imgfilter, 1);
  EXPECT_EQ(all.noise, 1);
  EXPECT_EQ(all.cutout, 1);
  EXPECT_EQ(AugmentConfig::from_pipeline("cutout").xflip, 0);
  try {
    AugmentConfig::from_pipeline("bgcx");
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("bgcx"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("bgcfnc"), std::string::npos);
  }
}

TEST(AugmentConfig, JsonRoundTripAndErrors) {
  AugmentConfig c = AugmentConfig::from_json(
      {{"class_name", "training.augment.AugmentPipe"}, {"xflip", 1}, {"hue_max", 0.5}, {"imgfilter_bands", {1, 0, 1, 1}}});
  EXPECT_EQ(c.xflip, 1);
  EXPECT_EQ(c.hue_max, 0.5);
  EXPECT_EQ(c.imgfilter_bands, (std::vector<double>{1, 0, 1, 1}));
  EXPECT_EQ(c.scale_std, 0.2);
  AugmentConfig back = AugmentConfig::from_json(c.to_json());
  EXPECT_EQ(back.to_json(), c.to_json());
  EXPECT_THROW(AugmentConfig::from_json({{"xflipp", 1}}), std::invalid_argument);
  EXPECT_THROW(AugmentConfig::from_json({{"xflip", -1}}), std::invalid_argument);
  EXPECT_THROW(AugmentConfig::from_json({{"imgfilter_bands", {1, 1}}}), std::invalid_argument);
}

// ---- AugmentPipe ---------------------------------------------------------------------------------

TEST(AugmentPipe, ZeroPIsTheIdentity) {
  at::Tensor x = randn_t({2, 3, 32, 32}, 20, at::kFloat);
  AugmentPipe pipe(AugmentConfig::from_pipeline("bgcfnc"));
  pipe.set_p(0);
  at::Tensor y = pipe.forward(x, at::detail::createCPUGenerator(1));
  // Resampling with the identity transform and the unit filter bank round only (the float32 sym6
  // taps reconstruct to ~1e-6).
  EXPECT_LT(rel(y, x), 1e-5);
  AugmentPipe none(AugmentConfig{});
  EXPECT_TRUE(at::equal(none.forward(x, at::detail::createCPUGenerator(1)), x));
}

TEST(AugmentPipe, SameGeneratorStateSameAugmentation) {
  at::Tensor x = randn_t({4, 3, 32, 32}, 21, at::kFloat);
  AugmentPipe pipe(AugmentConfig::from_pipeline("bgcfnc"));
  pipe.set_p(0.6);
  at::Tensor a = pipe.forward(x, at::detail::createCPUGenerator(7));
  at::manual_seed(123);  // the default generator plays no part
  at::Tensor b = pipe.forward(x, at::detail::createCPUGenerator(7));
  at::Tensor c = pipe.forward(x, at::detail::createCPUGenerator(8));
  EXPECT_TRUE(at::equal(a, b));
  EXPECT_GT(rel(c, a), 1e-3);
  // An undefined generator means the default one.
  EXPECT_EQ(pipe.forward(x, at::Generator()).sizes(), x.sizes());
}

TEST(AugmentPipe, FilterBankAtUnitGainIsTheIdentity) {
  // At percentile 0.5 every band gain is exp2(erfinv(0)) = 1: the bands sum to a unit impulse.
  at::Tensor x = randn_t({2, 3, 32, 32}, 22, at::kFloat);
  AugmentPipe pipe(AugmentConfig::from_pipeline("filter"));
  EXPECT_LT(rel(pipe.forward(x, at::detail::createCPUGenerator(1), 0.5), x), 1e-6);
  // Other percentiles change the image.
  EXPECT_GT(rel(pipe.forward(x, at::detail::createCPUGenerator(1), 0.9), x), 1e-2);
}

TEST(AugmentPipe, GraySingleChannelColourRule) {
  // A gray RGB image stays gray under the colour transforms; the 1-channel rule (mean of the three
  // colour rows) gives the mean of those channels.
  at::Tensor gray = randn_t({2, 1, 16, 16}, 23, at::kFloat);
  AugmentPipe pipe(AugmentConfig::from_pipeline("color"));
  for (double q : {0.2, 0.7}) {
    at::Tensor one = pipe.forward(gray, at::detail::createCPUGenerator(1), q);
    at::Tensor rgb = pipe.forward(gray.repeat({1, 3, 1, 1}), at::detail::createCPUGenerator(1), q);
    EXPECT_LT(rel(rgb.select(1, 0), rgb.select(1, 2)), 1e-6) << q;
    EXPECT_LT(rel(one, rgb.mean(1, true)), 1e-6) << q;
    EXPECT_GT(rel(one, gray), 1e-2) << q;
  }
  // Brightness alone adds erfinv(2q - 1) * brightness_std.
  AugmentConfig bc;
  bc.brightness = 1;
  at::Tensor y = AugmentPipe(bc).forward(gray, at::detail::createCPUGenerator(1), 0.8);
  const double b = at::erfinv(at::scalar_tensor(0.8 * 2 - 1)).item<double>() * 0.2;
  EXPECT_NEAR((y - gray).mean().item<double>(), b, 1e-6);
}

// ---- any channel count -----------------------------------------------------------------------------

TEST(AugmentPipe, AnyChannelCountGrayStackEqualsOneChannel) {
  // C copies of a gray image go through every transform but noise (which draws per channel) as
  // the gray image does: brightness, contrast and luma flip act alike on the axis ones(C) /
  // sqrt(C), saturation leaves the axis alone, hue is skipped for C != 3 as for C = 1.
  at::Tensor gray = randn_t({3, 1, 32, 32}, 30, at::kFloat);  // the filter bank needs 32 pixels
  nlohmann::json all = AugmentConfig::from_pipeline("bgcfnc").to_json();
  all["noise"] = 0;
  AugmentPipe pipe(AugmentConfig::from_json(all));
  for (int64_t c : {2, 4, 5}) {
    at::Tensor stack = gray.repeat({1, c, 1, 1});
    for (double q : {0.2, 0.7}) {
      at::Tensor one = pipe.forward(gray, at::detail::createCPUGenerator(1), q);
      at::Tensor many = pipe.forward(stack, at::detail::createCPUGenerator(1), q);
      ASSERT_EQ(many.sizes(), stack.sizes());
      EXPECT_GT(rel(one, gray), 1e-2) << c << " " << q;
      for (int64_t k = 0; k < c; ++k) EXPECT_LT(rel(many.select(1, k), one.select(1, 0)), 1e-5) << c << " " << q << " " << k;
    }
    // Random draws: the colour transforms draw in the same order as for one channel (saturation,
    // drawn only for C > 1, comes last and is the identity on gray), so "bgc" matches too.
    AugmentPipe bgc(AugmentConfig::from_pipeline("bgc"));
    at::Tensor one = bgc.forward(gray, at::detail::createCPUGenerator(9));
    at::Tensor many = bgc.forward(stack, at::detail::createCPUGenerator(9));
    for (int64_t k = 0; k < c; ++k) EXPECT_LT(rel(many.select(1, k), one.select(1, 0)), 1e-5) << c << " " << k;
  }
}

TEST(AugmentPipe, AnyChannelCountColourTransformsByFormula) {
  const double q = 0.8;
  const double normal_q = at::erfinv(at::scalar_tensor(q * 2 - 1)).item<double>();  // the debug draw of a normal
  for (int64_t c : {2, 4, 7}) {
    at::Tensor x = randn_t({2, c, 8, 8}, 31 + static_cast<uint64_t>(c), at::kFloat);
    at::Tensor mean = x.mean(1, true);
    auto only = [&](const char* key) {
      nlohmann::json j = nlohmann::json::object();
      j[key] = 1;
      return AugmentPipe(AugmentConfig::from_json(j)).forward(x, at::detail::createCPUGenerator(1), q);
    };
    // Brightness adds b = normal_q * 0.2 to every channel; contrast scales by 2^(normal_q * 0.5).
    EXPECT_LT(rel(only("brightness"), x + normal_q * 0.2), 1e-6) << c;
    EXPECT_LT(rel(only("contrast"), x * std::exp2(normal_q * 0.5)), 1e-6) << c;
    // Luma flip (floor(2q) = 1: applied) reflects about the plane orthogonal to ones(C).
    EXPECT_LT(rel(only("lumaflip"), x - 2 * mean), 1e-5) << c;
    // Saturation scales the deviation from the channel mean by 2^(normal_q * 1).
    EXPECT_LT(rel(only("saturation"), mean + (x - mean) * std::exp2(normal_q)), 1e-5) << c;
    // Hue rotation exists only for RGB.
    EXPECT_TRUE(at::equal(only("hue"), x)) << c;
  }
}

TEST(AugmentPipe, SecondDerivativeThroughPipeMatchesFiniteDifferences) {
  // A tiny nonlinear "discriminator" after the geometric and colour pipe, in float64 with fixed
  // draws: the R1 gradient's derivative with respect to the image against central differences.
  at::Tensor x = randn_t({1, 3, 6, 6}, 25), probe = randn_t({1, 3, 6, 6}, 26), probe2 = randn_t({1, 3, 6, 6}, 27);
  AugmentPipe pipe(AugmentConfig::from_pipeline("bgc"));
  pipe.set_p(1);
  auto h = [&](const at::Tensor& xin) {
    at::Tensor xi = xin.requires_grad() ? xin : xin.detach().clone().requires_grad_(true);
    at::Tensor y = pipe.forward(xi, at::detail::createCPUGenerator(3));
    at::Tensor g = torch::autograd::grad({(at::softplus(y) * probe).sum()}, {xi}, {}, true, true)[0];
    return (g.square() * probe2).sum();
  };
  fd_check(h, x, 1e-5);
}

TEST(AugmentPipe, R1DoubleBackwardThroughWholePipe) {
  // R1 as in training: grad of D(aug(x)) w.r.t. x with create_graph, then the penalty's backward
  // into D's parameters.
  at::Tensor x = randn_t({2, 3, 32, 32}, 28, at::kFloat).requires_grad_(true);
  at::Tensor w = (randn_t({4, 3, 3, 3}, 29, at::kFloat) * 0.3).requires_grad_(true);
  AugmentPipe pipe(AugmentConfig::from_pipeline("bgcfnc"));
  pipe.set_p(1);
  at::Tensor aug = pipe.forward(x, at::detail::createCPUGenerator(5));
  at::Tensor logits = at::leaky_relu(at::conv2d(aug, w), 0.2).mean({1, 2, 3});
  at::Tensor gx = torch::autograd::grad({logits.sum()}, {x}, {}, true, /*create_graph=*/true)[0];
  at::Tensor penalty = gx.square().sum({1, 2, 3}).mean();
  at::Tensor gw = torch::autograd::grad({penalty}, {w})[0];
  EXPECT_TRUE(at::isfinite(gw).all().item<bool>());
  EXPECT_GT(gw.abs().max().item<double>(), 0);
  EXPECT_TRUE(at::isfinite(gx).all().item<bool>());
}
