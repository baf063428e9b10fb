#include "trainer/cpu_kernels.h"

#include <algorithm>
#include <stdexcept>

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

}  // namespace sf::ops::cpu
