#include "trainer/ops.h"

#include <ATen/ATen.h>

#include <cmath>
#include <stdexcept>

namespace sf::ops {
namespace {

at::Tensor grouped_conv(const at::Tensor& x, const at::Tensor& w, int64_t groups) {
  const int64_t one[2] = {1, 1}, zero[2] = {0, 0};
  return at::conv2d(x, w, c10::nullopt, one, zero, one, groups);
}

// Valid correlation of `x` with the 1-D taps `k` along `dim`, keeping every `step`-th output:
// y[j] = sum_t k[t] * x[j * step + t]. Built from slices, so any-order gradients come for free.
at::Tensor fir_along(const at::Tensor& x, const at::Tensor& k, int64_t dim, int64_t step) {
  const int64_t taps = k.size(0), len = x.size(dim) - taps + 1;
  TORCH_CHECK(len > 0, "upfirdn2d: the filter is longer than the padded input");
  const int64_t outs = (len + step - 1) / step;
  at::Tensor kd = k.detach().to(at::kDouble).cpu().contiguous();
  const double* kv = kd.data_ptr<double>();
  at::Tensor y;
  for (int64_t t = 0; t < taps; ++t) {
    at::Tensor term = x.slice(dim, t, t + step * (outs - 1) + 1, step) * kv[t];
    y = t == 0 ? term : y + term;
  }
  return y;
}

}  // namespace

at::Tensor setup_filter(const at::Tensor& f_in, bool normalize, bool flip_filter, double gain,
                        std::optional<bool> separable) {
  at::Tensor f = f_in.to(at::kFloat).detach().clone();
  if (f.dim() == 0) f = f.reshape({1});
  if (f.dim() > 2 || f.numel() == 0) throw std::invalid_argument("setup_filter: filter must be 1-D or 2-D and non-empty");
  bool sep = separable.value_or(f.dim() == 1 && f.numel() >= 8);
  if (f.dim() == 1 && !sep) f = at::outer(f, f);
  if (f.dim() != (sep ? 1 : 2)) throw std::invalid_argument("setup_filter: a 2-D filter cannot be separable");
  if (normalize) f = f / f.sum();
  if (flip_filter) f = f.flip(f.dim() == 1 ? std::vector<int64_t>{0} : std::vector<int64_t>{0, 1});
  return f * std::pow(gain, f.dim() / 2.0);
}

at::Tensor setup_filter(const std::vector<float>& taps, bool normalize, bool flip_filter, double gain,
                        std::optional<bool> separable) {
  at::Tensor f = at::tensor(taps, at::kFloat);
  if (taps.size() == 1) f = f.reshape({});
  return setup_filter(f, normalize, flip_filter, gain, separable);
}

std::pair<int, int> filter_size(const at::Tensor& f) {
  if (!f.defined()) return {1, 1};
  if (f.dim() != 1 && f.dim() != 2) throw std::invalid_argument("filter must be 1-D or 2-D");
  return {static_cast<int>(f.size(-1)), static_cast<int>(f.size(0))};
}

at::Tensor upfirdn2d(const at::Tensor& x_in, const at::Tensor& f_in, int upx, int upy, int downx, int downy, Pad p,
                     bool flip_filter, double gain) {
  TORCH_CHECK(x_in.dim() == 4, "upfirdn2d: x must be [N, C, H, W], got ", x_in.sizes());
  TORCH_CHECK(upx >= 1 && upy >= 1 && downx >= 1 && downy >= 1, "upfirdn2d: factors must be >= 1");
  at::Tensor f = f_in.defined() ? f_in : at::ones({1, 1}, x_in.options().dtype(at::kFloat));
  TORCH_CHECK(f.dim() == 1 || f.dim() == 2, "upfirdn2d: filter must be 1-D or 2-D");
  const int64_t n = x_in.size(0), c = x_in.size(1), h = x_in.size(2), w = x_in.size(3);

  // Upsample by inserting zeros after each pixel.
  at::Tensor x = x_in.reshape({n, c, h, 1, w, 1});
  x = at::constant_pad_nd(x, {0, upx - 1, 0, 0, 0, upy - 1}, 0);
  x = x.reshape({n, c, h * upy, w * upx});

  // Pad or crop.
  x = at::constant_pad_nd(x, {std::max(p.x0, 0), std::max(p.x1, 0), std::max(p.y0, 0), std::max(p.y1, 0)}, 0);
  x = x.slice(2, std::max(-p.y0, 0), x.size(2) - std::max(-p.y1, 0))
          .slice(3, std::max(-p.x0, 0), x.size(3) - std::max(-p.x1, 0));

  // FIR filter (conv2d is correlation, so flip for convolution).
  f = f * std::pow(gain, f.dim() / 2.0);
  f = f.to(x.scalar_type());
  if (!flip_filter) f = f.flip(f.dim() == 1 ? std::vector<int64_t>{0} : std::vector<int64_t>{0, 1});
  if (f.dim() == 2) {
    at::Tensor k = f.reshape({1, 1, f.size(0), f.size(1)}).repeat({c, 1, 1, 1}).to(x.device());
    x = grouped_conv(x, k, c);
  } else {
    // Separable filter: shifted multiply-adds along H, then W, computing only the outputs the
    // downsampling keeps. (LibTorch's CPU convolution with a 1-D kernel on a single channel
    // falls back to im2col and is ~30x slower for the 12-tap filters of the augmentation.)
    return fir_along(fir_along(x, f, 2, downy), f, 3, downx);
  }

  // Downsample by keeping every down-th pixel.
  if (downy > 1) x = x.slice(2, 0, x.size(2), downy);
  if (downx > 1) x = x.slice(3, 0, x.size(3), downx);
  return x;
}

at::Tensor filter2d(const at::Tensor& x, const at::Tensor& f, Pad pad, bool flip_filter, double gain) {
  auto [fw, fh] = filter_size(f);
  Pad p{pad.x0 + fw / 2, pad.x1 + (fw - 1) / 2, pad.y0 + fh / 2, pad.y1 + (fh - 1) / 2};
  return upfirdn2d(x, f, 1, 1, 1, 1, p, flip_filter, gain);
}

at::Tensor upsample2d(const at::Tensor& x, const at::Tensor& f, int up, Pad pad, bool flip_filter, double gain) {
  auto [fw, fh] = filter_size(f);
  Pad p{pad.x0 + (fw + up - 1) / 2, pad.x1 + (fw - up) / 2, pad.y0 + (fh + up - 1) / 2, pad.y1 + (fh - up) / 2};
  return upfirdn2d(x, f, up, up, 1, 1, p, flip_filter, gain * up * up);
}

at::Tensor downsample2d(const at::Tensor& x, const at::Tensor& f, int down, Pad pad, bool flip_filter, double gain) {
  auto [fw, fh] = filter_size(f);
  Pad p{pad.x0 + (fw - down + 1) / 2, pad.x1 + (fw - down) / 2, pad.y0 + (fh - down + 1) / 2,
        pad.y1 + (fh - down) / 2};
  return upfirdn2d(x, f, 1, 1, down, down, p, flip_filter, gain);
}

namespace {

// conv2d / conv_transpose2d with the reference's weight-flip convention.
at::Tensor conv2d_wrapper(const at::Tensor& x, at::Tensor w, int stride, int pady, int padx, int groups,
                          bool transpose, bool flip_weight) {
  if (!flip_weight) w = w.flip({2, 3});
  const int64_t st[2] = {stride, stride}, pad[2] = {pady, padx}, one[2] = {1, 1}, zero[2] = {0, 0};
  if (transpose) return at::conv_transpose2d(x, w, c10::nullopt, st, pad, zero, groups, one);
  return at::conv2d(x, w, c10::nullopt, st, pad, one, groups);
}

}  // namespace

at::Tensor conv2d_resample(const at::Tensor& x_in, const at::Tensor& w_in, const at::Tensor& f, int up, int down,
                           Pad padding, int groups, bool flip_weight, bool flip_filter) {
  TORCH_CHECK(x_in.dim() == 4 && w_in.dim() == 4, "conv2d_resample: x and w must be 4-D");
  TORCH_CHECK(up >= 1 && down >= 1 && groups >= 1, "conv2d_resample: bad up/down/groups");
  at::Tensor x = x_in, w = w_in;
  const int out_channels = static_cast<int>(w.size(0)), in_per_group = static_cast<int>(w.size(1));
  const int kh = static_cast<int>(w.size(2)), kw = static_cast<int>(w.size(3));
  auto [fw, fh] = filter_size(f);
  int px0 = padding.x0, px1 = padding.x1, py0 = padding.y0, py1 = padding.y1;

  // Account for the padding the resampling filter needs.
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

  // 1x1 kernel with downsampling: filter first, then convolve at the lower resolution.
  if (kw == 1 && kh == 1 && down > 1 && up == 1) {
    x = upfirdn2d(x, f, 1, 1, down, down, {px0, px1, py0, py1}, flip_filter);
    return conv2d_wrapper(x, w, 1, 0, 0, groups, false, flip_weight);
  }
  // 1x1 kernel with upsampling: convolve first, then upsample.
  if (kw == 1 && kh == 1 && up > 1 && down == 1) {
    x = conv2d_wrapper(x, w, 1, 0, 0, groups, false, flip_weight);
    return upfirdn2d(x, f, up, up, 1, 1, {px0, px1, py0, py1}, flip_filter, up * up);
  }
  // Downsampling only: pad and filter, then a strided convolution.
  if (down > 1 && up == 1) {
    x = upfirdn2d(x, f, 1, 1, 1, 1, {px0, px1, py0, py1}, flip_filter);
    return conv2d_wrapper(x, w, down, 0, 0, groups, false, flip_weight);
  }
  // Upsampling (possibly followed by downsampling): transposed convolution, then the filter.
  if (up > 1) {
    if (groups == 1) {
      w = w.transpose(0, 1);
    } else {
      w = w.reshape({groups, out_channels / groups, in_per_group, kh, kw});
      w = w.transpose(1, 2);
      w = w.reshape({groups * in_per_group, out_channels / groups, kh, kw});
    }
    px0 -= kw - 1;
    px1 -= kw - up;
    py0 -= kh - 1;
    py1 -= kh - up;
    int pxt = std::max(std::min(-px0, -px1), 0);
    int pyt = std::max(std::min(-py0, -py1), 0);
    x = conv2d_wrapper(x, w, up, pyt, pxt, groups, true, !flip_weight);
    x = upfirdn2d(x, f, 1, 1, 1, 1, {px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt}, flip_filter, up * up);
    if (down > 1) x = upfirdn2d(x, f, 1, 1, down, down, {}, flip_filter);
    return x;
  }
  // No resampling: a plain convolution when the padding is symmetric and non-negative.
  if (px0 == px1 && py0 == py1 && px0 >= 0 && py0 >= 0)
    return conv2d_wrapper(x, w, 1, py0, px0, groups, false, flip_weight);

  // Fallback: general padding.
  x = upfirdn2d(x, up > 1 ? f : at::Tensor(), up, up, 1, 1, {px0, px1, py0, py1}, flip_filter, up * up);
  x = conv2d_wrapper(x, w, 1, 0, 0, groups, false, flip_weight);
  if (down > 1) x = upfirdn2d(x, f, 1, 1, down, down, {}, flip_filter);
  return x;
}

Act parse_act(const std::string& name) {
  if (name == "linear") return Act::Linear;
  if (name == "relu") return Act::Relu;
  if (name == "lrelu") return Act::Lrelu;
  if (name == "tanh") return Act::Tanh;
  if (name == "sigmoid") return Act::Sigmoid;
  if (name == "elu") return Act::Elu;
  if (name == "selu") return Act::Selu;
  if (name == "softplus") return Act::Softplus;
  if (name == "swish") return Act::Swish;
  throw std::invalid_argument("unknown activation '" + name + "'");
}

double default_gain(Act act) {
  return (act == Act::Relu || act == Act::Lrelu || act == Act::Swish) ? std::sqrt(2.0) : 1.0;
}

double default_alpha(Act act) { return act == Act::Lrelu ? 0.2 : 0.0; }

at::Tensor bias_act(const at::Tensor& x_in, const at::Tensor& b, int dim, Act act, std::optional<double> alpha_opt,
                    std::optional<double> gain_opt, std::optional<double> clamp_opt) {
  const double alpha = alpha_opt.value_or(default_alpha(act));
  const double gain = gain_opt.value_or(default_gain(act));
  const double clamp = clamp_opt.value_or(-1.0);
  at::Tensor x = x_in;
  if (b.defined()) {
    TORCH_CHECK(b.dim() == 1 && dim >= 0 && dim < x.dim() && b.size(0) == x.size(dim),
                "bias_act: bias of shape ", b.sizes(), " does not match dim ", dim, " of ", x.sizes());
    std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
    shape[static_cast<size_t>(dim)] = -1;
    x = x + b.reshape(shape);
  }
  switch (act) {
    case Act::Linear: break;
    case Act::Relu: x = at::relu(x); break;
    case Act::Lrelu: x = at::leaky_relu(x, alpha); break;
    case Act::Tanh: x = at::tanh(x); break;
    case Act::Sigmoid: x = at::sigmoid(x); break;
    case Act::Elu: x = at::elu(x); break;
    case Act::Selu: x = at::selu(x); break;
    case Act::Softplus: x = at::softplus(x); break;
    case Act::Swish: x = at::sigmoid(x) * x; break;
  }
  if (gain != 1.0) x = x * gain;
  if (clamp >= 0) x = x.clamp(-clamp, clamp);
  return x;
}

at::Tensor modulated_conv2d(const at::Tensor& x_in, const at::Tensor& weight, const at::Tensor& styles,
                            const at::Tensor& noise, int up, int down, int padding, const at::Tensor& resample_filter,
                            bool demodulate, bool flip_weight, bool fused_modconv) {
  const int64_t batch = x_in.size(0);
  const int64_t in_channels = weight.size(1), kh = weight.size(2), kw = weight.size(3);
  TORCH_CHECK(x_in.dim() == 4 && x_in.size(1) == in_channels, "modulated_conv2d: x ", x_in.sizes(),
              " does not match weight ", weight.sizes());
  TORCH_CHECK(styles.dim() == 2 && styles.size(0) == batch && styles.size(1) == in_channels,
              "modulated_conv2d: styles ", styles.sizes(), " should be [", batch, ", ", in_channels, "]");
  at::Tensor x = x_in;
  at::Tensor w, dcoefs;
  if (demodulate || fused_modconv) {
    w = weight.unsqueeze(0) * styles.reshape({batch, 1, -1, 1, 1});  // [NOIkk]
  }
  if (demodulate) dcoefs = (w.square().sum({2, 3, 4}) + 1e-8).rsqrt();  // [NO]
  if (demodulate && fused_modconv) w = w * dcoefs.reshape({batch, -1, 1, 1, 1});

  Pad pad = Pad::all(padding);
  if (!fused_modconv) {
    x = x * styles.to(x.scalar_type()).reshape({batch, -1, 1, 1});
    x = conv2d_resample(x, weight.to(x.scalar_type()), resample_filter, up, down, pad, 1, flip_weight);
    if (demodulate && noise.defined())
      x = at::addcmul(noise.to(x.scalar_type()), x, dcoefs.to(x.scalar_type()).reshape({batch, -1, 1, 1}));
    else if (demodulate)
      x = x * dcoefs.to(x.scalar_type()).reshape({batch, -1, 1, 1});
    else if (noise.defined())
      x = x + noise.to(x.scalar_type());
    return x;
  }
  // One grouped convolution: each sample is its own group.
  x = x.reshape({1, -1, x.size(2), x.size(3)});
  w = w.reshape({-1, in_channels, kh, kw});
  x = conv2d_resample(x, w.to(x.scalar_type()), resample_filter, up, down, pad, static_cast<int>(batch), flip_weight);
  x = x.reshape({batch, -1, x.size(2), x.size(3)});
  if (noise.defined()) x = x + noise;
  return x;
}

at::Tensor minibatch_std(const at::Tensor& x, int group_size, int num_channels) {
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t g = group_size > 0 ? std::min<int64_t>(group_size, n) : n;
  const int64_t f = num_channels;
  TORCH_CHECK(n % g == 0, "minibatch_std: batch ", n, " is not divisible by the group size ", g);
  TORCH_CHECK(f > 0 && c % f == 0, "minibatch_std: ", c, " channels are not divisible by ", f);
  at::Tensor y = x.reshape({g, -1, f, c / f, h, w});  // [GnFcHW]
  y = y - y.mean(0);                                  // subtract the group mean
  y = y.square().mean(0);                             // [nFcHW] variance over the group
  y = (y + 1e-8).sqrt();                              // standard deviation
  y = y.mean({2, 3, 4});                              // [nF] average over channels and pixels
  y = y.reshape({-1, f, 1, 1});                       // [nF11]
  y = y.repeat({g, 1, h, w});                         // [NFHW]
  return at::cat({x, y}, 1);
}

at::Tensor normalize_2nd_moment(const at::Tensor& x, int64_t dim, double eps) {
  return x * (x.square().mean(dim, true) + eps).rsqrt();
}

}  // namespace sf::ops
