// Per-output-pixel arithmetic of upfirdn2d, shared by the CUDA kernel (upfirdn2d.cu) and the CPU
// loop (trainer/upfirdn2d_fused.cpp) so that CPU tests check the arithmetic the GPU runs. Torch-free.
//
// Semantics (the reference's _upfirdn2d_ref), per axis with input size `in`, factors up/down,
// padding pad0/pad1 (negative crops) and a filter of `taps` taps:
//   U[j] = x[(j - pad0) / up]  when (j - pad0) is a multiple of up and 0 <= (j - pad0) < in * up,
//          else 0                                   (zero insertion, then pad or crop)
//   y[o] = sum_{t < taps} K[t] * U[o * down + t],   out = (in * up + pad0 + pad1 - taps) / down + 1
// with K the filter reversed (a true convolution) unless flip_filter (then a correlation). A 2-D
// filter f[fh][fw] does this on both axes at once; a separable (1-D) filter runs along y, then x.
// Only the taps that land on input pixels are visited (polyphase), so zero insertion costs nothing.
// The gain is folded into the filter by the caller, as the reference does (f * gain^(ndim/2) in the
// filter's dtype), so results round like the reference. A is the accumulation type: float for
// float16 storage, else the storage type. I is the index type: int64_t on the CPU; the CUDA kernel
// runs in int32_t when fits_int32() says every index of the call fits (index_width.h), in int64_t
// otherwise.
#pragma once

#include <cstdint>

#include "trainer/cuda/host_device.h"

namespace sf::ops::upfirdn2d_math {

template <typename I> struct ParamsT {
  I in_w = 0, in_h = 0, out_w = 0, out_h = 0;
  int upx = 1, upy = 1, downx = 1, downy = 1;
  int padx0 = 0, pady0 = 0;
  int fw = 1, fh = 1;       // filter width and height (a separable filter: fw = fh = taps)
  bool separable = false;   // f holds `taps` values used along both axes
  bool flip = false;        // flip_filter
};
using Params = ParamsT<int64_t>;

// Whether every index of a call over `planes` planes fits in int32_t, with room for a grid-stride
// step past the last element: the element counts, and per axis in * up, out * down, the padding
// and the taps (taps_of's intermediate values).
inline bool fits_int32(const Params& p, int64_t planes) {
  const int64_t lim = int64_t(1) << 30;
  auto axis_ok = [lim](int64_t in, int64_t out, int up, int down, int pad0, int taps) {
    const int64_t a = pad0 < 0 ? -int64_t(pad0) : int64_t(pad0);
    return in * up + a + taps < lim && out * down + a + taps < lim;
  };
  return planes > 0 && planes * p.in_h * p.in_w < lim && planes * p.out_h * p.out_w < lim &&
         axis_ok(p.in_h, p.out_h, p.upy, p.downy, p.pady0, p.fh) && axis_ok(p.in_w, p.out_w, p.upx, p.downx, p.padx0, p.fw);
}

// p with 32-bit sizes (when fits_int32(p, planes)).
inline ParamsT<int32_t> narrow(const Params& p) {
  ParamsT<int32_t> q;
  q.in_w = static_cast<int32_t>(p.in_w), q.in_h = static_cast<int32_t>(p.in_h);
  q.out_w = static_cast<int32_t>(p.out_w), q.out_h = static_cast<int32_t>(p.out_h);
  q.upx = p.upx, q.upy = p.upy, q.downx = p.downx, q.downy = p.downy;
  q.padx0 = p.padx0, q.pady0 = p.pady0, q.fw = p.fw, q.fh = p.fh;
  q.separable = p.separable, q.flip = p.flip;
  return q;
}

// Output size along one axis; <= 0 when the filter is longer than the padded input.
SF_HD int64_t out_size(int64_t in, int up, int down, int pad0, int pad1, int taps) {
  const int64_t len = in * up + pad0 + pad1 - taps;
  return len < 0 ? 0 : len / down + 1;
}

// The taps of output index o that land on input pixels: t = t0, t0 + up, ... < t1, reading input
// index i0, i0 + 1, ... (empty when t0 >= t1).
template <typename I> struct TapsT {
  int t0, t1;
  I i0;
};
using Taps = TapsT<int64_t>;

template <typename I> SF_HD TapsT<I> taps_of(I o, I in, int up, int down, int pad0, int taps) {
  const I base = o * down - pad0;  // U index o * down + t is input-up index base + t
  I t0 = base < 0 ? -base : 0;
  const I r = (base + t0) % up;    // base + t0 >= 0
  if (r != 0) t0 += up - r;
  I t1 = in * up - base;
  if (t1 > taps) t1 = taps;
  TapsT<I> s;
  s.t0 = static_cast<int>(t0 < taps ? t0 : taps);
  s.t1 = static_cast<int>(t1 < s.t0 ? s.t0 : t1);
  s.i0 = (base + s.t0) / up;
  return s;
}

// Filter index of tap t (K[t]) for a filter of n taps along one axis.
SF_HD int tap_index(int t, int n, bool flip) { return flip ? t : n - 1 - t; }

// 2-D filter f[fh * fw]: sum over ty (outer), tx (inner) of K[ty][tx] * x[iy][ix].
// read(iy, ix) returns the input pixel of the current plane in A.
template <typename A, typename I, typename Read>
SF_HD A pixel_2d(const ParamsT<I>& p, const A* f, const TapsT<I>& ty, const TapsT<I>& tx, const Read& read) {
  A acc = A(0);
  I iy = ty.i0;
  for (int t = ty.t0; t < ty.t1; t += p.upy, ++iy) {
    const A* frow = f + tap_index(t, p.fh, p.flip) * p.fw;
    I ix = tx.i0;
    for (int s = tx.t0; s < tx.t1; s += p.upx, ++ix) acc += frow[tap_index(s, p.fw, p.flip)] * read(iy, ix);
  }
  return acc;
}

// Separable filter f[taps]: the column sums along y first, then along x (the same sums as a pass
// along y followed by a pass along x, which the CPU loop runs).
template <typename A, typename I, typename Read>
SF_HD A column_sum(const ParamsT<I>& p, const A* f, const TapsT<I>& ty, I ix, const Read& read) {
  A col = A(0);
  I iy = ty.i0;
  for (int t = ty.t0; t < ty.t1; t += p.upy, ++iy) col += f[tap_index(t, p.fh, p.flip)] * read(iy, ix);
  return col;
}

template <typename A, typename I, typename Read>
SF_HD A pixel_separable(const ParamsT<I>& p, const A* f, const TapsT<I>& ty, const TapsT<I>& tx, const Read& read) {
  A acc = A(0);
  I ix = tx.i0;
  for (int s = tx.t0; s < tx.t1; s += p.upx, ++ix) acc += f[tap_index(s, p.fw, p.flip)] * column_sum(p, f, ty, ix, read);
  return acc;
}

// Output pixel of one plane whose taps along y and x are ty and tx (taps_of; the same in every
// plane, so a caller may compute them once for many planes).
template <typename A, typename I, typename Read>
SF_HD A pixel_of_taps(const ParamsT<I>& p, const A* f, const TapsT<I>& ty, const TapsT<I>& tx, const Read& read) {
  return p.separable ? pixel_separable(p, f, ty, tx, read) : pixel_2d(p, f, ty, tx, read);
}

// Output pixel (oy, ox) of one plane.
template <typename A, typename I, typename Read>
SF_HD A pixel(const ParamsT<I>& p, const A* f, I oy, I ox, const Read& read) {
  const TapsT<I> ty = taps_of(oy, p.in_h, p.upy, p.downy, p.pady0, p.fh);
  const TapsT<I> tx = taps_of(ox, p.in_w, p.upx, p.downx, p.padx0, p.fw);
  return pixel_of_taps(p, f, ty, tx, read);
}

// ---- The CUDA kernel's launch: geometry and the work of one thread (upfirdn2d.cu runs these; CPU
// tests run every thread of a launch on the host to check that each output is written once) ----

struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
};

struct Launch {
  Dim3 grid, block;
};

// 256 threads a block: a power of two up to 32 along x, then along y, the rest over planes (at most
// 64, CUDA's limit for blockDim.z), so that small images (4x4, 8x8) still fill a block. The grid
// covers x whole; along y and z it stops at max_yz blocks (CUDA's 65535) and the threads loop.
inline Launch launch_of(int64_t out_w, int64_t out_h, int64_t planes, int64_t max_yz = 65535) {
  auto pow2_at_least = [](int64_t n, unsigned cap) {
    unsigned b = 1;
    while (b < cap && b < n) b *= 2;
    return b;
  };
  constexpr unsigned kThreads = 256;
  Launch l;
  l.block.x = pow2_at_least(out_w, 32);
  l.block.y = pow2_at_least(out_h, kThreads / l.block.x);
  l.block.z = kThreads / (l.block.x * l.block.y) < 64 ? kThreads / (l.block.x * l.block.y) : 64;
  auto blocks = [max_yz](int64_t n, unsigned per, bool capped) {
    const int64_t b = (n + per - 1) / per;
    return static_cast<unsigned>(capped && b > max_yz ? max_yz : b);
  };
  l.grid.x = blocks(out_w, l.block.x, false);
  l.grid.y = blocks(out_h, l.block.y, true);
  l.grid.z = blocks(planes, l.block.z, true);
  return l;
}

// Thread t of block b: output column ox, then every row oy and plane it owns (grid-stride along y
// and z), out = the pixel of x's plane. Its taps along x are computed once, along y once per row.
// load(plane_ptr, index) reads x as A; store(index, value) writes out.
template <typename A, typename I, typename S, typename Load, typename Store>
SF_HD void thread_work(const ParamsT<I>& p, const A* f, const S* x, I planes, const Launch& l, const Dim3& b,
                       const Dim3& t, const Load& load, const Store& store) {
  const I plane_out = p.out_h * p.out_w, plane_in = p.in_h * p.in_w;
  const I ox = static_cast<I>(b.x) * static_cast<I>(l.block.x) + static_cast<I>(t.x);
  if (ox >= p.out_w) return;
  const TapsT<I> tx = taps_of(ox, p.in_w, p.upx, p.downx, p.padx0, p.fw);
  const I w = p.in_w;
  const I step_y = static_cast<I>(l.grid.y) * static_cast<I>(l.block.y);
  const I step_z = static_cast<I>(l.grid.z) * static_cast<I>(l.block.z);
  for (I oy = static_cast<I>(b.y) * static_cast<I>(l.block.y) + static_cast<I>(t.y); oy < p.out_h; oy += step_y) {
    const TapsT<I> ty = taps_of(oy, p.in_h, p.upy, p.downy, p.pady0, p.fh);
    for (I plane = static_cast<I>(b.z) * static_cast<I>(l.block.z) + static_cast<I>(t.z); plane < planes;
         plane += step_z) {
      const S* xp = x + plane * plane_in;
      auto read = [xp, w, &load](I iy, I ix) { return load(xp, iy * w + ix); };
      store(plane * plane_out + oy * p.out_w + ox, pixel_of_taps<A>(p, f, ty, tx, read));
    }
  }
}

}  // namespace sf::ops::upfirdn2d_math
