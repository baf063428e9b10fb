// Networks: reference keys, shapes for every architecture, conditioning, grayscale, truncation,
// Freeze-D, named tensor I/O and the penalty building blocks.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/GradMode.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <filesystem>

#include "data/h5.h"
#include "trainer/networks.h"
#include "trainer/penalties.h"
#include "trainer/tensor_io.h"

using namespace sf::trainer;

namespace {

GeneratorConfig small_g(const std::string& arch, int res, int channels, int c_dim) {
  GeneratorConfig g;
  g.z_dim = 16;
  g.w_dim = 16;
  g.c_dim = c_dim;
  g.img_resolution = res;
  g.img_channels = channels;
  g.mapping_layers = 2;
  g.architecture = arch;
  g.channel_base = 128;
  g.channel_max = 16;
  return g;
}

DiscriminatorConfig small_d(const std::string& arch, int res, int channels, int c_dim) {
  DiscriminatorConfig d;
  d.c_dim = c_dim;
  d.img_resolution = res;
  d.img_channels = channels;
  d.architecture = arch;
  d.channel_base = 128;
  d.channel_max = 16;
  d.mbstd_group_size = 2;
  return d;
}

at::Generator gen(uint64_t seed) { return at::detail::createCPUGenerator(seed); }

TEST(Networks, GeneratorKeysAndShapesForEveryArchitecture) {
  for (std::string arch : {"orig", "skip", "resnet"}) {
    for (int channels : {1, 3}) {
      Generator G(small_g(arch, 16, channels, 3), gen(1));
      EXPECT_TRUE(G.state().find("synthesis.b8.conv0.affine.weight")) << arch;
      EXPECT_TRUE(G.state().find("synthesis.b4.const"));
      EXPECT_TRUE(G.state().find("mapping.w_avg"));
      EXPECT_TRUE(G.state().find("mapping.embed.weight"));
      EXPECT_TRUE(G.state().find("synthesis.b16.torgb.weight"));
      EXPECT_EQ(G.state().find("synthesis.b8.torgb.weight") != nullptr, arch == "skip") << arch;
      EXPECT_EQ(G.state().find("synthesis.b8.skip.weight") != nullptr, arch == "resnet") << arch;
      EXPECT_EQ(G.num_ws(), 6);  // b4: 1 conv, b8 and b16: 2 convs each, +1 for the last ToRGB
      at::Tensor z = at::randn({2, 16}, gen(2)), c = at::eye(3).slice(0, 0, 2);
      G.train(false);
      at::Tensor img = G.forward(z, c, 1, -1, NoiseMode::Const);
      EXPECT_EQ(img.sizes(), (at::IntArrayRef{2, channels, 16, 16}));
      EXPECT_TRUE(img.isfinite().all().item<bool>());
    }
  }
}

TEST(Networks, DiscriminatorKeysAndShapesForEveryArchitecture) {
  for (std::string arch : {"orig", "skip", "resnet"}) {
    Discriminator D(small_d(arch, 16, 1, 4), gen(3));
    EXPECT_TRUE(D.state().find("b16.fromrgb.weight"));
    EXPECT_TRUE(D.state().find("b4.out.weight"));
    EXPECT_TRUE(D.state().find("mapping.fc7.weight"));  // conditioning mapping, 8 layers by default
    EXPECT_EQ(D.state().find("b8.fromrgb.weight") != nullptr, arch == "skip");
    EXPECT_EQ(D.state().find("b4.fromrgb.weight") != nullptr, arch == "skip");
    EXPECT_EQ(D.state().find("b16.skip.weight") != nullptr, arch == "resnet");
    at::Tensor logits = D.forward(at::randn({4, 1, 16, 16}, gen(4)), at::eye(4));
    EXPECT_EQ(logits.sizes(), (at::IntArrayRef{4, 1}));
  }
  // Unconditional: no mapping network, out has one feature.
  Discriminator D(small_d("resnet", 8, 3, 0), gen(5));
  EXPECT_FALSE(D.state().find("mapping.fc0.weight"));
  EXPECT_EQ(D.state().at("b4.out.weight").size(0), 1);
}

TEST(Networks, ChannelsFollowBaseAndMax) {
  GeneratorConfig g = small_g("skip", 32, 3, 0);
  g.channel_base = 256;
  g.channel_max = 32;
  Generator G(g, gen(6));
  EXPECT_EQ(G.state().at("synthesis.b4.const").size(0), 32);       // min(256/4, 32)
  EXPECT_EQ(G.state().at("synthesis.b32.conv1.weight").size(0), 8);  // 256/32
  EXPECT_THROW(GeneratorConfig::from_json({{"img_resolution", 48}}), std::invalid_argument);
  EXPECT_THROW(DiscriminatorConfig::from_json({{"architecture", "unet"}}), std::invalid_argument);
}

TEST(Networks, TruncationAndWAvgTracking) {
  Generator G(small_g("skip", 8, 3, 0), gen(7));
  at::Tensor z = at::randn({5, 16}, gen(8));
  G.train(false);
  at::Tensor ws = G.mapping(z, at::Tensor());
  EXPECT_TRUE(at::equal(G.state().at("mapping.w_avg"), at::zeros({16})));  // eval: no update
  at::Tensor half = G.mapping(z, at::Tensor(), 0.5, 2);
  at::Tensor w_avg = G.state().at("mapping.w_avg");
  EXPECT_TRUE(at::allclose(half.slice(1, 0, 2), w_avg.lerp(ws.slice(1, 0, 2), 0.5)));
  EXPECT_TRUE(at::equal(half.slice(1, 2), ws.slice(1, 2)));  // beyond the cutoff: untouched
  G.train(true);
  G.mapping(z, at::Tensor());
  at::Tensor expected = ws.select(1, 0).mean(0).lerp(at::zeros({16}), 0.995);
  EXPECT_TRUE(at::allclose(G.state().at("mapping.w_avg"), expected, 1e-6, 1e-7));
  G.mapping(z, at::Tensor(), 1, -1, /*skip_w_avg_update=*/true);
  EXPECT_TRUE(at::allclose(G.state().at("mapping.w_avg"), expected, 1e-6, 1e-7));
}

TEST(Networks, NoiseModes) {
  Generator G(small_g("skip", 8, 1, 0), gen(9));
  {
    at::NoGradGuard ng;
    for (const auto& e : G.state().entries())
      if (e.name.find("noise_strength") != std::string::npos) e.tensor.fill_(0.5);
  }
  G.train(false);
  at::Tensor ws = G.mapping(at::randn({2, 16}, gen(10)), at::Tensor());
  at::Tensor a = G.synthesis(ws, NoiseMode::Const), b = G.synthesis(ws, NoiseMode::Const);
  at::Tensor r1 = G.synthesis(ws, NoiseMode::Random, std::nullopt, gen(11));
  at::Tensor r2 = G.synthesis(ws, NoiseMode::Random, std::nullopt, gen(11));
  at::Tensor n = G.synthesis(ws, NoiseMode::None);
  EXPECT_TRUE(at::equal(a, b));
  EXPECT_TRUE(at::equal(r1, r2));  // same generator seed, same noise
  EXPECT_FALSE(at::allclose(a, n));
  EXPECT_FALSE(at::allclose(r1, a));
}

TEST(Networks, FreezeDMakesLeadingLayersNonTrainable) {
  DiscriminatorConfig cfg = small_d("resnet", 16, 3, 0);
  cfg.freeze_layers = 4;  // b16: fromrgb, conv0, conv1, skip
  Discriminator D(cfg, gen(12));
  EXPECT_FALSE(D.state().find("b16.conv0.weight")->trainable);
  EXPECT_FALSE(D.state().find("b16.skip.weight")->trainable);
  EXPECT_TRUE(D.state().find("b8.conv0.weight")->trainable);
  EXPECT_FALSE(D.state().at("b16.conv0.weight").requires_grad());
  at::Tensor out = D.forward(at::randn({2, 3, 16, 16}, gen(13)), at::Tensor());
  auto grads = torch::autograd::grad({out.sum()}, D.state().trainable_parameters());
  EXPECT_EQ(grads.size(), D.state().trainable_parameters().size());
}

TEST(TensorIo, RoundTripAndErrorsNameKeysAndShapes) {
  std::string path = (std::filesystem::temp_directory_path() / ("sf_tio_" + std::to_string(::getpid()) + ".h5")).string();
  Generator A(small_g("skip", 8, 3, 0), gen(14)), B(small_g("skip", 8, 3, 0), gen(15));
  {
    auto f = sf::h5::create_file(path, true);
    save_state(A.state(), sf::h5::require_group(f, "G"));
  }
  auto f = sf::h5::open_file(path);
  load_state(B.state(), sf::h5::open_group(f, "G"));
  for (const auto& e : A.state().entries()) EXPECT_TRUE(at::equal(e.tensor, B.state().at(e.name))) << e.name;

  Generator C(small_g("skip", 16, 3, 0), gen(16));  // one more block, same channels
  try {
    load_state(C.state(), sf::h5::open_group(f, "G"));
    FAIL() << "expected a mismatch error";
  } catch (const std::runtime_error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("missing synthesis.b16.conv0.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
  }
  Generator D(small_g("skip", 8, 1, 0), gen(17));  // grayscale: ToRGB shapes differ
  try {
    load_state(D.state(), sf::h5::open_group(f, "G"));
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("synthesis.b8.torgb.weight: file [3, 16, 1, 1] vs network [1, 16, 1, 1]"),
              std::string::npos)
        << e.what();
  }
  auto report = load_state(C.state(), sf::h5::open_group(f, "G"), /*partial=*/true);
  EXPECT_FALSE(report.clean());
  EXPECT_TRUE(at::equal(C.state().at("synthesis.b4.const"), A.state().at("synthesis.b4.const")));
  std::filesystem::remove(path);
}

TEST(Penalties, R1IsTheSquaredInputGradientAndDifferentiable) {
  Discriminator D(small_d("resnet", 8, 3, 0), gen(18));
  at::Tensor img = at::randn({4, 3, 8, 8}, gen(19));
  auto r = r1_penalty(D, img, at::Tensor());
  at::Tensor x = img.clone().requires_grad_(true);
  at::Tensor g = torch::autograd::grad({D.forward(x, at::Tensor()).sum()}, {x})[0];
  EXPECT_TRUE(at::allclose(r.penalty, g.square().sum({1, 2, 3}), 1e-5, 1e-9));
  auto pg = torch::autograd::grad({r.penalty.mean()}, D.state().trainable_parameters(), {}, true, false, true);
  double total = 0;
  for (auto& t : pg)
    if (t.defined()) total += t.abs().sum().item<double>();
  EXPECT_GT(total, 0);  // the double backward reaches D's parameters
}

TEST(Penalties, PathLengthLengthsMeanAndPenalty) {
  Generator G(small_g("skip", 8, 3, 0), gen(20));
  G.train(true);
  at::Tensor ws = G.mapping(at::randn({2, 16}, gen(21)), at::Tensor(), 1, -1, true);
  at::Tensor noise = at::randn({2, 3, 8, 8}, gen(22)) / 8.0;
  auto r = path_length(G, ws, noise, at::tensor(0.5f), 0.01, NoiseMode::Const);
  at::Tensor g = torch::autograd::grad({(G.synthesis(ws, NoiseMode::Const) * noise).sum()}, {ws})[0];
  at::Tensor lengths = g.square().sum(2).mean(1).sqrt();
  EXPECT_TRUE(at::allclose(r.lengths, lengths, 1e-5, 1e-8));
  EXPECT_NEAR(r.pl_mean.item<double>(), 0.5 + 0.01 * (lengths.mean().item<double>() - 0.5), 1e-6);
  EXPECT_TRUE(at::allclose(r.penalty, (lengths - r.pl_mean).square(), 1e-5, 1e-8));
  auto pg = torch::autograd::grad({r.penalty.mean()}, {G.state().at("synthesis.b8.conv1.weight")})[0];
  EXPECT_GT(pg.abs().sum().item<double>(), 0);
}

}  // namespace
