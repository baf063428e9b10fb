// Per-element arithmetic of the fused bias_act op, shared by the CUDA kernel and the CPU loop so
// that CPU tests check the arithmetic the GPU runs. Torch-free.
//
// With v = x + b (b broadcast along one dimension):
//   y   = clamp(f(v) * gain, -clamp, clamp)                 (no clamping when clamp < 0)
//   dx  = dy * g(v),        g(v)  = gain * f'(v) * m(v)      first order
//   ddy = ddx * g(v),       ddx' = ddx * dy * g2(v),  g2(v) = gain * f''(v) * m(v)   second order
// where m(v) = 1 when clamp < 0 or -clamp <= f(v) * gain <= clamp, else 0 (as ATen's clamp
// gradient). Activations and their defaults (alpha, gain) are the reference's table: alpha is used
// by lrelu only; elu, selu and softplus use LibTorch's constants (elu alpha 1; selu's scale/alpha;
// softplus beta 1, threshold 20). T is float or double; float16 is computed in float.
#pragma once

#include <cmath>

#include "trainer/cuda/host_device.h"

namespace sf::ops::bias_act_math {

// Values of sf::ops::Act, in the same order.
enum ActCode : int { kLinear = 0, kRelu, kLrelu, kTanh, kSigmoid, kElu, kSelu, kSoftplus, kSwish };

template <typename T> SF_HD T selu_scale() { return T(1.0507009873554804934193349852946); }
template <typename T> SF_HD T selu_alpha() { return T(1.6732632423543772848170429916717); }
template <typename T> SF_HD T softplus_threshold() { return T(20); }

template <typename T> SF_HD T sigmoid(T v) { return T(1) / (T(1) + std::exp(-v)); }

// f(v)
template <typename T> SF_HD T act(int a, T v, T alpha) {
  switch (a) {
    case kRelu: return v > T(0) ? v : T(0);
    case kLrelu: return v > T(0) ? v : v * alpha;
    case kTanh: return std::tanh(v);
    case kSigmoid: return sigmoid(v);
    case kElu: return v > T(0) ? v : std::exp(v) - T(1);
    case kSelu: return v > T(0) ? selu_scale<T>() * v : selu_scale<T>() * selu_alpha<T>() * (std::exp(v) - T(1));
    case kSoftplus: return v > softplus_threshold<T>() ? v : std::log1p(std::exp(v));
    case kSwish: return v * sigmoid(v);
    default: return v;
  }
}

// f'(v)
template <typename T> SF_HD T act_d1(int a, T v, T alpha) {
  switch (a) {
    case kRelu: return v > T(0) ? T(1) : T(0);
    case kLrelu: return v > T(0) ? T(1) : alpha;
    case kTanh: { T t = std::tanh(v); return T(1) - t * t; }
    case kSigmoid: { T s = sigmoid(v); return s * (T(1) - s); }
    case kElu: return v > T(0) ? T(1) : std::exp(v);
    case kSelu: return v > T(0) ? selu_scale<T>() : selu_scale<T>() * selu_alpha<T>() * std::exp(v);
    case kSoftplus: return v > softplus_threshold<T>() ? T(1) : sigmoid(v);
    case kSwish: { T s = sigmoid(v); return s * (T(1) + v * (T(1) - s)); }
    default: return T(1);
  }
}

// f''(v)
template <typename T> SF_HD T act_d2(int a, T v, T alpha) {
  (void)alpha;
  switch (a) {
    case kTanh: { T t = std::tanh(v); return T(-2) * t * (T(1) - t * t); }
    case kSigmoid: { T s = sigmoid(v); return s * (T(1) - s) * (T(1) - T(2) * s); }
    case kElu: return v > T(0) ? T(0) : std::exp(v);
    case kSelu: return v > T(0) ? T(0) : selu_scale<T>() * selu_alpha<T>() * std::exp(v);
    case kSoftplus: { if (v > softplus_threshold<T>()) return T(0); T s = sigmoid(v); return s * (T(1) - s); }
    case kSwish: { T s = sigmoid(v); return s * (T(1) - s) * (T(2) + v * (T(1) - T(2) * s)); }
    default: return T(0);  // linear, relu, lrelu: piecewise linear
  }
}

template <typename T> struct Params {
  int act;
  T alpha, gain, clamp;  // clamp < 0: off
};

// m(v): 1 where the clamp passes the gradient.
template <typename T> SF_HD T clamp_mask(const Params<T>& p, T v) {
  if (p.clamp < T(0)) return T(1);
  T y = act(p.act, v, p.alpha) * p.gain;
  return (y >= -p.clamp && y <= p.clamp) ? T(1) : T(0);
}

template <typename T> SF_HD T forward(const Params<T>& p, T v) {
  T y = act(p.act, v, p.alpha) * p.gain;
  if (p.clamp >= T(0)) y = y < -p.clamp ? -p.clamp : (y > p.clamp ? p.clamp : y);
  return y;
}

// dy * g(v)
template <typename T> SF_HD T grad1(const Params<T>& p, T v, T dy) {
  return dy * p.gain * act_d1(p.act, v, p.alpha) * clamp_mask(p, v);
}

// ddx * dy * g2(v)
template <typename T> SF_HD T grad2(const Params<T>& p, T v, T dy, T ddx) {
  return ddx * dy * p.gain * act_d2(p.act, v, p.alpha) * clamp_mask(p, v);
}

}  // namespace sf::ops::bias_act_math
