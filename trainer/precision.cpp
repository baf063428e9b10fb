#include "trainer/precision.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

namespace sf::trainer {

const char* dtype_name(DType t) { return t == DType::Float16 ? "float16" : "float32"; }

int fp16_resolution(int img_resolution, int num_fp16_res) {
  int log2 = 0;
  while ((1 << (log2 + 1)) <= img_resolution) ++log2;
  const int e = log2 + 1 - num_fp16_res;
  // 2 ** e for e < 0 is a fraction in the reference; max(., 8) makes it 8 either way.
  return e >= 31 ? (1 << 30) : std::max(e >= 0 ? (1 << e) : 0, 8);
}

std::optional<double> BlockPrecision::clamp_of(const std::string& layer) const {
  for (const auto& c : clamps)
    if (c.layer == layer) return c.clamp;
  throw std::invalid_argument("precision plan: block " + name + " has no layer " + layer);
}

const BlockPrecision& PrecisionPlan::g_block(int res) const {
  for (const auto& b : G)
    if (b.resolution == res) return b;
  throw std::invalid_argument("precision plan: no generator block at " + std::to_string(res));
}

const BlockPrecision& PrecisionPlan::d_block(int res) const {
  for (const auto& b : D)
    if (b.resolution == res) return b;
  throw std::invalid_argument("precision plan: no discriminator block at " + std::to_string(res));
}

bool PrecisionPlan::fused_modconv(const BlockPrecision& b, bool training, int64_t batch) {
  return !training && (b.dtype == DType::Float32 || batch == 1);
}

namespace {

std::optional<double> scaled(std::optional<double> clamp, double gain) {
  if (!clamp) return std::nullopt;
  return *clamp * gain;
}

void set_dtypes(BlockPrecision& b, bool use_fp16, DeviceKind device, bool mixed, bool channels_last) {
  b.use_fp16 = use_fp16;
  b.gpu_dtype = use_fp16 && mixed ? DType::Float16 : DType::Float32;
  b.dtype = device == DeviceKind::Cuda ? b.gpu_dtype : DType::Float32;
  b.channels_last = b.dtype == DType::Float16 && channels_last;
}

}  // namespace

PrecisionPlan make_precision_plan(const GeneratorConfig& Gc, const DiscriminatorConfig& Dc, DeviceKind device,
                                  bool mixed, bool channels_last) {
  PrecisionPlan p;
  p.device = device;
  p.mixed = mixed;
  const double sqrt_half = std::sqrt(0.5);

  p.g_fp16_resolution = fp16_resolution(Gc.img_resolution, Gc.num_fp16_res);
  for (int res = 4; res <= Gc.img_resolution; res *= 2) {
    BlockPrecision b;
    b.name = "b" + std::to_string(res);
    b.resolution = res;
    set_dtypes(b, res >= p.g_fp16_resolution, device, mixed, channels_last);
    const bool first = res == 4, resnet = Gc.architecture == "resnet";
    if (!first) b.clamps.push_back({"conv0", Gc.conv_clamp});
    b.clamps.push_back({"conv1", scaled(Gc.conv_clamp, !first && resnet ? sqrt_half : 1.0)});
    if (res == Gc.img_resolution || Gc.architecture == "skip") b.clamps.push_back({"torgb", Gc.conv_clamp});
    if (!first && resnet) b.clamps.push_back({"skip", std::nullopt});
    p.G.push_back(b);
  }

  p.d_fp16_resolution = fp16_resolution(Dc.img_resolution, Dc.num_fp16_res);
  for (int res = Dc.img_resolution; res >= 8; res /= 2) {
    BlockPrecision b;
    b.name = "b" + std::to_string(res);
    b.resolution = res;
    set_dtypes(b, res >= p.d_fp16_resolution, device, mixed, channels_last);
    const bool resnet = Dc.architecture == "resnet";
    if (res == Dc.img_resolution || Dc.architecture == "skip") b.clamps.push_back({"fromrgb", Dc.conv_clamp});
    b.clamps.push_back({"conv0", Dc.conv_clamp});
    b.clamps.push_back({"conv1", scaled(Dc.conv_clamp, resnet ? sqrt_half : 1.0)});
    if (resnet) b.clamps.push_back({"skip", std::nullopt});
    p.D.push_back(b);
  }
  BlockPrecision epi;  // DiscriminatorEpilogue: always float32, contiguous
  epi.name = "b4";
  epi.resolution = 4;
  set_dtypes(epi, false, device, mixed, channels_last);
  if (Dc.architecture == "skip") epi.clamps.push_back({"fromrgb", std::nullopt});
  epi.clamps.push_back({"conv", Dc.conv_clamp});
  p.D.push_back(epi);
  return p;
}

std::string PrecisionPlan::describe() const {
  std::ostringstream s;
  auto one = [&](const char* net, const BlockPrecision& b) {
    s << net << "." << b.name << ": " << dtype_name(b.dtype) << " (GPU " << dtype_name(b.gpu_dtype) << ")"
      << (b.channels_last ? ", channels_last" : "") << ", clamp";
    for (const auto& c : b.clamps) {
      s << " " << c.layer << "=";
      if (c.clamp) s << *c.clamp; else s << "none";
    }
    s << "\n";
  };
  for (const auto& b : G) one("G", b);
  for (const auto& b : D) one("D", b);
  return s.str();
}

}  // namespace sf::trainer
