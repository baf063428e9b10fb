// The StyleGAN2 generator and discriminator, computing what the reference networks compute.
//
// Structure, parameter names, initialisation and forward passes follow the reference
// (mapping network with lr multiplier and w_avg tracking, synthesis blocks with modulated
// convolutions in the orig/skip/resnet architectures, discriminator blocks with FromRGB,
// minibatch standard deviation, epilogue and projection conditioning). Every tensor is registered
// in the network's ParamStore under its reference state_dict key.
//
// A network is not thread-safe: one thread drives forward/backward at a time. Networks own their
// ParamStore; layers hold shallow handles into it. Random draws (initialisation, random noise) use
// the at::Generator passed in, or LibTorch's default CPU generator when none is given.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "trainer/network_config.h"
#include "trainer/ops.h"
#include "trainer/param_store.h"

namespace sf::trainer {

enum class NoiseMode { Random, Const, None };

// How a block computes when mixed precision is active: its dtype is float16 when `half`, else
// float32; channels_last memory format when `channels_last`.
struct BlockMode {
  bool half = false;
  bool channels_last = false;
};
NoiseMode parse_noise_mode(const std::string& s);

// Dense layer with equalised learning rate.
struct FullyConnectedLayer {
  at::Tensor weight, bias;  // [out, in], [out] (bias may be undefined)
  double weight_gain = 1, bias_gain = 1;
  ops::Act act = ops::Act::Linear;
  FullyConnectedLayer() = default;
  FullyConnectedLayer(ParamStore& s, const std::string& prefix, int in, int out, bool bias, ops::Act act,
                      double lr_multiplier, double bias_init, at::Generator gen);
  at::Tensor forward(const at::Tensor& x) const;  // [N, in] -> [N, out]
};

// Convolution with optional up/down-sampling, bias, activation and clamp.
struct Conv2dLayer {
  at::Tensor weight, bias, resample_filter;
  int up = 1, down = 1, padding = 0;
  double weight_gain = 1, act_gain = 1;
  std::optional<double> conv_clamp;
  ops::Act act = ops::Act::Linear;
  Conv2dLayer() = default;
  Conv2dLayer(ParamStore& s, const std::string& prefix, int in, int out, int kernel, bool bias, ops::Act act, int up,
              int down, const std::vector<float>& filter, std::optional<double> conv_clamp, bool trainable,
              at::Generator gen);
  at::Tensor forward(const at::Tensor& x, double gain = 1) const;
};

struct MappingNetwork {
  int z_dim = 0, c_dim = 0, w_dim = 0, num_ws = -1, num_layers = 0;  // num_ws -1: no broadcast
  std::optional<double> w_avg_beta;
  bool has_embed = false;
  FullyConnectedLayer embed;
  std::vector<FullyConnectedLayer> fcs;
  at::Tensor w_avg;  // [w_dim] buffer when tracked
  MappingNetwork() = default;
  MappingNetwork(ParamStore& s, const std::string& prefix, int z_dim, int c_dim, int w_dim, int num_ws,
                 int num_layers, double lr_multiplier, std::optional<double> w_avg_beta, at::Generator gen);
  // z: [N, z_dim], c: [N, c_dim] -> [N, num_ws, w_dim] (or [N, w_dim] without broadcast).
  // truncation_cutoff < 0: all ws. w_avg is updated only when update_w_avg (training).
  at::Tensor forward(const at::Tensor& z, const at::Tensor& c, double truncation_psi, int truncation_cutoff,
                     bool update_w_avg) const;
};

struct SynthesisLayer {
  FullyConnectedLayer affine;
  at::Tensor weight, bias, noise_const, noise_strength, resample_filter;
  int resolution = 0, up = 1, padding = 1;
  bool use_noise = true;
  double act_gain = 1;
  std::optional<double> conv_clamp;
  SynthesisLayer() = default;
  SynthesisLayer(ParamStore& s, const std::string& prefix, int in, int out, int w_dim, int resolution, int up,
                 bool use_noise, const std::vector<float>& filter, std::optional<double> conv_clamp, at::Generator gen);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& w, NoiseMode mode, bool fused_modconv, double gain,
                     std::optional<at::Generator> noise_gen) const;
};

struct ToRGBLayer {
  FullyConnectedLayer affine;
  at::Tensor weight, bias;
  double weight_gain = 1;
  std::optional<double> conv_clamp;
  ToRGBLayer() = default;
  ToRGBLayer(ParamStore& s, const std::string& prefix, int in, int out, int w_dim, std::optional<double> conv_clamp,
             at::Generator gen);
  at::Tensor forward(const at::Tensor& x, const at::Tensor& w, bool fused_modconv) const;
};

struct SynthesisBlock {
  int in_channels = 0, out_channels = 0, resolution = 0, img_channels = 0, num_conv = 0, num_torgb = 0;
  bool is_last = false;
  std::string architecture;
  at::Tensor const_input, resample_filter;
  SynthesisLayer conv0, conv1;
  ToRGBLayer torgb;
  Conv2dLayer skip;
  bool use_fp16 = false;  // the reference's use_fp16 (resolution >= fp16_resolution)
  SynthesisBlock() = default;
  SynthesisBlock(ParamStore& s, const std::string& prefix, int in, int out, int w_dim, int resolution,
                 int img_channels, bool is_last, const GeneratorConfig& cfg, at::Generator gen);
  // ws: [N, num_conv + num_torgb, w_dim]; x and img may be undefined for the first block.
  // fused_modconv nullopt: the reference's default for the block's dtype. `precision` null: no
  // casts at all (float32 and float64 inputs pass through unchanged).
  void forward(at::Tensor& x, at::Tensor& img, const at::Tensor& ws, NoiseMode mode, std::optional<bool> fused_modconv,
               bool training, std::optional<at::Generator> noise_gen, const BlockMode* precision = nullptr) const;
};

struct SynthesisNetwork {
  int w_dim = 0, img_resolution = 0, img_channels = 0, num_ws = 0;
  std::vector<int> block_resolutions;
  std::vector<SynthesisBlock> blocks;
  SynthesisNetwork() = default;
  SynthesisNetwork(ParamStore& s, const std::string& prefix, const GeneratorConfig& cfg, at::Generator gen);
  at::Tensor forward(const at::Tensor& ws, NoiseMode mode, std::optional<bool> fused_modconv, bool training,
                     std::optional<at::Generator> noise_gen, bool mixed = false, bool channels_last = false) const;
};

class Generator {
 public:
  explicit Generator(const GeneratorConfig& cfg, std::optional<at::Generator> init_gen = std::nullopt);
  Generator(const Generator&) = delete;
  Generator& operator=(const Generator&) = delete;

  const GeneratorConfig& config() const { return cfg_; }
  ParamStore& state() { return store_; }
  const ParamStore& state() const { return store_; }
  int num_ws() const { return synthesis_.num_ws; }
  void train(bool on) { training_ = on; }
  bool training() const { return training_; }
  // Mixed precision as the reference (trainer/precision.h): on a CUDA device the blocks at
  // resolution >= fp16_resolution compute in float16 (channels_last with `channels_last`). Off by
  // default; CPU tensors always compute in float32.
  void set_mixed_precision(bool on, bool channels_last = false) { mixed_ = on, channels_last_ = channels_last; }
  bool mixed_precision() const { return mixed_; }

  // z: [N, z_dim], c: [N, c_dim] -> ws [N, num_ws, w_dim]. Updates w_avg in training mode
  // unless skip_w_avg_update.
  at::Tensor mapping(const at::Tensor& z, const at::Tensor& c, double truncation_psi = 1,
                     int truncation_cutoff = -1, bool skip_w_avg_update = false);
  // ws -> img [N, img_channels, res, res]. fused_modconv defaults per block to (not training) and
  // (float32 or batch 1), as the reference.
  at::Tensor synthesis(const at::Tensor& ws, NoiseMode mode = NoiseMode::Random,
                       std::optional<bool> fused_modconv = std::nullopt,
                       std::optional<at::Generator> noise_gen = std::nullopt);
  at::Tensor forward(const at::Tensor& z, const at::Tensor& c, double truncation_psi = 1, int truncation_cutoff = -1,
                     NoiseMode mode = NoiseMode::Random);

 private:
  GeneratorConfig cfg_;
  ParamStore store_;
  SynthesisNetwork synthesis_;
  MappingNetwork mapping_;
  bool training_ = true;
  bool mixed_ = false, channels_last_ = false;
};

struct DiscriminatorBlock {
  int in_channels = 0, resolution = 0, img_channels = 0, first_layer_idx = 0, num_layers = 0;
  std::string architecture;
  at::Tensor resample_filter;
  bool has_fromrgb = false, has_skip = false;
  bool use_fp16 = false;  // the reference's use_fp16 (resolution >= fp16_resolution)
  Conv2dLayer fromrgb, conv0, conv1, skip;
  DiscriminatorBlock() = default;
  DiscriminatorBlock(ParamStore& s, const std::string& prefix, int in, int tmp, int out, int resolution,
                     int first_layer_idx, const DiscriminatorConfig& cfg, at::Generator gen);
  // `precision` null: no casts (float32 and float64 inputs pass through unchanged).
  void forward(at::Tensor& x, at::Tensor& img, const BlockMode* precision = nullptr) const;
};

struct DiscriminatorEpilogue {
  int in_channels = 0, cmap_dim = 0, resolution = 4, mbstd_group_size = 4, mbstd_num_channels = 1;
  std::string architecture;
  bool has_fromrgb = false;
  Conv2dLayer fromrgb, conv;
  FullyConnectedLayer fc, out;
  DiscriminatorEpilogue() = default;
  DiscriminatorEpilogue(ParamStore& s, const std::string& prefix, int in, int cmap_dim,
                        const DiscriminatorConfig& cfg, at::Generator gen);
  // mixed: cast x and img to contiguous float32 first (the epilogue always runs in float32).
  at::Tensor forward(const at::Tensor& x, const at::Tensor& img, const at::Tensor& cmap, bool mixed = false) const;
};

class Discriminator {
 public:
  explicit Discriminator(const DiscriminatorConfig& cfg, std::optional<at::Generator> init_gen = std::nullopt);
  Discriminator(const Discriminator&) = delete;
  Discriminator& operator=(const Discriminator&) = delete;

  const DiscriminatorConfig& config() const { return cfg_; }
  ParamStore& state() { return store_; }
  const ParamStore& state() const { return store_; }
  // img: [N, img_channels, res, res], c: [N, c_dim] -> logits [N, 1].
  at::Tensor forward(const at::Tensor& img, const at::Tensor& c) const;
  // As Generator::set_mixed_precision.
  void set_mixed_precision(bool on, bool channels_last = false) { mixed_ = on, channels_last_ = channels_last; }
  bool mixed_precision() const { return mixed_; }

 private:
  DiscriminatorConfig cfg_;
  ParamStore store_;
  std::vector<DiscriminatorBlock> blocks_;
  bool has_mapping_ = false;
  MappingNetwork mapping_;
  DiscriminatorEpilogue epilogue_;
  bool mixed_ = false, channels_last_ = false;
};

}  // namespace sf::trainer
