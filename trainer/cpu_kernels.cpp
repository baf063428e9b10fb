#include "trainer/cpu_kernels.h"

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "trainer/cuda/bias_act_math.h"

namespace sf::ops::cpu {
namespace {

namespace bam = bias_act_math;
namespace om = kernels::optim_math;

// Everything below is inlined into the exported functions, so that each of their clones (x86-64-v3,
// i.e. AVX2 + FMA, or the baseline) compiles the whole loop for its instruction set.
#define SF_INLINE SF_HD

// The activation and the mode are template arguments and the bias is constant along a row, so
// the inner loops have no branches on either and no index arithmetic.
template <int A, int Mode, typename T>
SF_INLINE void rows(const BiasActRows& a, const T* x, const T* b, const T* dy, const T* ddx, T* out, int64_t r0,
                 int64_t r1) {
  const bam::Params<T> p{A, static_cast<T>(a.alpha), static_cast<T>(a.gain), static_cast<T>(a.clamp)};
  for (int64_t r = r0; r < r1; ++r) {
    const T bias = b ? b[r % a.channels] : T(0);
    const int64_t o = r * a.inner, len = std::min(a.inner, a.n - o);
    const T* xr = x + o;
    T* yr = out + o;
    if (Mode == 0) {
      for (int64_t i = 0; i < len; ++i) yr[i] = bam::forward(p, T(xr[i] + bias));
    } else if (Mode == 1) {
      const T* dyr = dy + o;
      for (int64_t i = 0; i < len; ++i) yr[i] = bam::grad1(p, T(xr[i] + bias), dyr[i]);
    } else {
      const T* dyr = dy + o;
      const T* ddr = ddx + o;
      for (int64_t i = 0; i < len; ++i) yr[i] = bam::grad2(p, T(xr[i] + bias), dyr[i], ddr[i]);
    }
  }
}

template <int A, typename T>
SF_INLINE void rows_mode(const BiasActRows& a, const T* x, const T* b, const T* dy, const T* ddx, T* out, int64_t r0,
                      int64_t r1) {
  if (a.mode == 0) rows<A, 0>(a, x, b, dy, ddx, out, r0, r1);
  else if (a.mode == 1) rows<A, 1>(a, x, b, dy, ddx, out, r0, r1);
  else rows<A, 2>(a, x, b, dy, ddx, out, r0, r1);
}

template <typename T>
SF_INLINE void dispatch(const BiasActRows& a, const T* x, const T* b, const T* dy, const T* ddx, T* out, int64_t r0,
                     int64_t r1) {
  switch (a.act) {
    case bam::kLinear: return rows_mode<bam::kLinear>(a, x, b, dy, ddx, out, r0, r1);
    case bam::kRelu: return rows_mode<bam::kRelu>(a, x, b, dy, ddx, out, r0, r1);
    case bam::kLrelu: return rows_mode<bam::kLrelu>(a, x, b, dy, ddx, out, r0, r1);
    case bam::kTanh: return rows_mode<bam::kTanh>(a, x, b, dy, ddx, out, r0, r1);
    case bam::kSigmoid: return rows_mode<bam::kSigmoid>(a, x, b, dy, ddx, out, r0, r1);
    case bam::kElu: return rows_mode<bam::kElu>(a, x, b, dy, ddx, out, r0, r1);
    case bam::kSelu: return rows_mode<bam::kSelu>(a, x, b, dy, ddx, out, r0, r1);
    case bam::kSoftplus: return rows_mode<bam::kSoftplus>(a, x, b, dy, ddx, out, r0, r1);
    case bam::kSwish: return rows_mode<bam::kSwish>(a, x, b, dy, ddx, out, r0, r1);
    default: throw std::invalid_argument("bias_act: unknown activation code");
  }
}

template <typename T>
SF_INLINE void adam_loop(T* p, const T* g, T* m, T* v, int64_t b, int64_t e, const om::AdamCoef<T>& coef) {
  const om::AdamCoef<T> c = coef;
  for (int64_t i = b; i < e; ++i) om::adam(p[i], g[i], m[i], v[i], c);
}
template <typename T> SF_INLINE void ema_loop(T* dst, const T* src, int64_t b, int64_t e, T beta) {
  for (int64_t i = b; i < e; ++i) dst[i] = om::ema(dst[i], src[i], beta);
}
template <typename T> SF_INLINE void nan_to_num_loop(T* x, int64_t b, int64_t e) {
  for (int64_t i = b; i < e; ++i) x[i] = om::nan_to_num(x[i]);
}

// ---- Winograd F(2x2, 3x3) transforms (cpu_kernels.h) ----
// SF_IVDEP: the loop's arrays do not overlap (the scratch rows, the input and the transform
// domain are distinct buffers), so the compiler may vectorise it.
// SF_LAMBDA_INLINE: a loop body passed as a lambda is inlined into the calling clone (else it would
// be compiled once, for the baseline instruction set).
#if defined(__GNUC__) && !defined(__clang__)
#define SF_IVDEP _Pragma("GCC ivdep")
#define SF_LAMBDA_INLINE __attribute__((always_inline))
#else
#define SF_IVDEP
#define SF_LAMBDA_INLINE
#endif
// Rows are transformed first, writing even and odd columns to separate arrays, so that the column
// transform reads four contiguous arrays and every loop runs along x without strides.

template <typename T> std::vector<T>& scratch(size_t n) {
  thread_local std::vector<T> buf;
  if (buf.size() < n) buf.resize(n);
  return buf;
}

// Calls f(img, ty, tx, len, offset) for each run of tiles [t0, t1) along one row of tiles;
// offset is the run's first tile relative to t0.
template <typename F> SF_INLINE void tile_runs(const WinogradShape& s, int64_t t0, int64_t t1, F&& f) {
  for (int64_t t = t0; t < t1;) {
    const int64_t tx = t % s.tw, row = t / s.tw, len = std::min(s.tw - tx, t1 - t);
    f(row / s.th, row % s.th, tx, len, t - t0);
    t += len;
  }
}

template <typename T>
SF_INLINE void wino_input(const WinogradShape& s, const T* x, T* v, int64_t t0, int64_t t1) {
  const int64_t nt = t1 - t0, kstride = s.c * nt, width = 2 * s.tw + 2, half = s.tw + 1;
  std::vector<T>& buf = scratch<T>(static_cast<size_t>(4 * width + 8 * half));
  T* rows = buf.data();          // the four input rows of a run of tiles, zero beyond the edges
  T* eo = rows + 4 * width;      // rows of B^T d: even columns at eo[2i], odd at eo[2i + 1]
  tile_runs(s, t0, t1, [&](int64_t img, int64_t ty, int64_t tx0, int64_t len, int64_t off) SF_LAMBDA_INLINE {
    const int64_t x0 = 2 * tx0 - s.pad_x, cols = 2 * len + 2;
    const int64_t lo = std::max<int64_t>(0, -x0), hi = std::min(cols, s.w - x0);  // in-image columns
    for (int64_t ch = 0; ch < s.c; ++ch) {
      const T* xp = x + (img * s.c + ch) * s.h * s.w;
      for (int i = 0; i < 4; ++i) {
        T* row = rows + i * width;
        const int64_t yy = 2 * ty + i - s.pad_y;
        if (yy < 0 || yy >= s.h || hi <= lo) {
          SF_IVDEP
          for (int64_t q = 0; q < cols; ++q) row[q] = T(0);
          continue;
        }
        const T* src = xp + yy * s.w;
        SF_IVDEP
        for (int64_t q = 0; q < lo; ++q) row[q] = T(0);
        SF_IVDEP
        for (int64_t q = lo; q < hi; ++q) row[q] = src[x0 + q];
        SF_IVDEP
        for (int64_t q = hi; q < cols; ++q) row[q] = T(0);
      }
      const T* d0 = rows;
      const T* d1 = d0 + width;
      const T* d2 = d1 + width;
      const T* d3 = d2 + width;
      T *e0 = eo, *o0 = e0 + half, *e1 = o0 + half, *o1 = e1 + half;
      T *e2 = o1 + half, *o2 = e2 + half, *e3 = o2 + half, *o3 = e3 + half;
      SF_IVDEP
      for (int64_t q = 0; q <= len; ++q) {
        const int64_t a = 2 * q, b = 2 * q + 1;
        e0[q] = d0[a] - d2[a], o0[q] = d0[b] - d2[b];
        e1[q] = d1[a] + d2[a], o1[q] = d1[b] + d2[b];
        e2[q] = d2[a] - d1[a], o2[q] = d2[b] - d1[b];
        e3[q] = d1[a] - d3[a], o3[q] = d1[b] - d3[b];
      }
      for (int i = 0; i < 4; ++i) {
        T* v0 = v + (4 * i) * kstride + ch * nt + off;
        T* v1 = v0 + kstride;
        T* v2 = v1 + kstride;
        T* v3 = v2 + kstride;
        const T* ei = eo + 2 * i * half;
        const T* oi = ei + half;
        SF_IVDEP
        for (int64_t tx = 0; tx < len; ++tx) {
          v0[tx] = ei[tx] - ei[tx + 1];
          v1[tx] = oi[tx] + ei[tx + 1];
          v2[tx] = ei[tx + 1] - oi[tx];
          v3[tx] = oi[tx] - oi[tx + 1];
        }
      }
    }
  });
}

template <typename T>
SF_INLINE void wino_output(const WinogradShape& s, const T* m, T* y, int64_t t0, int64_t t1) {
  const int64_t nt = t1 - t0, kstride = s.c * nt;
  std::vector<T>& buf = scratch<T>(static_cast<size_t>(4 * s.tw));
  T* r00 = buf.data();
  T* r01 = r00 + s.tw;
  T* r10 = r01 + s.tw;
  T* r11 = r10 + s.tw;
  tile_runs(s, t0, t1, [&](int64_t img, int64_t ty, int64_t tx0, int64_t len, int64_t off) SF_LAMBDA_INLINE {
    for (int64_t ch = 0; ch < s.c; ++ch) {
      const T *m0 = m + ch * nt + off, *m1 = m0 + kstride, *m2 = m1 + kstride, *m3 = m2 + kstride;
      const T *m4 = m3 + kstride, *m5 = m4 + kstride, *m6 = m5 + kstride, *m7 = m6 + kstride;
      const T *m8 = m7 + kstride, *m9 = m8 + kstride, *m10 = m9 + kstride, *m11 = m10 + kstride;
      const T *m12 = m11 + kstride, *m13 = m12 + kstride, *m14 = m13 + kstride, *m15 = m14 + kstride;
      SF_IVDEP
      for (int64_t tx = 0; tx < len; ++tx) {
        // A^T m: rows 0 and 1 of the 2x4 intermediate, column j; then A along the columns.
        const T a0 = m0[tx] + m4[tx] + m8[tx], b0 = m4[tx] - m8[tx] - m12[tx];
        const T a1 = m1[tx] + m5[tx] + m9[tx], b1 = m5[tx] - m9[tx] - m13[tx];
        const T a2 = m2[tx] + m6[tx] + m10[tx], b2 = m6[tx] - m10[tx] - m14[tx];
        const T a3 = m3[tx] + m7[tx] + m11[tx], b3 = m7[tx] - m11[tx] - m15[tx];
        r00[tx] = a0 + a1 + a2, r01[tx] = a1 - a2 - a3;
        r10[tx] = b0 + b1 + b2, r11[tx] = b1 - b2 - b3;
      }
      T* yp = y + (img * s.c + ch) * s.h * s.w;
      const int64_t xs = 2 * tx0, pairs = std::min(len, (s.w - xs) / 2);  // whole 2-pixel columns
      for (int i = 0; i < 2; ++i) {
        const int64_t yy = 2 * ty + i;
        if (yy >= s.h) break;
        T* row = yp + yy * s.w + xs;
        const T* c0 = i == 0 ? r00 : r10;
        const T* c1 = i == 0 ? r01 : r11;
        SF_IVDEP
        for (int64_t tx = 0; tx < pairs; ++tx) row[2 * tx] = c0[tx], row[2 * tx + 1] = c1[tx];
        if (pairs < len) row[2 * pairs] = c0[pairs];  // an odd width's last column
      }
    }
  });
}

template <typename T>
SF_INLINE void wino_grad_output(const WinogradShape& s, const T* gy, T* g, int64_t t0, int64_t t1) {
  const int64_t nt = t1 - t0, kstride = s.c * nt;
  std::vector<T>& buf = scratch<T>(static_cast<size_t>(4 * s.tw));
  T* e0 = buf.data();  // rows 2ty and 2ty + 1 of the run, even and odd columns, zero beyond the edges
  T* o0 = e0 + s.tw;
  T* e1 = o0 + s.tw;
  T* o1 = e1 + s.tw;
  tile_runs(s, t0, t1, [&](int64_t img, int64_t ty, int64_t tx0, int64_t len, int64_t off) SF_LAMBDA_INLINE {
    const int64_t xs = 2 * tx0, pairs = std::min(len, (s.w - xs) / 2);
    for (int64_t ch = 0; ch < s.c; ++ch) {
      const T* gp = gy + (img * s.c + ch) * s.h * s.w;
      for (int r = 0; r < 2; ++r) {
        T* e = r == 0 ? e0 : e1;
        T* o = r == 0 ? o0 : o1;
        const int64_t yy = 2 * ty + r;
        if (yy >= s.h) {
          SF_IVDEP
          for (int64_t tx = 0; tx < len; ++tx) e[tx] = T(0), o[tx] = T(0);
          continue;
        }
        const T* src = gp + yy * s.w + xs;
        SF_IVDEP
        for (int64_t tx = 0; tx < pairs; ++tx) e[tx] = src[2 * tx], o[tx] = src[2 * tx + 1];
        if (pairs < len) e[pairs] = src[2 * pairs], o[pairs] = T(0);  // an odd width's last column
      }
      // Rows of A g: g0, g0 + g1, g0 - g1, -g1; then the same along x for each row.
      for (int i = 0; i < 4; ++i) {
        T* v0 = g + (4 * i) * kstride + ch * nt + off;
        T* v1 = v0 + kstride;
        T* v2 = v1 + kstride;
        T* v3 = v2 + kstride;
        SF_IVDEP
        for (int64_t tx = 0; tx < len; ++tx) {
          T a, b;
          if (i == 0) a = e0[tx], b = o0[tx];
          else if (i == 1) a = e0[tx] + e1[tx], b = o0[tx] + o1[tx];
          else if (i == 2) a = e0[tx] - e1[tx], b = o0[tx] - o1[tx];
          else a = -e1[tx], b = -o1[tx];
          v0[tx] = a, v1[tx] = a + b, v2[tx] = a - b, v3[tx] = -b;
        }
      }
    }
  });
}

// G^T m G of one 4x4 component block (component k at m[k * stride]) into a 3x3 filter.
template <typename T> SF_INLINE void wino_filter_grad(const T* m, int64_t stride, T* dw) {
  const T h = T(0.5);
  T t[3][4];
  for (int j = 0; j < 4; ++j) {
    const T a = m[j * stride], b = m[(4 + j) * stride], c = m[(8 + j) * stride], d = m[(12 + j) * stride];
    t[0][j] = a + h * (b + c), t[1][j] = h * (b - c), t[2][j] = h * (b + c) + d;
  }
  for (int i = 0; i < 3; ++i) {
    const T a = t[i][0], b = t[i][1], c = t[i][2], d = t[i][3];
    dw[3 * i + 0] = a + h * (b + c);
    dw[3 * i + 1] = h * (b - c);
    dw[3 * i + 2] = h * (b + c) + d;
  }
}

template <typename T>
SF_INLINE void wino_weight(int64_t o, int64_t i, const T* w, T* u, int64_t o0, int64_t o1) {
  // Per output channel: the nine taps as rows over the input channels, then the transform along
  // them, so that every load and store is contiguous.
  std::vector<T>& buf = scratch<T>(static_cast<size_t>(9 * i));
  T* taps = buf.data();
  const T h = T(0.5);
  const int64_t ks = o * i;
  for (int64_t a = o0; a < o1; ++a) {
    const T* wa = w + a * i * 9;
    for (int64_t b = 0; b < i; ++b)
      for (int j = 0; j < 9; ++j) taps[j * i + b] = wa[b * 9 + j];
    T* ua = u + a * i;
    SF_IVDEP
    for (int64_t b = 0; b < i; ++b) {
      T t[4][3];
      for (int j = 0; j < 3; ++j) {
        const T p = taps[j * i + b], q = taps[(3 + j) * i + b], r = taps[(6 + j) * i + b];
        t[0][j] = p, t[1][j] = h * (p + q + r), t[2][j] = h * (p - q + r), t[3][j] = r;
      }
      for (int k = 0; k < 4; ++k) {
        const T p = t[k][0], q = t[k][1], r = t[k][2];
        ua[(4 * k + 0) * ks + b] = p;
        ua[(4 * k + 1) * ks + b] = h * (p + q + r);
        ua[(4 * k + 2) * ks + b] = h * (p - q + r);
        ua[(4 * k + 3) * ks + b] = r;
      }
    }
  }
}

template <typename T>
SF_INLINE void wino_weight_grad(int64_t o, int64_t i, const T* m, T* dw, int64_t o0, int64_t o1) {
  for (int64_t a = o0; a < o1; ++a)
    for (int64_t b = 0; b < i; ++b) wino_filter_grad(m + a * i + b, o * i, dw + (a * i + b) * 9);
}

}  // namespace

// The translation unit is compiled with -ffp-contract=off: fused multiply-adds appear only where the
// arithmetic asks for one (optim_math.h's fma), so every clone gives the same bits.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define SF_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define SF_CPU_CLONES
#endif

SF_CPU_CLONES void bias_act_rows(const BiasActRows& a, const float* x, const float* b, const float* dy,
                                 const float* ddx, float* out, int64_t r0, int64_t r1) {
  dispatch(a, x, b, dy, ddx, out, r0, r1);
}

SF_CPU_CLONES void bias_act_rows(const BiasActRows& a, const double* x, const double* b, const double* dy,
                                 const double* ddx, double* out, int64_t r0, int64_t r1) {
  dispatch(a, x, b, dy, ddx, out, r0, r1);
}

SF_CPU_CLONES void adam_range(float* p, const float* g, float* m, float* v, int64_t b, int64_t e,
                              const om::AdamCoef<float>& c) {
  adam_loop(p, g, m, v, b, e, c);
}
SF_CPU_CLONES void adam_range(double* p, const double* g, double* m, double* v, int64_t b, int64_t e,
                              const om::AdamCoef<double>& c) {
  adam_loop(p, g, m, v, b, e, c);
}
SF_CPU_CLONES void ema_range(float* dst, const float* src, int64_t b, int64_t e, float beta) {
  ema_loop(dst, src, b, e, beta);
}
SF_CPU_CLONES void ema_range(double* dst, const double* src, int64_t b, int64_t e, double beta) {
  ema_loop(dst, src, b, e, beta);
}
SF_CPU_CLONES void nan_to_num_range(float* x, int64_t b, int64_t e) { nan_to_num_loop(x, b, e); }
SF_CPU_CLONES void nan_to_num_range(double* x, int64_t b, int64_t e) { nan_to_num_loop(x, b, e); }

// ---- separable FIR filter, up 1 or 2, down 1 or 2, not both 2 (cpu_kernels.h) ----
// Per output row: the column pass writes col[j] for input column ix = j - pad_x (zero where ix is
// off the input), then each output pixel sums its taps over col[D ox .. D ox + taps - 1]. KT is the
// tap count when fixed at compile time (the networks' 4-tap filter), else 0; D the downsampling,
// UP the upsampling.
// UP = 2: the zero-inserted input. The column pass sums the taps that land on input rows (every
// other one) over the input's columns, then those sums are spread to every other col[j] with zeros
// between, which add nothing: the same sums as skipping those taps.
template <typename T, int KT, int D, int UP>
SF_INLINE void sep_filter(const SepFilterShape& s, const T* k, const T* x, T* out, int64_t p0, int64_t p1) {
  static_assert(UP == 1 || D == 1, "upsampling and downsampling at once are not handled here");
  const int taps = KT > 0 ? KT : s.taps;
  const int64_t cw = (s.out_w - 1) * D + taps;
  // UP = 1: col[j] for j in [j0, j1) reads input column j - pad_x. UP = 2: input column ix lands on
  // col[2 ix + pad_x], for ix in [i0, i1).
  const int64_t j0 = UP == 1 ? std::min(cw, std::max<int64_t>(0, s.pad_x)) : 0;
  const int64_t j1 = UP == 1 ? std::max(j0, std::min(cw, s.in_w + s.pad_x)) : 0;
  const int64_t i0 = UP == 2 ? std::min(s.in_w, std::max<int64_t>(0, (1 - s.pad_x) / 2)) : 0;
  const int64_t i1 = UP == 2 ? std::max(i0, std::min(s.in_w, cw - s.pad_x > 0 ? (cw - s.pad_x + 1) / 2 : 0)) : 0;
  const T k0 = k[0], k1 = k[KT == 4 ? 1 : 0], k2 = k[KT == 4 ? 2 : 0], k3 = k[KT == 4 ? 3 : 0];  // KT = 4
  std::vector<T>& buf = scratch<T>(static_cast<size_t>(cw + (UP == 2 ? s.in_w : 0)));
  T* col = buf.data();
  T* sums = col + cw;  // UP = 2: the column sums over the input's columns
  for (int64_t plane = p0; plane < p1; ++plane) {
    const T* xp = x + plane * s.in_h * s.in_w;
    T* op = out + plane * s.out_h * s.out_w;
    for (int64_t oy = 0; oy < s.out_h; ++oy) {
      const int64_t y0 = D * oy - s.pad_y;  // the input row of tap 0
      if (UP == 1 && KT == 4 && y0 >= 0 && y0 + 3 < s.in_h) {
        // All four taps on the input: one pass, the same sums in the same order as below.
        const T* r0 = xp + y0 * s.in_w - s.pad_x;
        const T *r1 = r0 + s.in_w, *r2 = r1 + s.in_w, *r3 = r2 + s.in_w;
        SF_IVDEP
        for (int64_t j = 0; j < j0; ++j) col[j] = T(0);
        SF_IVDEP
        for (int64_t j = j0; j < j1; ++j) {
          T c = T(0);
          c += k0 * r0[j];
          c += k1 * r1[j];
          c += k2 * r2[j];
          c += k3 * r3[j];
          col[j] = c;
        }
        SF_IVDEP
        for (int64_t j = j1; j < cw; ++j) col[j] = T(0);
      } else if constexpr (UP == 1) {
        SF_IVDEP
        for (int64_t j = 0; j < cw; ++j) col[j] = T(0);
        for (int t = 0; t < taps; ++t) {
          const int64_t iy = D * oy + t - s.pad_y;
          if (iy < 0 || iy >= s.in_h) continue;
          const T kt = k[t];
          const T* xr = xp + iy * s.in_w - s.pad_x;
          SF_IVDEP
          for (int64_t j = j0; j < j1; ++j) col[j] += kt * xr[j];
        }
      } else {
        SF_IVDEP
        for (int64_t j = 0; j < cw; ++j) col[j] = T(0);
        SF_IVDEP
        for (int64_t i = i0; i < i1; ++i) sums[i] = T(0);
        for (int t = 0; t < taps; ++t) {
          const int64_t u = oy + t - s.pad_y;  // row of the zero-inserted input
          if (u < 0 || (u & 1) != 0 || u / 2 >= s.in_h) continue;
          const T kt = k[t];
          const T* xr = xp + (u / 2) * s.in_w;
          SF_IVDEP
          for (int64_t i = i0; i < i1; ++i) sums[i] += kt * xr[i];
        }
        SF_IVDEP
        for (int64_t i = i0; i < i1; ++i) col[2 * i + s.pad_x] = sums[i];
      }
      T* orow = op + oy * s.out_w;
      if constexpr (KT == 4) {
        SF_IVDEP
        for (int64_t ox = 0; ox < s.out_w; ++ox) {
          const T* c = col + D * ox;
          T a = T(0);
          a += k0 * c[0];
          a += k1 * c[1];
          a += k2 * c[2];
          a += k3 * c[3];
          orow[ox] = a;
        }
      } else {
        SF_IVDEP
        for (int64_t ox = 0; ox < s.out_w; ++ox) orow[ox] = T(0);
        for (int t = 0; t < taps; ++t) {
          const T kt = k[t];
          const T* c = col + t;
          SF_IVDEP
          for (int64_t ox = 0; ox < s.out_w; ++ox) orow[ox] += kt * c[D * ox];
        }
      }
    }
  }
}

template <typename T>
SF_INLINE void sep_filter_any(const SepFilterShape& s, const T* k, const T* x, T* out, int64_t p0, int64_t p1) {
  if (s.up == 2) {
    if (s.taps == 4) sep_filter<T, 4, 1, 2>(s, k, x, out, p0, p1);
    else sep_filter<T, 0, 1, 2>(s, k, x, out, p0, p1);
  } else if (s.down == 2) {
    if (s.taps == 4) sep_filter<T, 4, 2, 1>(s, k, x, out, p0, p1);
    else sep_filter<T, 0, 2, 1>(s, k, x, out, p0, p1);
  } else {
    if (s.taps == 4) sep_filter<T, 4, 1, 1>(s, k, x, out, p0, p1);
    else sep_filter<T, 0, 1, 1>(s, k, x, out, p0, p1);
  }
}

SF_CPU_CLONES void sep_filter_planes(const SepFilterShape& s, const float* k, const float* x, float* out, int64_t p0,
                                     int64_t p1) {
  sep_filter_any(s, k, x, out, p0, p1);
}
SF_CPU_CLONES void sep_filter_planes(const SepFilterShape& s, const double* k, const double* x, double* out,
                                     int64_t p0, int64_t p1) {
  sep_filter_any(s, k, x, out, p0, p1);
}

#define SF_WINOGRAD_EXPORTS(T)                                                                                  \
  SF_CPU_CLONES void winograd_input(const WinogradShape& s, const T* x, T* v, int64_t t0, int64_t t1) {        \
    wino_input(s, x, v, t0, t1);                                                                            \
  }                                                                                                          \
  SF_CPU_CLONES void winograd_output(const WinogradShape& s, const T* m, T* y, int64_t t0, int64_t t1) {       \
    wino_output(s, m, y, t0, t1);                                                                           \
  }                                                                                                          \
  SF_CPU_CLONES void winograd_grad_output(const WinogradShape& s, const T* gy, T* g, int64_t t0, int64_t t1) { \
    wino_grad_output(s, gy, g, t0, t1);                                                                     \
  }                                                                                                          \
  SF_CPU_CLONES void winograd_weight(int64_t o, int64_t i, const T* w, T* u, int64_t o0, int64_t o1) {         \
    wino_weight(o, i, w, u, o0, o1);                                                                        \
  }                                                                                                          \
  SF_CPU_CLONES void winograd_weight_grad(int64_t o, int64_t i, const T* m, T* dw, int64_t o0, int64_t o1) {   \
    wino_weight_grad(o, i, m, dw, o0, o1);                                                                  \
  }
SF_WINOGRAD_EXPORTS(float)
SF_WINOGRAD_EXPORTS(double)
#undef SF_WINOGRAD_EXPORTS

}  // namespace sf::ops::cpu
