// CPU loops, torch-free: the fused element-wise ops, whose per-element arithmetic is the header the
// CUDA kernels use (trainer/cuda/bias_act_math.h, trainer/cuda/optim_math.h), so what the CPU tests
// check is what a GPU runs; the transforms of the Winograd convolution and the separable FIR filter
// (CPU only). This file's translation unit is compiled at -O3, and each loop
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

// Winograd F(2x2, 3x3): the transforms around the batched matrix products of the 3x3 stride-1
// convolution (trainer/conv_winograd.cpp). The output is cut into 2x2 tiles, th x tw per image;
// tile t = (n * th + ty) * tw + tx of N * th * tw; component k = 4 * i + j of the 4x4 transform
// domain. With d an input tile, w a filter and g an output (gradient) tile:
//   output        y  = A^T [ (G w G^T) . (B^T d B) ] A      (summed over input channels)
//   weight grad   dw = G^T [ (A g A^T) . (B^T d B) ] G      (summed over tiles)
// B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
// A^T = [1 1 1 0; 0 1 -1 -1]. Each call handles the tiles [t0, t1) of every channel; the
// transform domain holds just those: [16][c][t1 - t0].
struct WinogradShape {
  int64_t n = 0, c = 0;          // images; channels of the tensor being transformed
  int64_t h = 0, w = 0;          // input size (winograd_input) or output size (the other two)
  int64_t pad_y = 0, pad_x = 0;  // zero padding of the input (winograd_input)
  int64_t th = 0, tw = 0;        // tiles per image: ceil(out_h / 2) x ceil(out_w / 2)
};
// x [N][c][h][w] -> v: B^T d B of each 4x4 input tile (zeros beyond the edges).
void winograd_input(const WinogradShape& s, const float* x, float* v, int64_t t0, int64_t t1);
void winograd_input(const WinogradShape& s, const double* x, double* v, int64_t t0, int64_t t1);
// m -> y [N][c][h][w]: A^T m A of each tile, cropped to h x w.
void winograd_output(const WinogradShape& s, const float* m, float* y, int64_t t0, int64_t t1);
void winograd_output(const WinogradShape& s, const double* m, double* y, int64_t t0, int64_t t1);
// gy [N][c][h][w] -> g: A g A^T of each 2x2 output tile (zeros beyond h x w).
void winograd_grad_output(const WinogradShape& s, const float* gy, float* g, int64_t t0, int64_t t1);
void winograd_grad_output(const WinogradShape& s, const double* gy, double* g, int64_t t0, int64_t t1);
// w [o][i][3][3] -> u [16][o][i]: G w G^T, for output channels [o0, o1).
void winograd_weight(int64_t o, int64_t i, const float* w, float* u, int64_t o0, int64_t o1);
void winograd_weight(int64_t o, int64_t i, const double* w, double* u, int64_t o0, int64_t o1);
// m [16][o][i] -> dw [o][i][3][3]: G^T m G, for output channels [o0, o1).
void winograd_weight_grad(int64_t o, int64_t i, const float* m, float* dw, int64_t o0, int64_t o1);
void winograd_weight_grad(int64_t o, int64_t i, const double* m, double* dw, int64_t o0, int64_t o1);

// A separable FIR filter: upfirdn2d with the same factors on both axes, up 1 or 2 and down 1 or 2
// (not both 2), and one 1-D filter of `taps` taps on both axes (trainer/upfirdn2d_fused.cpp). For
// planes [p0, p1) of x [planes][in_h][in_w] -> out [planes][out_h][out_w], with k the taps in the
// order they are applied (K[t] of trainer/cuda/upfirdn2d_math.h), d = down and U the input with
// up - 1 zeros inserted after each pixel:
//   col(oy, u) = sum over t ascending of k[t] * U[d oy + t - pad_y][u]   (rows of zeros skipped)
//   out(oy, ox) = sum over s ascending of k[s] * col(oy, d ox + s - pad_x) (columns of zeros add 0)
// the sums of upfirdn2d_math::pixel_separable, in its order. Negative padding crops.
struct SepFilterShape {
  int64_t in_h = 0, in_w = 0, out_h = 0, out_w = 0;
  int64_t pad_y = 0, pad_x = 0;
  int taps = 1;
  int up = 1, down = 1;  // each 1 or 2, not both 2
};
void sep_filter_planes(const SepFilterShape& s, const float* k, const float* x, float* out, int64_t p0, int64_t p1);
void sep_filter_planes(const SepFilterShape& s, const double* k, const double* x, double* out, int64_t p0,
                       int64_t p1);

}  // namespace sf::ops::cpu
