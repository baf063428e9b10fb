// Fused upfirdn2d: one pass over the output per direction, with the arithmetic of
// cuda/upfirdn2d_math.h, on the CPU (below) or in the CUDA kernel (cuda/upfirdn2d.cu).
//
// Autograd: the gradient of upfirdn2d is upfirdn2d of the output gradient with up and down
// swapped, the filter reversed (flip_filter toggled), the same gain and the padding that maps each
// input pixel back onto itself:
//   pad0' = taps - pad0 - 1,  pad1' = in * up - out * down + pad0 - up + 1      (per axis)
// (then out' = in exactly). Upfirdn2dFn's backward applies Upfirdn2dFn again, so gradients of any
// order work. The filter is a constant: it gets no gradient.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "trainer/cpu_kernels.h"
#include "trainer/cuda/upfirdn2d_math.h"
#include "trainer/ops.h"
#ifdef STYLEFORGE_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "trainer/cuda/upfirdn2d.h"
#endif

namespace sf::ops {
namespace {

namespace um = upfirdn2d_math;

struct Conf {
  int upx = 1, upy = 1, downx = 1, downy = 1;
  Pad pad;
  bool flip = false;
  double gain = 1.0;
};

um::Params geometry(const at::Tensor& x, const at::Tensor& f, const Conf& c) {
  um::Params p;
  p.in_h = x.size(2), p.in_w = x.size(3);
  p.upx = c.upx, p.upy = c.upy, p.downx = c.downx, p.downy = c.downy;
  p.padx0 = c.pad.x0, p.pady0 = c.pad.y0;
  p.separable = f.dim() == 1;
  p.fh = static_cast<int>(f.size(0));
  p.fw = static_cast<int>(f.size(-1));
  p.flip = c.flip;
  p.out_h = um::out_size(p.in_h, c.upy, c.downy, c.pad.y0, c.pad.y1, p.fh);
  p.out_w = um::out_size(p.in_w, c.upx, c.downx, c.pad.x0, c.pad.x1, p.fw);
  TORCH_CHECK(p.out_h > 0 && p.out_w > 0, "upfirdn2d: the filter (", p.fh, "x", p.fw,
              ") is larger than the padded input for ", x.sizes());
  return p;
}

// Rows of output pixels per parallel_for chunk: about 32k multiply-adds.
int64_t grain_rows(const um::Params& p) {
  const int64_t taps = std::max<int64_t>(1, (p.fh / p.upy + 1) * (p.fw / p.upx + 1));
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, p.out_w * taps));
}

std::vector<um::Taps> taps_along(int64_t n_out, int64_t in, int up, int down, int pad0, int taps) {
  std::vector<um::Taps> t(static_cast<size_t>(n_out));
  for (int64_t o = 0; o < n_out; ++o) t[static_cast<size_t>(o)] = um::taps_of(o, in, up, down, pad0, taps);
  return t;
}

// The output columns one tap reaches within a row: ox = ox0 + j * ostep, reading input column
// ix = ix0 + j * istep, for j < count (an arithmetic progression: ox * down + t - pad0 = ix * up).
struct TapRun {
  int64_t ox0 = 0, ostep = 1, ix0 = 0, istep = 1, count = 0;
};

// runs[t] for every tap t, from the per-column tap ranges. The columns a tap reaches solve a
// congruence within an interval, so they always form one progression (checked).
std::vector<TapRun> tap_runs(const std::vector<um::Taps>& tx, int up, int taps) {
  std::vector<TapRun> runs(static_cast<size_t>(taps));
  for (int64_t ox = 0; ox < static_cast<int64_t>(tx.size()); ++ox) {
    const um::Taps& s = tx[static_cast<size_t>(ox)];
    int64_t ix = s.i0;
    for (int t = s.t0; t < s.t1; t += up, ++ix) {
      TapRun& r = runs[static_cast<size_t>(t)];
      if (r.count == 0) {
        r.ox0 = ox, r.ix0 = ix;
      } else if (r.count == 1) {
        r.ostep = ox - r.ox0, r.istep = ix - r.ix0;
      } else {
        TORCH_INTERNAL_ASSERT(ox == r.ox0 + r.count * r.ostep && ix == r.ix0 + r.count * r.istep,
                              "upfirdn2d: tap ", t, " columns are not a progression");
      }
      ++r.count;
    }
  }
  return runs;
}

// acc[ox] += k * src[ix] along one tap's run. Blocks of 4 with a fixed trip count, which the
// compiler vectorizes at -O2; each element gets the same one multiply and one add either way.
template <typename A, typename S>
inline void apply_run(A* __restrict acc, const S* __restrict src, A k, const TapRun& r) {
  constexpr int64_t kB = 4;
  const int64_t n = r.count, blocked = n - n % kB;
  if (r.ostep == 1 && r.istep == 1) {
    A* __restrict a = acc + r.ox0;
    const S* __restrict s = src + r.ix0;
    for (int64_t j = 0; j < blocked; j += kB)
      for (int64_t u = 0; u < kB; ++u) a[j + u] += k * static_cast<A>(s[j + u]);
    for (int64_t j = blocked; j < n; ++j) a[j] += k * static_cast<A>(s[j]);
  } else {
    const int64_t os = r.ostep, is = r.istep;
    A* __restrict a = acc + r.ox0;
    const S* __restrict s = src + r.ix0;
    for (int64_t j = 0; j < blocked; j += kB)
      for (int64_t u = 0; u < kB; ++u) a[(j + u) * os] += k * static_cast<A>(s[(j + u) * is]);
    for (int64_t j = blocked; j < n; ++j) a[j * os] += k * static_cast<A>(s[j * is]);
  }
}

// 2-D filter. Each output pixel accumulates K[ty][tx] * x over its taps in um::pixel_2d's order
// (ty, then tx, increasing; taps off the input skipped), so the values are those of the per-pixel
// form the CUDA kernel runs (tests/test_upfirdn2d_fused.cpp compares the two); the loops run a
// whole output row per tap, the tap ranges computed once per call.
template <typename S, typename A>
void cpu_2d(const S* x, const A* f, S* out, int64_t planes, const um::Params& p) {
  const std::vector<um::Taps> ty = taps_along(p.out_h, p.in_h, p.upy, p.downy, p.pady0, p.fh);
  const std::vector<um::Taps> tx = taps_along(p.out_w, p.in_w, p.upx, p.downx, p.padx0, p.fw);
  const std::vector<TapRun> runs = tap_runs(tx, p.upx, p.fw);
  const int64_t w = p.in_w, plane_in = p.in_h * p.in_w;
  at::parallel_for(0, planes * p.out_h, grain_rows(p), [&](int64_t begin, int64_t end) {
    std::vector<A> acc(static_cast<size_t>(p.out_w));
    for (int64_t r = begin; r < end; ++r) {
      const int64_t plane = r / p.out_h, oy = r - plane * p.out_h;
      const S* xp = x + plane * plane_in;
      const um::Taps& y = ty[static_cast<size_t>(oy)];
      S* orow = out + r * p.out_w;
      std::fill(acc.begin(), acc.end(), A(0));
      int64_t iy = y.i0;
      for (int t = y.t0; t < y.t1; t += p.upy, ++iy) {
        const A* frow = f + static_cast<int64_t>(um::tap_index(t, p.fh, p.flip)) * p.fw;
        const S* xrow = xp + iy * w;
        for (int s = 0; s < p.fw; ++s)
          if (runs[static_cast<size_t>(s)].count > 0)
            apply_run(acc.data(), xrow, frow[um::tap_index(s, p.fw, p.flip)], runs[static_cast<size_t>(s)]);
      }
      for (int64_t ox = 0; ox < p.out_w; ++ox) orow[ox] = static_cast<S>(acc[static_cast<size_t>(ox)]);
    }
  });
}

// Separable filter: a pass along y into a row of column sums (each accumulated tap by tap in
// um::column_sum's order), then along x in um::pixel_separable's order: the same sums, in the same
// order, as the per-pixel form the CUDA kernel runs.
template <typename S, typename A>
void cpu_separable(const S* x, const A* f, S* out, int64_t planes, const um::Params& p) {
  const std::vector<um::Taps> ty = taps_along(p.out_h, p.in_h, p.upy, p.downy, p.pady0, p.fh);
  const std::vector<um::Taps> tx = taps_along(p.out_w, p.in_w, p.upx, p.downx, p.padx0, p.fw);
  const std::vector<TapRun> runs = tap_runs(tx, p.upx, p.fw);
  const int64_t w = p.in_w, plane_in = p.in_h * p.in_w;
  at::parallel_for(0, planes * p.out_h, grain_rows(p), [&](int64_t begin, int64_t end) {
    std::vector<A> col(static_cast<size_t>(w)), acc(static_cast<size_t>(p.out_w));
    for (int64_t r = begin; r < end; ++r) {
      const int64_t plane = r / p.out_h, oy = r - plane * p.out_h;
      const S* xp = x + plane * plane_in;
      const um::Taps& y = ty[static_cast<size_t>(oy)];
      std::fill(col.begin(), col.end(), A(0));
      int64_t iy = y.i0;
      for (int t = y.t0; t < y.t1; t += p.upy, ++iy) {
        const A k = f[um::tap_index(t, p.fh, p.flip)];
        const S* __restrict xrow = xp + iy * w;
        A* __restrict c = col.data();
        for (int64_t ix = 0; ix < w; ++ix) c[ix] += k * static_cast<A>(xrow[ix]);
      }
      S* orow = out + r * p.out_w;
      std::fill(acc.begin(), acc.end(), A(0));
      for (int s = 0; s < p.fw; ++s)
        if (runs[static_cast<size_t>(s)].count > 0)
          apply_run(acc.data(), col.data(), f[um::tap_index(s, p.fw, p.flip)], runs[static_cast<size_t>(s)]);
      for (int64_t ox = 0; ox < p.out_w; ++ox) orow[ox] = static_cast<S>(acc[static_cast<size_t>(ox)]);
    }
  });
}

// Separable filter, up or down 2 or neither (the networks' blur before a strided convolution and
// after a transposed one, their up- and downsampling, and the gradients of those):
// cpu::sep_filter_planes, whole output rows with the taps fixed for the 4-tap filter, the sums of
// cpu_separable in the same order.
// Returns false, doing nothing, for float16 storage (S != A): the loop takes float32 and float64.
template <typename S, typename A>
bool cpu_sep_filter(const S* x, const A* f, S* out, int64_t planes, const um::Params& p) {
  if constexpr (!std::is_same_v<S, A>) {
    return false;
  } else {
    cpu::SepFilterShape s;
    s.in_h = p.in_h, s.in_w = p.in_w, s.out_h = p.out_h, s.out_w = p.out_w;
    s.pad_y = p.pady0, s.pad_x = p.padx0, s.taps = p.fw, s.up = p.upx, s.down = p.downx;
    std::vector<A> k(static_cast<size_t>(p.fw));
    for (int t = 0; t < p.fw; ++t) k[static_cast<size_t>(t)] = f[um::tap_index(t, p.fw, p.flip)];
    const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(1, p.out_h * p.out_w * 2 * p.fw));
    at::parallel_for(0, planes, grain,
                     [&](int64_t p0, int64_t p1) { cpu::sep_filter_planes(s, k.data(), x, out, p0, p1); });
    return true;
  }
}

at::Tensor run(const at::Tensor& x_in, const at::Tensor& f_in, const Conf& c) {
  const at::Tensor x = x_in.contiguous();
  const um::Params p = geometry(x, f_in, c);
  const at::ScalarType st = x.scalar_type();
  const at::ScalarType acc = st == at::kHalf ? at::kFloat : st;
  // The gain is folded into the filter as the reference does: in the filter's dtype, then cast.
  const at::Tensor f = (f_in * std::pow(c.gain, f_in.dim() / 2.0)).to(x.device(), acc).contiguous();
  at::Tensor out = at::empty({x.size(0), x.size(1), p.out_h, p.out_w}, x.options());
  const int64_t planes = x.size(0) * x.size(1);
  if (x.is_cuda()) {
#ifdef STYLEFORGE_WITH_CUDA
    kernels::Upfirdn2dArgs a;
    a.x = x.data_ptr(), a.f = f.data_ptr(), a.out = out.data_ptr(), a.planes = planes, a.p = p;
    const kernels::Upfirdn2dDtype dt = st == at::kDouble ? kernels::Upfirdn2dDtype::Float64
                                       : st == at::kHalf ? kernels::Upfirdn2dDtype::Float16
                                                         : kernels::Upfirdn2dDtype::Float32;
    c10::cuda::CUDAGuard guard(x.device());
    kernels::upfirdn2d_device(a, dt, c10::cuda::getCurrentCUDAStream(x.device().index()).stream());
#else
    throw std::runtime_error("upfirdn2d: this build has no CUDA kernels");
#endif
  } else {
    TORCH_CHECK(x.is_cpu(), "upfirdn2d_fused: unsupported device ", x.device());
    // cpu_sep_filter: up and down in {1, 2}, not both 2, the same on both axes.
    const bool rows = p.separable && p.upx == p.upy && p.downx == p.downy && p.upx * p.downx <= 2;
    AT_DISPATCH_FLOATING_TYPES_AND_HALF(st, "upfirdn2d_fused_cpu", [&] {
      using A = at::opmath_type<scalar_t>;
      if (rows && cpu_sep_filter<scalar_t, A>(x.data_ptr<scalar_t>(), f.data_ptr<A>(), out.data_ptr<scalar_t>(),
                                                planes, p))
        return;
      if (p.separable)
        cpu_separable<scalar_t, A>(x.data_ptr<scalar_t>(), f.data_ptr<A>(), out.data_ptr<scalar_t>(), planes, p);
      else
        cpu_2d<scalar_t, A>(x.data_ptr<scalar_t>(), f.data_ptr<A>(), out.data_ptr<scalar_t>(), planes, p);
    });
  }
  // channels_last activations (--nhwc) stay channels_last.
  const at::MemoryFormat mf = x_in.suggest_memory_format();
  return mf == at::MemoryFormat::Contiguous ? out : out.contiguous(mf);
}

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct Upfirdn2dFn : torch::autograd::Function<Upfirdn2dFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& f, const Conf& c) {
    ctx->saved_data["f"] = f;
    ctx->saved_data["in_h"] = x.size(2);
    ctx->saved_data["in_w"] = x.size(3);
    ctx->saved_data["conf"] = std::vector<int64_t>{c.upx, c.upy, c.downx, c.downy, c.pad.x0, c.pad.x1,
                                                   c.pad.y0, c.pad.y1, c.flip ? 1 : 0};
    ctx->saved_data["gain"] = c.gain;
    return run(x, f, c);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const at::Tensor f = ctx->saved_data["f"].toTensor();
    const int64_t ih = ctx->saved_data["in_h"].toInt(), iw = ctx->saved_data["in_w"].toInt();
    const std::vector<int64_t> v = ctx->saved_data["conf"].toIntVector();
    const at::Tensor& dy = grads[0];
    const int64_t oh = dy.size(2), ow = dy.size(3);
    const int fw = static_cast<int>(f.size(-1)), fh = static_cast<int>(f.size(0));
    const int upx = static_cast<int>(v[0]), upy = static_cast<int>(v[1]);
    const int downx = static_cast<int>(v[2]), downy = static_cast<int>(v[3]);
    const int px0 = static_cast<int>(v[4]), py0 = static_cast<int>(v[6]);
    Conf b;
    b.upx = downx, b.upy = downy, b.downx = upx, b.downy = upy;
    b.pad.x0 = fw - px0 - 1;
    b.pad.x1 = static_cast<int>(iw * upx - ow * downx + px0 - upx + 1);
    b.pad.y0 = fh - py0 - 1;
    b.pad.y1 = static_cast<int>(ih * upy - oh * downy + py0 - upy + 1);
    b.flip = v[8] == 0;
    b.gain = ctx->saved_data["gain"].toDouble();
    at::Tensor dx = Upfirdn2dFn::apply(dy, f, b);
    TORCH_INTERNAL_ASSERT(dx.size(2) == ih && dx.size(3) == iw, "upfirdn2d: gradient shape ", dx.sizes());
    return {dx, at::Tensor(), at::Tensor()};
  }
};

// CPU default: the ATen formulation. Forward + backward, float32, one thread (best of 5, the
// DISABLED_BenchmarkCpuPaths test), ATen vs fused: 8x128x16x16 upsample2d 4x4 9.0 vs 7.5 ms;
// 8x128x34x34 4x4 filter 8.1 vs 11.2 ms; 8x3x32x32 upsample2d 1.15 vs 0.63 ms; 8x128x32x32
// downsample2d 4x4 6.4 vs 7.4 ms; 8x3x64x64 upsample2d 12-tap 9.9 vs 3.7 ms; 8x3x128x128
// downsample2d 12-tap 5.0 vs 3.3 ms. The 128-channel 4x4 cases, most of a training step's
// resampling, are slower fused, so the CPU keeps ATen.
// The CPU's choice (Upfirdn2dCpuPath); per shape by default.
std::atomic<int> g_cpu_path{static_cast<int>(Upfirdn2dCpuPath::PerShape)};
std::atomic<int> g_cuda_default{-1};  // -1: STYLEFORGE_FUSED_KERNELS decides

}  // namespace

at::Tensor upfirdn2d_fused(const at::Tensor& x, const at::Tensor& f_in, int upx, int upy, int downx, int downy, Pad pad,
                           bool flip_filter, double gain) {
  TORCH_CHECK(x.dim() == 4, "upfirdn2d: x must be [N, C, H, W], got ", x.sizes());
  TORCH_CHECK(upx >= 1 && upy >= 1 && downx >= 1 && downy >= 1, "upfirdn2d: factors must be >= 1");
  const at::ScalarType st = x.scalar_type();
  TORCH_CHECK(st == at::kFloat || st == at::kDouble || st == at::kHalf,
              "upfirdn2d_fused: x must be float32, float64 or float16, got ", st);
  at::Tensor f = f_in.defined() ? f_in.detach() : at::ones({1, 1}, x.options().dtype(at::kFloat));
  TORCH_CHECK(f.dim() == 1 || f.dim() == 2, "upfirdn2d: filter must be 1-D or 2-D");
  TORCH_CHECK(f.numel() > 0 && at::isFloatingType(f.scalar_type()), "upfirdn2d: filter must be a non-empty float tensor");
  Conf c;
  c.upx = upx, c.upy = upy, c.downx = downx, c.downy = downy, c.pad = pad, c.flip = flip_filter, c.gain = gain;
  return Upfirdn2dFn::apply(x, f, c);
}

bool upfirdn2d_fused_is_default(bool cuda) {
#ifdef STYLEFORGE_WITH_CUDA
  if (cuda) {
    // The kernel's arithmetic is the CPU-tested header; it is opt-in until tests/gpu/check.sh
    // has compared it on a GPU (tests/test_gpu_upfirdn2d.cpp).
    const int set = g_cuda_default.load();
    return set < 0 ? fused_kernels_env() : set == 1;
  }
#else
  if (cuda) return false;
#endif
  return upfirdn2d_cpu_path() == Upfirdn2dCpuPath::Fused;
}

bool upfirdn2d_use_fused(const at::Tensor& x, const at::Tensor& f) {
  const at::ScalarType st = x.scalar_type();
  if (st != at::kFloat && st != at::kDouble && st != at::kHalf) return false;  // the dtypes the op takes
  if (x.is_cuda()) return upfirdn2d_fused_is_default(true);
  if (!x.is_cpu()) return false;
  switch (upfirdn2d_cpu_path()) {
    case Upfirdn2dCpuPath::Aten: return false;
    case Upfirdn2dCpuPath::Fused: return true;
    case Upfirdn2dCpuPath::PerShape:
      // Measured with `styleforge bench-ops` (one thread, forward + backward): the loop wins on
      // separable filters (the augmentation's 12 taps: 3.7 against 9.9 ms at 8x3x64x64 up 2) and
      // on few channels (images: 0.63 against 1.15 ms at 8x3x32x32 up 2); oneDNN's depthwise
      // convolution wins on 128-channel activations with a 2-D 4x4 filter (7.4 against 11.2 ms).
      // The networks' 4x4 filter is of rank one: upfirdn2d() runs it as its separable factor,
      // before this rule.
      return (f.defined() && f.dim() == 1) || (x.dim() == 4 && x.size(1) <= 16);
  }
  return false;
}

void set_upfirdn2d_cpu_path(Upfirdn2dCpuPath p) { g_cpu_path.store(static_cast<int>(p)); }
Upfirdn2dCpuPath upfirdn2d_cpu_path() { return static_cast<Upfirdn2dCpuPath>(g_cpu_path.load()); }
void set_upfirdn2d_cpu_default(bool fused) {
  set_upfirdn2d_cpu_path(fused ? Upfirdn2dCpuPath::Fused : Upfirdn2dCpuPath::Aten);
}
void set_upfirdn2d_cuda_default(bool fused) { g_cuda_default.store(fused ? 1 : 0); }

}  // namespace sf::ops
