#include "trainer/networks.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/GradMode.h>

#include <cmath>
#include <stdexcept>

#include "trainer/batch_invariant.h"
#include "trainer/precision.h"

namespace sf::trainer {
namespace {

at::Tensor randn(std::vector<int64_t> shape, at::Generator gen) {
  return at::randn(shape, gen, at::TensorOptions().dtype(at::kFloat));
}

std::string key(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

// The reference casts reduced-precision activations to float32 at block boundaries; float64
// (used by gradient checks) passes through unchanged.
at::Tensor at_least_fp32(const at::Tensor& t) {
  return t.scalar_type() == at::kDouble ? t : t.to(at::kFloat);
}

// x in the block's compute dtype and memory format (the reference's x.to(dtype=, memory_format=)).
at::Tensor to_mode(const at::Tensor& x, const BlockMode& m) {
  return x.to(m.half ? at::kHalf : at::kFloat, false, false,
              m.channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous);
}

at::Tensor to_fp32_contiguous(const at::Tensor& x) {
  return x.to(at::kFloat, false, false, at::MemoryFormat::Contiguous);
}

at::Generator resolve(std::optional<at::Generator> g) {
  return g ? *g : at::detail::getDefaultCPUGenerator();
}

}  // namespace

NoiseMode parse_noise_mode(const std::string& s) {
  if (s == "random") return NoiseMode::Random;
  if (s == "const") return NoiseMode::Const;
  if (s == "none") return NoiseMode::None;
  throw std::invalid_argument("unknown noise mode '" + s + "' (random, const, none)");
}

// ---------------------------------------------------------------------------------------------

FullyConnectedLayer::FullyConnectedLayer(ParamStore& s, const std::string& prefix, int in, int out, bool has_bias,
                                         ops::Act act_, double lr_multiplier, double bias_init, at::Generator gen)
    : act(act_) {
  weight = s.param(key(prefix, "weight"), randn({out, in}, gen) / lr_multiplier);
  if (has_bias) bias = s.param(key(prefix, "bias"), at::full({out}, static_cast<float>(bias_init)));
  weight_gain = lr_multiplier / std::sqrt(static_cast<double>(in));
  bias_gain = lr_multiplier;
}

namespace {
thread_local bool t_batch_invariant = false;
}  // namespace

BatchInvariantGuard::BatchInvariantGuard() : prev_(t_batch_invariant) { t_batch_invariant = true; }
BatchInvariantGuard::~BatchInvariantGuard() { t_batch_invariant = prev_; }
bool BatchInvariantGuard::active() { return t_batch_invariant; }

at::Tensor FullyConnectedLayer::forward(const at::Tensor& x) const {
  at::Tensor w = weight.to(x.scalar_type()) * weight_gain;
  at::Tensor b = bias;
  if (b.defined()) {
    b = b.to(x.scalar_type());
    if (bias_gain != 1) b = b * bias_gain;
  }
  if (t_batch_invariant && x.dim() == 2) {
    const int64_t n = x.size(0);
    at::Tensor wt = w.t().unsqueeze(0).expand({n, w.size(1), w.size(0)});
    if (act == ops::Act::Linear && b.defined())
      return at::baddbmm(b.view({1, 1, -1}).expand({n, 1, w.size(0)}), x.unsqueeze(1), wt).squeeze(1);
    return ops::bias_act(at::bmm(x.unsqueeze(1), wt).squeeze(1), b, 1, act);
  }
  if (act == ops::Act::Linear && b.defined()) return at::addmm(b.unsqueeze(0), x, w.t());
  return ops::bias_act(x.matmul(w.t()), b, 1, act);
}

Conv2dLayer::Conv2dLayer(ParamStore& s, const std::string& prefix, int in, int out, int kernel, bool has_bias,
                         ops::Act act_, int up_, int down_, const std::vector<float>& filter,
                         std::optional<double> clamp, bool trainable, at::Generator gen)
    : up(up_), down(down_), padding(kernel / 2), conv_clamp(clamp), act(act_) {
  resample_filter = s.buffer(key(prefix, "resample_filter"), ops::setup_filter(filter));
  weight_gain = 1.0 / std::sqrt(static_cast<double>(in) * kernel * kernel);
  act_gain = ops::default_gain(act);
  at::Tensor w = randn({out, in, kernel, kernel}, gen);
  if (trainable) {
    weight = s.param(key(prefix, "weight"), w);
    if (has_bias) bias = s.param(key(prefix, "bias"), at::zeros({out}));
  } else {
    weight = s.param(key(prefix, "weight"), w, false);
    if (has_bias) bias = s.param(key(prefix, "bias"), at::zeros({out}), false);
  }
}

at::Tensor Conv2dLayer::forward(const at::Tensor& x, double gain) const {
  at::Tensor w = weight * weight_gain;
  at::Tensor b = bias.defined() ? bias.to(x.scalar_type()) : at::Tensor();
  bool flip_weight = (up == 1);
  at::Tensor y = ops::conv2d_resample(x, w.to(x.scalar_type()), resample_filter, up, down, ops::Pad::all(padding), 1,
                                      flip_weight);
  std::optional<double> clamp;
  if (conv_clamp) clamp = *conv_clamp * gain;
  return ops::bias_act(y, b, 1, act, std::nullopt, act_gain * gain, clamp);
}

// ---------------------------------------------------------------------------------------------

MappingNetwork::MappingNetwork(ParamStore& s, const std::string& prefix, int z_dim_, int c_dim_, int w_dim_,
                               int num_ws_, int num_layers_, double lr_multiplier, std::optional<double> beta,
                               at::Generator gen)
    : z_dim(z_dim_), c_dim(c_dim_), w_dim(w_dim_), num_ws(num_ws_), num_layers(num_layers_), w_avg_beta(beta) {
  const int embed_features = c_dim > 0 ? w_dim : 0;
  const int layer_features = w_dim;
  std::vector<int> features;
  features.push_back(z_dim + embed_features);
  for (int i = 0; i < num_layers - 1; ++i) features.push_back(layer_features);
  features.push_back(w_dim);
  if (c_dim > 0) {
    has_embed = true;
    embed = FullyConnectedLayer(s, key(prefix, "embed"), c_dim, embed_features, true, ops::Act::Linear, 1.0, 0.0, gen);
  }
  for (int i = 0; i < num_layers; ++i)
    fcs.emplace_back(s, key(prefix, "fc" + std::to_string(i)), features[i], features[i + 1], true, ops::Act::Lrelu,
                     lr_multiplier, 0.0, gen);
  if (num_ws >= 0 && w_avg_beta) w_avg = s.buffer(key(prefix, "w_avg"), at::zeros({w_dim}));
}

at::Tensor MappingNetwork::forward(const at::Tensor& z, const at::Tensor& c, double psi, int cutoff,
                                   bool update_w_avg) const {
  at::Tensor x;
  if (z_dim > 0) {
    TORCH_CHECK(z.dim() == 2 && z.size(1) == z_dim, "mapping: z must be [N, ", z_dim, "], got ", z.sizes());
    x = ops::normalize_2nd_moment(at_least_fp32(z));
  }
  if (c_dim > 0) {
    TORCH_CHECK(c.defined() && c.dim() == 2 && c.size(1) == c_dim, "mapping: c must be [N, ", c_dim, "]");
    at::Tensor y = ops::normalize_2nd_moment(embed.forward(at_least_fp32(c)));
    x = x.defined() ? at::cat({x, y}, 1) : y;
  }
  for (const auto& fc : fcs) x = fc.forward(x);

  if (w_avg_beta && update_w_avg) {
    at::NoGradGuard no_grad;
    w_avg.copy_(x.detach().mean(0).lerp(w_avg, *w_avg_beta));
  }
  if (num_ws >= 0) x = x.unsqueeze(1).repeat({1, num_ws, 1});
  if (psi != 1) {
    TORCH_CHECK(w_avg.defined(), "mapping: truncation needs w_avg tracking");
    if (num_ws < 0 || cutoff < 0) {
      x = w_avg.lerp(x, psi);
    } else {
      int64_t k = std::min<int64_t>(cutoff, x.size(1));
      x = at::cat({w_avg.lerp(x.slice(1, 0, k), psi), x.slice(1, k)}, 1);
    }
  }
  return x;
}

// ---------------------------------------------------------------------------------------------

SynthesisLayer::SynthesisLayer(ParamStore& s, const std::string& prefix, int in, int out, int w_dim, int res,
                               int up_, bool use_noise_, const std::vector<float>& filter,
                               std::optional<double> clamp, at::Generator gen)
    : resolution(res), up(up_), padding(1), use_noise(use_noise_), conv_clamp(clamp) {
  resample_filter = s.buffer(key(prefix, "resample_filter"), ops::setup_filter(filter));
  act_gain = ops::default_gain(ops::Act::Lrelu);
  affine = FullyConnectedLayer(s, key(prefix, "affine"), w_dim, in, true, ops::Act::Linear, 1.0, 1.0, gen);
  weight = s.param(key(prefix, "weight"), randn({out, in, 3, 3}, gen));
  if (use_noise) {
    noise_const = s.buffer(key(prefix, "noise_const"), randn({res, res}, gen));
    noise_strength = s.param(key(prefix, "noise_strength"), at::zeros({}));
  }
  bias = s.param(key(prefix, "bias"), at::zeros({out}));
}

at::Tensor SynthesisLayer::forward(const at::Tensor& x, const at::Tensor& w, NoiseMode mode, bool fused_modconv,
                                   double gain, std::optional<at::Generator> noise_gen) const {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == weight.size(1) && x.size(2) == resolution / up,
              "synthesis layer: input ", x.sizes(), " does not match weight ", weight.sizes());
  at::Tensor styles = affine.forward(w);
  at::Tensor noise;
  if (use_noise && mode == NoiseMode::Random)
    noise = at::randn({x.size(0), 1, resolution, resolution}, resolve(noise_gen),
                      x.options().dtype(x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat)) *
            noise_strength;  // float32 even when x is float16, as the reference
  if (use_noise && mode == NoiseMode::Const) noise = noise_const * noise_strength;
  bool flip_weight = (up == 1);
  at::Tensor y = ops::modulated_conv2d(x, weight, styles, noise, up, 1, padding, resample_filter, true, flip_weight,
                                       fused_modconv);
  std::optional<double> clamp;
  if (conv_clamp) clamp = *conv_clamp * gain;
  return ops::bias_act(y, bias.to(y.scalar_type()), 1, ops::Act::Lrelu, std::nullopt, act_gain * gain, clamp);
}

ToRGBLayer::ToRGBLayer(ParamStore& s, const std::string& prefix, int in, int out, int w_dim,
                       std::optional<double> clamp, at::Generator gen)
    : conv_clamp(clamp) {
  affine = FullyConnectedLayer(s, key(prefix, "affine"), w_dim, in, true, ops::Act::Linear, 1.0, 1.0, gen);
  weight = s.param(key(prefix, "weight"), randn({out, in, 1, 1}, gen));
  bias = s.param(key(prefix, "bias"), at::zeros({out}));
  weight_gain = 1.0 / std::sqrt(static_cast<double>(in));
}

at::Tensor ToRGBLayer::forward(const at::Tensor& x, const at::Tensor& w, bool fused_modconv) const {
  at::Tensor styles = affine.forward(w) * weight_gain;
  at::Tensor y = ops::modulated_conv2d(x, weight, styles, at::Tensor(), 1, 1, 0, at::Tensor(), false, true,
                                       fused_modconv);
  return ops::bias_act(y, bias.to(y.scalar_type()), 1, ops::Act::Linear, std::nullopt, std::nullopt, conv_clamp);
}

SynthesisBlock::SynthesisBlock(ParamStore& s, const std::string& prefix, int in, int out, int w_dim, int res,
                               int img_ch, bool last, const GeneratorConfig& cfg, at::Generator gen)
    : in_channels(in), out_channels(out), resolution(res), img_channels(img_ch), is_last(last),
      architecture(cfg.architecture) {
  resample_filter = s.buffer(key(prefix, "resample_filter"), ops::setup_filter(cfg.resample_filter));
  if (in == 0) const_input = s.param(key(prefix, "const"), randn({out, res, res}, gen));
  if (in != 0) {
    conv0 = SynthesisLayer(s, key(prefix, "conv0"), in, out, w_dim, res, 2, cfg.use_noise, cfg.resample_filter,
                           cfg.conv_clamp, gen);
    ++num_conv;
  }
  conv1 = SynthesisLayer(s, key(prefix, "conv1"), out, out, w_dim, res, 1, cfg.use_noise, cfg.resample_filter,
                         cfg.conv_clamp, gen);
  ++num_conv;
  if (is_last || architecture == "skip") {
    torgb = ToRGBLayer(s, key(prefix, "torgb"), out, img_ch, w_dim, cfg.conv_clamp, gen);
    ++num_torgb;
  }
  if (in != 0 && architecture == "resnet")
    skip = Conv2dLayer(s, key(prefix, "skip"), in, out, 1, false, ops::Act::Linear, 2, 1, cfg.resample_filter,
                       std::nullopt, true, gen);
}

void SynthesisBlock::forward(at::Tensor& x, at::Tensor& img, const at::Tensor& ws, NoiseMode mode,
                             std::optional<bool> fused_opt, bool training, std::optional<at::Generator> noise_gen,
                             const BlockMode* precision) const {
  TORCH_CHECK(ws.dim() == 3 && ws.size(1) == num_conv + num_torgb, "synthesis block ", resolution, ": ws ",
              ws.sizes(), " should have ", num_conv + num_torgb, " entries");
  int w_idx = 0;
  auto next_w = [&] { return ws.select(1, w_idx++); };
  const bool half = precision && precision->half;
  const bool fused_modconv = fused_opt.value_or(!training && (!half || ws.size(0) == 1));
  if (in_channels == 0) {
    x = (precision ? to_mode(const_input, *precision) : const_input).unsqueeze(0).repeat({ws.size(0), 1, 1, 1});
  } else {
    TORCH_CHECK(x.dim() == 4 && x.size(1) == in_channels && x.size(2) == resolution / 2,
                "synthesis block ", resolution, ": bad input ", x.sizes());
    if (precision) x = to_mode(x, *precision);
  }
  const double sqrt_half = std::sqrt(0.5);
  if (in_channels == 0) {
    x = conv1.forward(x, next_w(), mode, fused_modconv, 1, noise_gen);
  } else if (architecture == "resnet") {
    at::Tensor y = skip.forward(x, sqrt_half);
    x = conv0.forward(x, next_w(), mode, fused_modconv, 1, noise_gen);
    x = conv1.forward(x, next_w(), mode, fused_modconv, sqrt_half, noise_gen);
    x = y + x;
  } else {
    x = conv0.forward(x, next_w(), mode, fused_modconv, 1, noise_gen);
    x = conv1.forward(x, next_w(), mode, fused_modconv, 1, noise_gen);
  }
  if (img.defined()) img = ops::upsample2d(img, resample_filter);
  if (is_last || architecture == "skip") {
    at::Tensor y = torgb.forward(x, next_w(), fused_modconv);
    y = precision ? to_fp32_contiguous(y) : at_least_fp32(y);
    img = img.defined() ? img + y : y;
  }
}

SynthesisNetwork::SynthesisNetwork(ParamStore& s, const std::string& prefix, const GeneratorConfig& cfg,
                                   at::Generator gen)
    : w_dim(cfg.w_dim), img_resolution(cfg.img_resolution), img_channels(cfg.img_channels) {
  for (int res = 4; res <= img_resolution; res *= 2) block_resolutions.push_back(res);
  for (int res : block_resolutions) {
    int in = res > 4 ? cfg.channels_at(res / 2) : 0;
    int out = cfg.channels_at(res);
    bool last = (res == img_resolution);
    blocks.emplace_back(s, key(prefix, "b" + std::to_string(res)), in, out, w_dim, res, img_channels, last, cfg, gen);
    blocks.back().use_fp16 = res >= fp16_resolution(cfg.img_resolution, cfg.num_fp16_res);
    num_ws += blocks.back().num_conv;
    if (last) num_ws += blocks.back().num_torgb;
  }
}

at::Tensor SynthesisNetwork::forward(const at::Tensor& ws_in, NoiseMode mode, std::optional<bool> fused_modconv,
                                     bool training, std::optional<at::Generator> noise_gen, bool mixed,
                                     bool channels_last) const {
  TORCH_CHECK(ws_in.dim() == 3 && ws_in.size(1) == num_ws && ws_in.size(2) == w_dim, "synthesis: ws must be [N, ",
              num_ws, ", ", w_dim, "], got ", ws_in.sizes());
  at::Tensor ws = at_least_fp32(ws_in);
  at::Tensor x, img;
  int64_t w_idx = 0;
  // Casts happen only for mixed precision on a CUDA device; otherwise every block runs as given.
  const bool cast = mixed && ws.is_cuda();
  for (const auto& block : blocks) {
    const BlockMode m{block.use_fp16, block.use_fp16 && channels_last};
    block.forward(x, img, ws.narrow(1, w_idx, block.num_conv + block.num_torgb), mode, fused_modconv, training,
                  noise_gen, cast ? &m : nullptr);
    w_idx += block.num_conv;
  }
  return img;
}

Generator::Generator(const GeneratorConfig& cfg, std::optional<at::Generator> init_gen) : cfg_(cfg) {
  cfg_.validate();
  at::Generator gen = resolve(init_gen);
  synthesis_ = SynthesisNetwork(store_, "synthesis", cfg_, gen);
  mapping_ = MappingNetwork(store_, "mapping", cfg_.z_dim, cfg_.c_dim, cfg_.w_dim, synthesis_.num_ws,
                            cfg_.mapping_layers, cfg_.mapping_lr_multiplier, cfg_.w_avg_beta, gen);
}

at::Tensor Generator::mapping(const at::Tensor& z, const at::Tensor& c, double psi, int cutoff,
                              bool skip_w_avg_update) {
  return mapping_.forward(z, c, psi, cutoff, training_ && !skip_w_avg_update);
}

at::Tensor Generator::synthesis(const at::Tensor& ws, NoiseMode mode, std::optional<bool> fused_modconv,
                                std::optional<at::Generator> noise_gen) {
  return synthesis_.forward(ws, mode, fused_modconv, training_, noise_gen, mixed_, channels_last_);
}

at::Tensor Generator::forward(const at::Tensor& z, const at::Tensor& c, double psi, int cutoff, NoiseMode mode) {
  return synthesis(mapping(z, c, psi, cutoff), mode);
}

// ---------------------------------------------------------------------------------------------

DiscriminatorBlock::DiscriminatorBlock(ParamStore& s, const std::string& prefix, int in, int tmp, int out, int res,
                                       int first_idx, const DiscriminatorConfig& cfg, at::Generator gen)
    : in_channels(in), resolution(res), img_channels(cfg.img_channels), first_layer_idx(first_idx),
      architecture(cfg.architecture) {
  resample_filter = s.buffer(key(prefix, "resample_filter"), ops::setup_filter(cfg.resample_filter));
  auto next_trainable = [&] { return first_layer_idx + num_layers++ >= cfg.freeze_layers; };
  if (in == 0 || architecture == "skip") {
    has_fromrgb = true;
    fromrgb = Conv2dLayer(s, key(prefix, "fromrgb"), img_channels, tmp, 1, true, ops::Act::Lrelu, 1, 1,
                          cfg.resample_filter, cfg.conv_clamp, next_trainable(), gen);
  }
  conv0 = Conv2dLayer(s, key(prefix, "conv0"), tmp, tmp, 3, true, ops::Act::Lrelu, 1, 1, cfg.resample_filter,
                      cfg.conv_clamp, next_trainable(), gen);
  conv1 = Conv2dLayer(s, key(prefix, "conv1"), tmp, out, 3, true, ops::Act::Lrelu, 1, 2, cfg.resample_filter,
                      cfg.conv_clamp, next_trainable(), gen);
  if (architecture == "resnet") {
    has_skip = true;
    skip = Conv2dLayer(s, key(prefix, "skip"), tmp, out, 1, false, ops::Act::Linear, 1, 2, cfg.resample_filter,
                       std::nullopt, next_trainable(), gen);
  }
}

void DiscriminatorBlock::forward(at::Tensor& x, at::Tensor& img, const BlockMode* precision) const {
  if (x.defined()) {
    TORCH_CHECK(x.dim() == 4 && x.size(1) == in_channels && x.size(2) == resolution,
                "discriminator block ", resolution, ": bad input ", x.sizes());
    if (precision) x = to_mode(x, *precision);
  }
  if (has_fromrgb) {
    TORCH_CHECK(img.dim() == 4 && img.size(1) == img_channels && img.size(2) == resolution && img.size(3) == resolution,
                "discriminator: image must be [N, ", img_channels, ", ", resolution, ", ", resolution, "], got ",
                img.sizes());
    if (precision) img = to_mode(img, *precision);
    at::Tensor y = fromrgb.forward(img);
    x = x.defined() ? x + y : y;
    img = architecture == "skip" ? ops::downsample2d(img, resample_filter) : at::Tensor();
  }
  if (architecture == "resnet") {
    const double sqrt_half = std::sqrt(0.5);
    at::Tensor y = skip.forward(x, sqrt_half);
    x = conv0.forward(x);
    x = conv1.forward(x, sqrt_half);
    x = y + x;
  } else {
    x = conv0.forward(x);
    x = conv1.forward(x);
  }
}

DiscriminatorEpilogue::DiscriminatorEpilogue(ParamStore& s, const std::string& prefix, int in, int cmap,
                                             const DiscriminatorConfig& cfg, at::Generator gen)
    : in_channels(in), cmap_dim(cmap), mbstd_group_size(cfg.mbstd_group_size),
      mbstd_num_channels(cfg.mbstd_num_channels), architecture(cfg.architecture) {
  if (architecture == "skip") {
    has_fromrgb = true;
    fromrgb = Conv2dLayer(s, key(prefix, "fromrgb"), cfg.img_channels, in, 1, true, ops::Act::Lrelu, 1, 1,
                          cfg.resample_filter, std::nullopt, true, gen);
  }
  conv = Conv2dLayer(s, key(prefix, "conv"), in + mbstd_num_channels, in, 3, true, ops::Act::Lrelu, 1, 1,
                     cfg.resample_filter, cfg.conv_clamp, true, gen);
  fc = FullyConnectedLayer(s, key(prefix, "fc"), in * resolution * resolution, in, true, ops::Act::Lrelu, 1.0, 0.0,
                           gen);
  out = FullyConnectedLayer(s, key(prefix, "out"), in, cmap_dim == 0 ? 1 : cmap_dim, true, ops::Act::Linear, 1.0, 0.0,
                            gen);
}

at::Tensor DiscriminatorEpilogue::forward(const at::Tensor& x_in, const at::Tensor& img, const at::Tensor& cmap,
                                         bool mixed) const {
  TORCH_CHECK(x_in.dim() == 4 && x_in.size(1) == in_channels && x_in.size(2) == resolution,
              "discriminator epilogue: bad input ", x_in.sizes());
  at::Tensor x = mixed ? to_fp32_contiguous(x_in) : at_least_fp32(x_in);
  if (has_fromrgb) x = x + fromrgb.forward(mixed ? to_fp32_contiguous(img) : at_least_fp32(img));
  if (mbstd_num_channels > 0) x = ops::minibatch_std(x, mbstd_group_size, mbstd_num_channels);
  x = conv.forward(x);
  x = fc.forward(x.flatten(1));
  x = out.forward(x);
  if (cmap_dim > 0) {
    TORCH_CHECK(cmap.defined() && cmap.dim() == 2 && cmap.size(1) == cmap_dim, "discriminator: bad cmap");
    x = (x * cmap).sum(1, true) * (1.0 / std::sqrt(static_cast<double>(cmap_dim)));
  }
  return x;
}

Discriminator::Discriminator(const DiscriminatorConfig& cfg, std::optional<at::Generator> init_gen) : cfg_(cfg) {
  cfg_.validate();
  at::Generator gen = resolve(init_gen);
  int cmap_dim = cfg_.cmap_dim >= 0 ? cfg_.cmap_dim : cfg_.channels_at(4);
  if (cfg_.c_dim == 0) cmap_dim = 0;
  int layer_idx = 0;
  for (int res = cfg_.img_resolution; res >= 8; res /= 2) {
    int in = res < cfg_.img_resolution ? cfg_.channels_at(res) : 0;
    int tmp = cfg_.channels_at(res);
    int out = cfg_.channels_at(res / 2);
    blocks_.emplace_back(store_, "b" + std::to_string(res), in, tmp, out, res, layer_idx, cfg_, gen);
    blocks_.back().use_fp16 = res >= fp16_resolution(cfg_.img_resolution, cfg_.num_fp16_res);
    layer_idx += blocks_.back().num_layers;
  }
  if (cfg_.c_dim > 0) {
    has_mapping_ = true;
    mapping_ = MappingNetwork(store_, "mapping", 0, cfg_.c_dim, cmap_dim, -1, cfg_.mapping_layers, 0.01, std::nullopt,
                              gen);
  }
  epilogue_ = DiscriminatorEpilogue(store_, "b4", cfg_.channels_at(4), cmap_dim, cfg_, gen);
}

at::Tensor Discriminator::forward(const at::Tensor& img_in, const at::Tensor& c) const {
  at::Tensor x, img = img_in;
  const bool cast = mixed_ && img_in.is_cuda();  // casts only for mixed precision on a CUDA device
  for (const auto& block : blocks_) {
    const BlockMode m{block.use_fp16, block.use_fp16 && channels_last_};
    block.forward(x, img, cast ? &m : nullptr);
  }
  at::Tensor cmap;
  if (has_mapping_) cmap = mapping_.forward(at::Tensor(), c, 1, -1, false);
  return epilogue_.forward(x, img, cmap, cast);
}

}  // namespace sf::trainer
