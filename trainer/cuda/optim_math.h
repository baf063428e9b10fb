// Per-element arithmetic of the fused optimiser updates (Adam, the G_ema update, the gradient
// clean-up), shared by the CPU loops (trainer/optim.cpp) and the multi-tensor CUDA kernels
// (optim_kernels.cu), so CPU tests check the arithmetic the GPU runs. Torch-free. T is float or
// double; every operation below is one IEEE operation (fused multiply-adds written out), so host
// and device give the same bits.
//
// The operations and their order are ATen's CPU kernels (AVX2/AVX-512 builds) for the ops of
// torch.optim.Adam's single-tensor path, with the scalars rounded to T as ATen rounds them:
//   lerp(a, b, w)  |w| < 0.5 ? fma(w, b - a, a) : fma(w - 1, b - a, b)        (at::lerp)
//   adam           m = lerp(m, g, 1 - beta1)                                   exp_avg.lerp_
//                  v = fma((1 - beta2) * g, g, v * beta2)                      mul_, addcmul_
//                  p = p + (-step_size * m) / (sqrt(v) / sqrt(bc2) + eps)      addcdiv_
//   ema            dst = lerp(src, dst, beta)                                  src.lerp(dst, beta)
//   nan_to_num     NaN -> 0, +inf -> 1e5, -inf -> -1e5
// The one step that can differ from ATen's CPU result is sqrt: ours is correctly rounded (as
// CUDA's sqrt), ATen's CPU sqrt (MKL) is within 1 ulp.
#pragma once

#include <math.h>

#include "trainer/cuda/host_device.h"

namespace sf::kernels::optim_math {

SF_HD float fused_mul_add(float a, float b, float c) { return fmaf(a, b, c); }
SF_HD double fused_mul_add(double a, double b, double c) { return fma(a, b, c); }
SF_HD float square_root(float v) { return sqrtf(v); }
SF_HD double square_root(double v) { return sqrt(v); }

template <typename T> SF_HD T lerp(T a, T b, T w) {
  const bool small = (w < T(0.5)) & (w > T(-0.5));  // no branch: loops over elements vectorise
  return fused_mul_add(small ? w : w - T(1), b - a, small ? a : b);
}

// Adam's scalars for one tensor, already rounded to T (the host computes them in double).
template <typename T> struct AdamCoef {
  T lerp_weight;    // 1 - beta1
  T beta2;
  T one_minus_beta2;
  T neg_step_size;  // -lr / (1 - beta1^step)
  T bc2_sqrt;       // (1 - beta2^step)^0.5
  T eps;
};

// One element of one Adam step (non-amsgrad, no weight decay); updates p, m, v in place.
template <typename T> SF_HD void adam(T& p, T g, T& m, T& v, const AdamCoef<T>& c) {
  m = lerp(m, g, c.lerp_weight);
  v = fused_mul_add(c.one_minus_beta2 * g, g, v * c.beta2);
  const T denom = square_root(v) / c.bc2_sqrt + c.eps;
  p = p + (c.neg_step_size * m) / denom;
}

// dst <- lerp(src, dst, beta): the reference's p_ema.copy_(p.lerp(p_ema, beta)).
template <typename T> SF_HD T ema(T dst, T src, T beta) { return lerp(src, dst, beta); }

// torch.nan_to_num(g, nan=0, posinf=1e5, neginf=-1e5), for float (1e5 rounded to float).
template <typename T> SF_HD T nan_to_num(T v) {
  T r = v != v ? T(0) : v;  // selects, no branches: loops vectorise
  r = r == T(INFINITY) ? T(1e5) : r;
  return r == -T(INFINITY) ? T(-1e5) : r;
}

}  // namespace sf::kernels::optim_math
