// CPU loops of the fused element-wise ops, torch-free. Their per-element arithmetic is the header
// the CUDA kernels use (trainer/cuda/bias_act_math.h, trainer/cuda/optim_math.h), so what the CPU
// tests check is what a GPU runs. This file's translation unit is compiled at -O3, and each loop
// also as an AVX2 + FMA variant used on CPUs that have them, so the loops are vectorised; the
// caller splits the work across threads (at::parallel_for) by ranges.
#pragma once

#include <cstdint>

#include "trainer/cuda/optim_math.h"

namespace sf::ops::cpu {

// bias_act over rows [r0, r1): element i of row r is at r * inner + i (i < inner, the last row
// may be shorter: n elements in all); its bias is b[r % channels] (b may be null: no bias).
//   mode 0: out = y(x + b);  1: out = dy * g(x + b);  2: out = ddx * dy * g2(x + b)
// `act` is a bias_act_math::ActCode; clamp < 0 disables clamping.
struct BiasActRows {
  int mode = 0, act = 0;
  int64_t n = 0, inner = 1, channels = 1;
  double alpha = 0, gain = 1, clamp = -1;
};
void bias_act_rows(const BiasActRows& a, const float* x, const float* b, const float* dy, const float* ddx, float* out,
                   int64_t r0, int64_t r1);
void bias_act_rows(const BiasActRows& a, const double* x, const double* b, const double* dy, const double* ddx,
                   double* out, int64_t r0, int64_t r1);

// The optimiser's element loops over [b, e) (trainer/optim.cpp), one IEEE operation per step of
// optim_math.h, so every variant gives the same bits.
void adam_range(float* p, const float* g, float* m, float* v, int64_t b, int64_t e,
                const kernels::optim_math::AdamCoef<float>& c);
void adam_range(double* p, const double* g, double* m, double* v, int64_t b, int64_t e,
                const kernels::optim_math::AdamCoef<double>& c);
void ema_range(float* dst, const float* src, int64_t b, int64_t e, float beta);
void ema_range(double* dst, const double* src, int64_t b, int64_t e, double beta);
void nan_to_num_range(float* x, int64_t b, int64_t e);
void nan_to_num_range(double* x, int64_t b, int64_t e);

}  // namespace sf::ops::cpu
