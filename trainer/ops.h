// Differentiable image ops of StyleGAN2-ADA, with the reference's exact semantics.
//
// Each op is composed of ATen operators, so LibTorch's autograd differentiates it to any order
// (R1 and path length need second derivatives); bias_act also has a fused element-wise form
// (first and second order), the default on CPU tensors and opt-in on CUDA tensors. The semantics follow the reference
// implementation's "ref" code paths (the ones that produced ../shared/fixtures):
//   upfirdn2d      pad (negative = crop), zero-insert upsample, FIR filter, downsample
//   conv2d_resample convolution fused with up/down-sampling, padding applied once
//   bias_act       bias, activation with gain, optional clamp (zero gradient where clamped)
//   modulated_conv2d style modulation and demodulation, fused (grouped) or not
//   minibatch_std  the discriminator's minibatch standard deviation feature
// Shapes are NCHW. All functions are pure (no global state) and thread-safe.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <vector>

namespace sf::ops {

// Padding [x_before, x_after, y_before, y_after]; negative values crop.
struct Pad {
  int x0 = 0, x1 = 0, y0 = 0, y1 = 0;
  static Pad all(int p) { return {p, p, p, p}; }
  static Pad xy(int px, int py) { return {px, px, py, py}; }
};

// Builds a float32 FIR filter from taps: 1-D taps become their outer product (a 2-D filter)
// unless `separable` (default: automatically when there are at least 8 taps). Normalised to unit
// DC gain when `normalize`, optionally flipped, and scaled by gain^(ndim/2).
at::Tensor setup_filter(const std::vector<float>& taps, bool normalize = true, bool flip_filter = false,
                        double gain = 1.0, std::optional<bool> separable = std::nullopt);
// Same, for a filter given as a tensor (1-D or 2-D).
at::Tensor setup_filter(const at::Tensor& f, bool normalize = true, bool flip_filter = false, double gain = 1.0,
                        std::optional<bool> separable = std::nullopt);

// Width and height of a filter (an undefined tensor is the 1x1 identity).
std::pair<int, int> filter_size(const at::Tensor& f);

// x: [N, C, H, W]; f: [fh, fw] or [taps] or undefined (identity).
at::Tensor upfirdn2d(const at::Tensor& x, const at::Tensor& f, int upx, int upy, int downx, int downy, Pad pad,
                     bool flip_filter = false, double gain = 1.0);
inline at::Tensor upfirdn2d(const at::Tensor& x, const at::Tensor& f, int up = 1, int down = 1, Pad pad = {},
                            bool flip_filter = false, double gain = 1.0) {
  return upfirdn2d(x, f, up, up, down, down, pad, flip_filter, gain);
}
// The same op fused (cuda/upfirdn2d_math.h): one pass over the output per direction, CPU
// (float32/float64/float16) or CUDA, gradients of any order (the gradient is upfirdn2d again); the
// filter gets no gradient. upfirdn2d() runs it where upfirdn2d_use_fused() says: on CUDA tensors
// (CUDA builds) when STYLEFORGE_FUSED_KERNELS=1 (opt-in until tests/gpu/check.sh has compared it on
// a GPU); on CPU tensors by the CPU path: per shape by default (separable filters and at most 16
// channels: the shapes where it measured faster), or always / never.
at::Tensor upfirdn2d_fused(const at::Tensor& x, const at::Tensor& f, int upx, int upy, int downx, int downy, Pad pad,
                           bool flip_filter = false, double gain = 1.0);
enum class Upfirdn2dCpuPath { Aten, Fused, PerShape };
bool upfirdn2d_use_fused(const at::Tensor& x, const at::Tensor& f);  // false for dtypes the op does not take
bool upfirdn2d_fused_is_default(bool cuda);  // CUDA: the switch; CPU: the path is Fused
void set_upfirdn2d_cpu_path(Upfirdn2dCpuPath p);  // process-wide
Upfirdn2dCpuPath upfirdn2d_cpu_path();
void set_upfirdn2d_cpu_default(bool fused);   // process-wide: Fused or Aten
void set_upfirdn2d_cuda_default(bool fused);  // process-wide; overrides STYLEFORGE_FUSED_KERNELS
at::Tensor filter2d(const at::Tensor& x, const at::Tensor& f, Pad pad = {}, bool flip_filter = false, double gain = 1.0);
at::Tensor upsample2d(const at::Tensor& x, const at::Tensor& f, int up = 2, Pad pad = {}, bool flip_filter = false,
                      double gain = 1.0);
at::Tensor downsample2d(const at::Tensor& x, const at::Tensor& f, int down = 2, Pad pad = {},
                        bool flip_filter = false, double gain = 1.0);

// x: [N, Cin, H, W]; w: [Cout, Cin/groups, kh, kw]; f: resampling filter (float32) or undefined.
// `padding` is relative to the upsampled image. flip_weight=true is correlation (like conv2d).
at::Tensor conv2d_resample(const at::Tensor& x, const at::Tensor& w, const at::Tensor& f, int up = 1, int down = 1,
                           Pad padding = {}, int groups = 1, bool flip_weight = true, bool flip_filter = false);

// The 3x3 stride-1 convolution (correlation, like conv2d) by Winograd's F(2x2, 3x3) on CPU float32 /
// float64 tensors (trainer/conv_winograd.cpp): 16 multiplications per 2x2 output tile and input
// channel instead of 36; gradients of any order. conv2d_resample's plain convolutions run it
// where conv_use_winograd() says: by the CPU path, per shape by default (float32, 32 channels in
// and out, 128 2x2 output tiles and 64 per thread: where it measured faster than oneDNN), always, or never.
at::Tensor conv3x3_winograd(const at::Tensor& x, const at::Tensor& w, int pad_y, int pad_x);
enum class ConvCpuPath { Aten, Winograd, PerShape };
bool conv_use_winograd(const at::Tensor& x, const at::Tensor& w, int stride, int pad_y, int pad_x, int groups);
void set_conv_cpu_path(ConvCpuPath p);  // process-wide
ConvCpuPath conv_cpu_path();
// "auto" (PerShape), "aten" or "winograd"; throws std::invalid_argument naming the flag otherwise.
ConvCpuPath parse_conv_cpu_path(const std::string& name, const std::string& flag = "--cpu-conv");

enum class Act { Linear, Relu, Lrelu, Tanh, Sigmoid, Elu, Selu, Softplus, Swish };
Act parse_act(const std::string& name);  // throws std::invalid_argument on an unknown name
double default_gain(Act act);            // sqrt(2) for relu, lrelu, swish; 1 otherwise
double default_alpha(Act act);           // 0.2 for lrelu; 0 otherwise

// y = clamp(act(x + b) * gain, -clamp, clamp). b (may be undefined) runs along `dim`.
// gain/alpha default to the activation's; clamp < 0 or nullopt disables clamping.
at::Tensor bias_act(const at::Tensor& x, const at::Tensor& b, int dim = 1, Act act = Act::Linear,
                    std::optional<double> alpha = std::nullopt, std::optional<double> gain = std::nullopt,
                    std::optional<double> clamp = std::nullopt);
// The same op in two implementations. bias_act() picks one per device: the fused op on CUDA
// tensors (CUDA builds) when STYLEFORGE_FUSED_KERNELS=1 (opt-in until the kernel has been
// compared on a GPU by tests/gpu/check.sh), on CPU float32/float64 tensors when
// bias_act_fused_is_default(false) (set_bias_act_cpu_default; on by default: measured faster on
// the CPU), else the ATen formulation.
//   bias_act_ref    composed of ATen operators (autograd to any order)
//   bias_act_fused  one element-wise pass (cuda/bias_act_math.h) per direction, CPU or CUDA, with
//                   first- and second-order gradients (a third order throws)
at::Tensor bias_act_ref(const at::Tensor& x, const at::Tensor& b, int dim = 1, Act act = Act::Linear,
                        std::optional<double> alpha = std::nullopt, std::optional<double> gain = std::nullopt,
                        std::optional<double> clamp = std::nullopt);
at::Tensor bias_act_fused(const at::Tensor& x, const at::Tensor& b, int dim = 1, Act act = Act::Linear,
                          std::optional<double> alpha = std::nullopt, std::optional<double> gain = std::nullopt,
                          std::optional<double> clamp = std::nullopt);
bool bias_act_fused_is_default(bool cuda);
// STYLEFORGE_FUSED_KERNELS=1: the fused CUDA kernels (bias_act, upfirdn2d, optimiser) are the
// default on CUDA tensors (read once per process; the set_*_cuda_* switches override it).
bool fused_kernels_env();
void set_bias_act_cpu_default(bool fused);  // process-wide
void set_bias_act_cuda_default(bool fused);  // process-wide; overrides STYLEFORGE_FUSED_KERNELS

// x: [N, I, H, W]; weight: [O, I, kh, kw]; styles: [N, I]; noise broadcastable to the output.
at::Tensor modulated_conv2d(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& styles,
                            const at::Tensor& noise, int up, int down, int padding, const at::Tensor& resample_filter,
                            bool demodulate, bool flip_weight, bool fused_modconv);

// Appends `num_channels` feature maps of the group standard deviation. group_size <= 0 means
// the whole minibatch. N must be divisible by min(group_size, N).
at::Tensor minibatch_std(const at::Tensor& x, int group_size, int num_channels);

// x * rsqrt(mean(x^2, dim) + eps)
at::Tensor normalize_2nd_moment(const at::Tensor& x, int64_t dim = 1, double eps = 1e-8);

}  // namespace sf::ops
