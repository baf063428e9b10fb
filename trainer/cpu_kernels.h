// CPU loops of the fused element-wise ops, torch-free. Their per-element arithmetic is the header
// the CUDA kernels use (trainer/cuda/bias_act_math.h), so what the CPU tests check is what a GPU
// runs. This file's translation unit is compiled at -O3 with an AVX2 clone chosen at run time
// (GCC target_clones), so the row loops are vectorised; the caller splits the work across
// threads (at::parallel_for) by row ranges.
#pragma once

#include <cstdint>

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

}  // namespace sf::ops::cpu
