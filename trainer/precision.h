// Mixed-precision plan: which dtype, clamp, memory format and modulated-convolution form each block
// of G and D uses, following the reference's rules (training/networks.py, train.py):
//   fp16_resolution = max(2^(log2(img_resolution) + 1 - num_fp16_res), 8); a block uses fp16 when its
//   resolution >= fp16_resolution; it computes in fp16 only when mixed precision is on (not --fp32,
//   not force_fp32) and on a CUDA device; the D epilogue (b4) is always float32; channels_last only
//   for fp16 blocks with --nhwc; each layer clamps at conv_clamp * gain (skip layers and the
//   epilogue's FromRGB never clamp); random noise is drawn in float32; fused_modconv (when not forced)
//   is (not training) and (dtype float32 or batch 1).
// On the CPU everything runs in float32; the plan still reports what a GPU would use (gpu_dtype).
// Torch-free: plain data for tests and logs.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "trainer/network_config.h"

namespace sf::trainer {

enum class DType { Float32, Float16 };
enum class DeviceKind { Cpu, Cuda };
const char* dtype_name(DType t);  // "float32" | "float16"

struct LayerClamp {
  std::string layer;            // e.g. "conv1", "torgb", "skip"
  std::optional<double> clamp;  // nullopt: no clamping
};

struct BlockPrecision {
  std::string name;            // reference module name: "b4".."bR" (G), "bR".."b8" and "b4" (D epilogue)
  int resolution = 0;
  bool use_fp16 = false;       // the reference block's use_fp16
  DType gpu_dtype = DType::Float32;  // what this block computes in on a GPU under this plan
  DType dtype = DType::Float32;      // what it computes in on the plan's device
  bool channels_last = false;        // memory format on the plan's device
  std::vector<LayerClamp> clamps;    // per layer, in forward order
  std::optional<double> clamp_of(const std::string& layer) const;  // throws if the layer is absent
};

struct PrecisionPlan {
  DeviceKind device = DeviceKind::Cpu;
  bool mixed = false;          // mixed precision requested (not --fp32 and not force_fp32)
  int g_fp16_resolution = 0, d_fp16_resolution = 0;
  std::vector<BlockPrecision> G;  // b4 .. bR
  std::vector<BlockPrecision> D;  // bR .. b8, then the epilogue b4
  DType noise_dtype = DType::Float32;
  const BlockPrecision& g_block(int res) const;
  const BlockPrecision& d_block(int res) const;
  // The reference's default fused_modconv of a synthesis block.
  static bool fused_modconv(const BlockPrecision& b, bool training, int64_t batch);
  std::string describe() const;  // one line per block, for logs
};

int fp16_resolution(int img_resolution, int num_fp16_res);

// mixed: mixed precision requested (the reference's --fp32 false and not force_fp32);
// channels_last: the reference's --nhwc (fp16_channels_last).
PrecisionPlan make_precision_plan(const GeneratorConfig& G, const DiscriminatorConfig& D, DeviceKind device, bool mixed,
                                  bool channels_last);

}  // namespace sf::trainer
