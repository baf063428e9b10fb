// Shared by the suites that switch a CPU op's implementation (upfirdn2d, the 3x3 convolution) and
// check that whole networks give the same values and gradients either way.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "trainer/networks.h"
#include "trainer/penalties.h"

namespace sf::path_test {

// A small generator (`g_arch`) and discriminator (resnet) of 16x16 RGB images with `channel_base`
// and at most 16 channels, seeded.
struct SmallNetworks {
  trainer::Generator G;
  trainer::Discriminator D;
  at::Tensor z;
  static trainer::GeneratorConfig gcfg(const std::string& g_arch, int channel_base) {
    trainer::GeneratorConfig gc;
    gc.z_dim = gc.w_dim = 16;
    gc.img_resolution = 16;
    gc.img_channels = 3;
    gc.mapping_layers = 2;
    gc.architecture = g_arch;
    gc.channel_base = channel_base;
    gc.channel_max = 16;
    return gc;
  }
  static trainer::DiscriminatorConfig dcfg(int channel_base) {
    trainer::DiscriminatorConfig dc;
    dc.img_resolution = 16;
    dc.img_channels = 3;
    dc.architecture = "resnet";
    dc.channel_base = channel_base;
    dc.channel_max = 16;
    dc.mbstd_group_size = 2;
    return dc;
  }
  SmallNetworks(const std::string& g_arch, int channel_base, uint64_t seed)
      : G(gcfg(g_arch, channel_base), at::detail::createCPUGenerator(seed)),
        D(dcfg(channel_base), at::detail::createCPUGenerator(seed + 1)),
        z(at::randn({4, 16}, at::detail::createCPUGenerator(seed + 2))) {}

  // The image, the gradient of sum(img^2) w.r.t. ws, the R1 penalty on the image and its gradients
  // w.r.t. D's trainable parameters (second order; undefined where a parameter gets none).
  std::vector<at::Tensor> outputs() {
    at::Tensor ws = G.mapping(z, at::Tensor(), 1, -1, /*skip_w_avg_update=*/true);
    at::Tensor img = G.synthesis(ws, trainer::NoiseMode::Const);
    auto gw = torch::autograd::grad({img.square().sum()}, {ws});
    auto r = trainer::r1_penalty(D, img.detach(), at::Tensor());
    auto pg = torch::autograd::grad({r.penalty.mean()}, D.state().trainable_parameters(), {}, false, false, true);
    std::vector<at::Tensor> out = {img.detach(), gw[0].detach(), r.penalty.detach()};
    for (auto& t : pg) out.push_back(t.defined() ? t.detach() : at::Tensor());
    return out;
  }
};

// outputs() with each of two settings (set(false), set(true)) agree within tol of max(1, max|a|).
inline void expect_same_outputs(SmallNetworks& nets, const std::function<void(bool)>& set, double tol) {
  set(false);
  const std::vector<at::Tensor> a = nets.outputs();
  set(true);
  const std::vector<at::Tensor> b = nets.outputs();
  ASSERT_EQ(a.size(), b.size());
  int compared = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].defined(), b[i].defined()) << "network output " << i;
    if (!a[i].defined()) continue;
    const double scale = std::max(1.0, a[i].abs().max().item<double>());
    const double err = (b[i] - a[i]).abs().max().item<double>();
    EXPECT_LE(err, tol * scale) << "network output " << i << ": max abs difference " << err;
    ++compared;
  }
  EXPECT_GT(compared, 5);
}

}  // namespace sf::path_test
