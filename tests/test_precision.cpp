// Mixed precision: the per-block plan against the reference's rules (expected tables written by hand
// from training/networks.py and train.py), CPU networks unchanged by mixed precision, and float16
// blocks run on the CPU against the same blocks in float32.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

#include "trainer/networks.h"
#include "trainer/ops.h"
#include "trainer/precision.h"

using namespace sf::trainer;

namespace {

at::Generator gen(uint64_t seed) { return at::detail::createCPUGenerator(seed); }

GeneratorConfig gcfg(int res, int num_fp16_res, std::optional<double> clamp, const std::string& arch = "skip") {
  GeneratorConfig g;
  g.img_resolution = res, g.num_fp16_res = num_fp16_res, g.conv_clamp = clamp, g.architecture = arch;
  return g;
}
DiscriminatorConfig dcfg(int res, int num_fp16_res, std::optional<double> clamp, const std::string& arch = "resnet") {
  DiscriminatorConfig d;
  d.img_resolution = res, d.num_fp16_res = num_fp16_res, d.conv_clamp = clamp, d.architecture = arch;
  return d;
}

const double kSqrtHalf = std::sqrt(0.5);

}  // namespace

// networks.py:442/695  fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)
TEST(Precision, Fp16Resolution) {
  EXPECT_EQ(fp16_resolution(256, 4), 32);    // 2^(8+1-4)
  EXPECT_EQ(fp16_resolution(1024, 4), 128);  // 2^(10+1-4)
  EXPECT_EQ(fp16_resolution(32, 4), 8);      // 2^(5+1-4) = 4 -> max(4, 8)
  EXPECT_EQ(fp16_resolution(256, 0), 512);   // train.py --fp32: num_fp16_res = 0 -> no block
  EXPECT_EQ(fp16_resolution(64, 10), 8);     // 2^-3 -> 8
}

// 256x256, num_fp16_res 4, conv_clamp 256 (train.py:181-182, every --cfg), G skip, D resnet.
TEST(Precision, Plan256Fp16Res4Clamp256OnGpu) {
  PrecisionPlan p = make_precision_plan(gcfg(256, 4, 256.0), dcfg(256, 4, 256.0), DeviceKind::Cuda, true, false);
  EXPECT_EQ(p.g_fp16_resolution, 32);
  ASSERT_EQ(p.G.size(), 7u);  // b4 .. b256
  // networks.py:448  use_fp16 = (res >= fp16_resolution); :382 dtype = float16 if use_fp16 and not force_fp32
  for (int res : {4, 8, 16}) EXPECT_EQ(p.g_block(res).dtype, DType::Float32) << res;
  for (int res : {32, 64, 128, 256}) EXPECT_EQ(p.g_block(res).dtype, DType::Float16) << res;
  // networks.py:303  act_clamp = conv_clamp * gain (gain 1 in skip); :323 ToRGB clamp=conv_clamp.
  EXPECT_EQ(p.g_block(4).clamps.size(), 2u);  // conv1, torgb (no conv0 in b4)
  EXPECT_EQ(*p.g_block(4).clamp_of("conv1"), 256.0);
  EXPECT_EQ(*p.g_block(64).clamp_of("conv0"), 256.0);
  EXPECT_EQ(*p.g_block(64).clamp_of("conv1"), 256.0);
  EXPECT_EQ(*p.g_block(64).clamp_of("torgb"), 256.0);
  // networks.py:708 D blocks bR..b8; :557 dtype; :645 the epilogue is always float32.
  ASSERT_EQ(p.D.size(), 7u);  // b256 .. b8, epilogue b4
  EXPECT_EQ(p.D.front().name, "b256");
  EXPECT_EQ(p.D.back().name, "b4");
  for (int res : {256, 128, 64, 32}) EXPECT_EQ(p.d_block(res).dtype, DType::Float16) << res;
  for (int res : {16, 8, 4}) EXPECT_EQ(p.d_block(res).dtype, DType::Float32) << res;
  // networks.py:544-554 fromrgb/conv0 clamp conv_clamp; conv1 gain sqrt(0.5) (resnet, :576); skip none.
  EXPECT_EQ(*p.d_block(256).clamp_of("fromrgb"), 256.0);
  EXPECT_EQ(*p.d_block(256).clamp_of("conv0"), 256.0);
  EXPECT_DOUBLE_EQ(*p.d_block(256).clamp_of("conv1"), 256.0 * kSqrtHalf);
  EXPECT_FALSE(p.d_block(256).clamp_of("skip").has_value());
  EXPECT_THROW(p.d_block(128).clamp_of("fromrgb"), std::invalid_argument);  // resnet: FromRGB only at the top
  // networks.py:638 the epilogue conv clamps at conv_clamp.
  EXPECT_EQ(*p.d_block(4).clamp_of("conv"), 256.0);
  EXPECT_EQ(p.noise_dtype, DType::Float32);  // networks.py:293 torch.randn(...) (float32)
  for (const auto& b : p.G) EXPECT_FALSE(b.channels_last);  // no --nhwc
}

// The same on the CPU: every block computes in float32, the plan still reports the GPU's dtype.
TEST(Precision, CpuRunsFloat32ButReportsGpuDtype) {
  PrecisionPlan p = make_precision_plan(gcfg(256, 4, 256.0), dcfg(256, 4, 256.0), DeviceKind::Cpu, true, true);
  for (const auto& b : p.G) {
    EXPECT_EQ(b.dtype, DType::Float32) << b.name;
    EXPECT_FALSE(b.channels_last) << b.name;
    EXPECT_EQ(b.gpu_dtype, b.resolution >= 32 ? DType::Float16 : DType::Float32) << b.name;
  }
  for (const auto& b : p.D) EXPECT_EQ(b.dtype, DType::Float32) << b.name;
  EXPECT_EQ(p.d_block(64).gpu_dtype, DType::Float16);
  EXPECT_EQ(p.d_block(4).gpu_dtype, DType::Float32);
}

// train.py:331-333 --fp32: nothing in float16.
TEST(Precision, Fp32MeansNoFloat16) {
  PrecisionPlan a = make_precision_plan(gcfg(256, 4, 256.0), dcfg(256, 4, 256.0), DeviceKind::Cuda, false, true);
  PrecisionPlan b = make_precision_plan(gcfg(256, 0, std::nullopt), dcfg(256, 0, std::nullopt), DeviceKind::Cuda,
                                        true, true);
  for (const PrecisionPlan* p : {&a, &b}) {
    for (const auto& blk : p->G) EXPECT_EQ(blk.gpu_dtype, DType::Float32) << blk.name;
    for (const auto& blk : p->D) EXPECT_EQ(blk.gpu_dtype, DType::Float32) << blk.name;
    for (const auto& blk : p->G) EXPECT_FALSE(blk.channels_last) << blk.name;
  }
  EXPECT_FALSE(b.g_block(8).clamp_of("conv0").has_value());  // conv_clamp None
}

// --cfg cifar: 32x32 (fp16_resolution 8), D orig (train.py:197). --cfg paper1024: 128 and up.
TEST(Precision, ReferenceCfgDefaults) {
  PrecisionPlan c = make_precision_plan(gcfg(32, 4, 256.0), dcfg(32, 4, 256.0, "orig"), DeviceKind::Cuda, true, true);
  EXPECT_EQ(c.g_block(4).dtype, DType::Float32);
  for (int res : {8, 16, 32}) {
    EXPECT_EQ(c.g_block(res).dtype, DType::Float16) << res;
    EXPECT_TRUE(c.g_block(res).channels_last) << res;  // networks.py:353 use_fp16 and fp16_channels_last
    EXPECT_EQ(c.d_block(res).dtype, DType::Float16) << res;
    EXPECT_EQ(*c.d_block(res).clamp_of("conv1"), 256.0) << res;  // orig: gain 1
  }
  EXPECT_FALSE(c.g_block(4).channels_last);
  EXPECT_EQ(c.d_block(4).dtype, DType::Float32);
  EXPECT_FALSE(c.d_block(4).channels_last);  // networks.py:646 contiguous_format
  PrecisionPlan r = make_precision_plan(gcfg(1024, 4, 256.0, "resnet"), dcfg(1024, 4, 256.0), DeviceKind::Cuda, true,
                                        false);
  EXPECT_EQ(r.g_block(64).dtype, DType::Float32);
  EXPECT_EQ(r.g_block(128).dtype, DType::Float16);
  // networks.py:400-402 resnet G: conv0 gain 1, conv1 gain sqrt(0.5); skip unclamped; ToRGB only in the last.
  EXPECT_EQ(*r.g_block(128).clamp_of("conv0"), 256.0);
  EXPECT_DOUBLE_EQ(*r.g_block(128).clamp_of("conv1"), 256.0 * kSqrtHalf);
  EXPECT_FALSE(r.g_block(128).clamp_of("skip").has_value());
  EXPECT_THROW(r.g_block(128).clamp_of("torgb"), std::invalid_argument);
  EXPECT_EQ(*r.g_block(1024).clamp_of("torgb"), 256.0);
  EXPECT_EQ(*r.g_block(4).clamp_of("conv1"), 256.0);  // b4 has no skip: gain 1
  // D skip architecture: the epilogue's FromRGB is unclamped (networks.py:634).
  PrecisionPlan s = make_precision_plan(gcfg(64, 4, 256.0), dcfg(64, 4, 256.0, "skip"), DeviceKind::Cuda, true, false);
  EXPECT_FALSE(s.d_block(4).clamp_of("fromrgb").has_value());
  EXPECT_EQ(*s.d_block(16).clamp_of("fromrgb"), 256.0);
}

// networks.py:386 fused_modconv = (not self.training) and (dtype == torch.float32 or int(x.shape[0]) == 1)
TEST(Precision, FusedModconvRule) {
  PrecisionPlan p = make_precision_plan(gcfg(64, 2, 256.0), dcfg(64, 2, 256.0), DeviceKind::Cuda, true, false);
  const BlockPrecision &f32 = p.g_block(8), &f16 = p.g_block(64);
  ASSERT_EQ(f16.dtype, DType::Float16);
  EXPECT_FALSE(PrecisionPlan::fused_modconv(f32, true, 4));
  EXPECT_FALSE(PrecisionPlan::fused_modconv(f16, true, 1));
  EXPECT_TRUE(PrecisionPlan::fused_modconv(f32, false, 4));
  EXPECT_FALSE(PrecisionPlan::fused_modconv(f16, false, 4));
  EXPECT_TRUE(PrecisionPlan::fused_modconv(f16, false, 1));
}

namespace {
GeneratorConfig small_g(const std::string& arch) {
  GeneratorConfig g;
  g.z_dim = g.w_dim = 16;
  g.img_resolution = 16;
  g.mapping_layers = 2;
  g.architecture = arch;
  g.channel_base = 128;
  g.channel_max = 16;
  g.num_fp16_res = 2;
  g.conv_clamp = 256.0;
  return g;
}
DiscriminatorConfig small_d(const std::string& arch) {
  DiscriminatorConfig d;
  d.img_resolution = 16;
  d.architecture = arch;
  d.channel_base = 128;
  d.channel_max = 16;
  d.mbstd_group_size = 2;
  d.num_fp16_res = 2;
  d.conv_clamp = 256.0;
  return d;
}
}  // namespace

// On the CPU, mixed precision changes nothing: bit-identical float32 outputs.
TEST(Precision, CpuNetworksUnchangedByMixedPrecision) {
  for (std::string arch : {"orig", "skip", "resnet"}) {
    Generator a(small_g(arch), gen(1)), b(small_g(arch), gen(1));
    b.set_mixed_precision(true, true);
    at::Tensor z = at::randn({2, 16}, gen(2));
    for (bool training : {true, false}) {
      a.train(training), b.train(training);
      at::Tensor ya = a.synthesis(a.mapping(z, at::Tensor()), NoiseMode::Random, std::nullopt, gen(3));
      at::Tensor yb = b.synthesis(b.mapping(z, at::Tensor()), NoiseMode::Random, std::nullopt, gen(3));
      EXPECT_EQ(yb.scalar_type(), at::kFloat);
      EXPECT_TRUE(at::equal(ya, yb)) << arch << " training " << training;
    }
    Discriminator da(small_d(arch), gen(4)), db(small_d(arch), gen(4));
    db.set_mixed_precision(true, true);
    at::Tensor img = at::randn({2, 3, 16, 16}, gen(5));
    EXPECT_TRUE(at::equal(da.forward(img, at::Tensor()), db.forward(img, at::Tensor()))) << arch;
  }
}

// The float16 path of a synthesis block, run on the CPU (LibTorch has CPU half convolutions): x
// comes out in float16, img in float32, and both agree with the float32 block to float16 accuracy.
TEST(Precision, Float16SynthesisBlockOnCpuMatchesFloat32) {
  for (std::string arch : {"orig", "skip", "resnet"}) {
    GeneratorConfig cfg = small_g(arch);
    ParamStore s;
    SynthesisBlock blk(s, "b16", 16, 16, 16, 16, 3, true, cfg, gen(6));
    at::Tensor x0 = at::randn({2, 16, 8, 8}, gen(7)), img0 = at::randn({2, 3, 8, 8}, gen(8));
    at::Tensor ws = at::randn({2, blk.num_conv + blk.num_torgb, 16}, gen(9));
    at::Tensor x32 = x0, img32 = img0, x16 = x0, img16 = img0;
    blk.forward(x32, img32, ws, NoiseMode::Const, false, true, std::nullopt);
    const BlockMode half{true, true};
    blk.forward(x16, img16, ws, NoiseMode::Const, false, true, std::nullopt, &half);
    EXPECT_EQ(x16.scalar_type(), at::kHalf) << arch;  // networks.py:417 assert x.dtype == dtype
    EXPECT_EQ(img16.scalar_type(), at::kFloat) << arch;  // :418 img stays float32
    EXPECT_TRUE(img16.is_contiguous()) << arch;
    // float16 has an 11-bit mantissa: relative error ~1e-3 per op; allow 2e-2 of the output's scale.
    const double scale = x32.abs().max().item<double>();
    EXPECT_LT((x16.to(at::kFloat) - x32).abs().max().item<double>(), 2e-2 * scale) << arch;
    EXPECT_LT((img16 - img32).abs().max().item<double>(), 2e-2 * img32.abs().max().item<double>()) << arch;
  }
}

// The float16 discriminator block on the CPU, and the float32 epilogue after it.
TEST(Precision, Float16DiscriminatorBlockOnCpuMatchesFloat32) {
  DiscriminatorConfig cfg = small_d("resnet");
  ParamStore s;
  DiscriminatorBlock blk(s, "b16", 0, 16, 16, 16, 0, cfg, gen(10));
  at::Tensor img = at::randn({2, 3, 16, 16}, gen(11));
  at::Tensor x32, img32 = img, x16, img16 = img;
  blk.forward(x32, img32);
  const BlockMode half{true, false};
  blk.forward(x16, img16, &half);
  EXPECT_EQ(x16.scalar_type(), at::kHalf);
  EXPECT_LT((x16.to(at::kFloat) - x32).abs().max().item<double>(), 2e-2 * x32.abs().max().item<double>());
}

// The fp16 pre-normalisation of modulated_conv2d (networks.py:47-49): with styles of 1e3 and inputs
// of 1e2, x * styles overflows float16 (max 65504) without it; with it the result is finite and
// matches float32 (demodulation cancels the scales).
TEST(Precision, ModulatedConvFloat16PreNormalisation) {
  at::Tensor x = at::randn({2, 8, 6, 6}, gen(12)) * 100, w = at::randn({4, 8, 3, 3}, gen(13));
  at::Tensor st = at::randn({2, 8}, gen(14)) * 1000;
  for (bool fused : {false, true}) {
    at::Tensor y32 = sf::ops::modulated_conv2d(x, w, st, at::Tensor(), 1, 1, 1, at::Tensor(), true, true, fused);
    at::Tensor y16 = sf::ops::modulated_conv2d(x.to(at::kHalf), w, st, at::Tensor(), 1, 1, 1, at::Tensor(), true, true,
                                               fused);
    EXPECT_EQ(y16.scalar_type(), at::kHalf);
    EXPECT_TRUE(y16.isfinite().all().item<bool>()) << fused;
    EXPECT_LT((y16.to(at::kFloat) - y32).abs().max().item<double>(), 1e-2 * y32.abs().max().item<double>()) << fused;
  }
  // Without pre-normalisation (the same math in float16) the non-fused product overflows.
  at::Tensor raw = x.to(at::kHalf) * st.to(at::kHalf).reshape({2, -1, 1, 1});
  EXPECT_FALSE(raw.isfinite().all().item<bool>());
}
