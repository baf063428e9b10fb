// The 3x3 stride-1 convolution by Winograd's minimal filtering, F(2x2, 3x3), on the CPU.
//
// Each 2x2 output tile takes 16 multiplications per input channel instead of 36: the input tiles,
// the filters and the products are transformed (trainer/cpu_kernels.h) and the channel sums become
// 16 batched matrix products (at::bmm). The weight gradient is the same construction with the
// output gradient's tiles in place of the filter, summed over tiles. The result equals the direct
// convolution up to float rounding (the transforms only add, subtract and halve).
//
// Autograd, with flipT(w) = w transposed in its first two dimensions and flipped spatially:
//   y  = conv(x, w, p)          dx = conv(dy, flipT(w), 2 - p)   dw = wgrad(x, dy, p)
//   dw = wgrad(x, dy, p)        d(x)  = conv(dy, flipT(ddw), 2 - p)   d(dy) = conv(x, ddw, p)
// so both functions' backward passes are made of the two functions again, and gradients of any
// order (R1 and path length need the second) run on this path.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <string>
#include <vector>

#include "trainer/cpu_kernels.h"
#include "trainer/ops.h"

namespace sf::ops {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

cpu::WinogradShape tiles_of(int64_t n, int64_t c, int64_t out_h, int64_t out_w) {
  cpu::WinogradShape s;
  s.n = n, s.c = c, s.th = (out_h + 1) / 2, s.tw = (out_w + 1) / 2;
  return s;
}

// Tiles per block: a block's transforms ([16, C, tiles]) stay in the core's cache between the
// transform, the matrix products and the inverse transform: about 1 MiB of float32 per block.
// Measured (bench-ops, 8x128x32x32, forward + backward, one thread): 64 tiles 0.603 of oneDNN's
// time, 128 tiles 0.593, 256 tiles 0.601.
// With several threads, blocks are made small enough that every thread gets one.
int64_t block_tiles(int64_t channels, int64_t tiles) {
  const int64_t cache = std::clamp<int64_t>(16384 / std::max<int64_t>(channels, 1), 16, 512);
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  return std::max<int64_t>(1, std::min(cache, (tiles + threads - 1) / threads));
}

// Output channels per parallel_for chunk of the filter transforms.
constexpr int64_t kGrainChannels = 16;

// Runs f(t0, t1) over blocks of tiles [0, tiles), blocks split between threads in `chunks` fixed
// ranges (f(chunk, t0, t1)), so the work each chunk does never depends on scheduling.
template <typename F> int64_t for_blocks(int64_t tiles, int64_t block, F&& f) {
  const int64_t blocks = (tiles + block - 1) / block;
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(blocks, at::get_num_threads()));
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c)
      for (int64_t b = c * blocks / chunks; b < (c + 1) * blocks / chunks; ++b)
        f(c, b * block, std::min(tiles, (b + 1) * block));
  });
  return chunks;
}

// x [N, I, H, W], w [O, I, 3, 3] -> y [N, O, H + 2 pad_y - 2, W + 2 pad_x - 2].
at::Tensor forward_impl(const at::Tensor& x_in, const at::Tensor& w_in, int64_t pad_y, int64_t pad_x) {
  const at::Tensor x = x_in.contiguous(), w = w_in.contiguous();
  const int64_t n = x.size(0), in_c = x.size(1), out_c = w.size(0);
  const int64_t out_h = x.size(2) + 2 * pad_y - 2, out_w = x.size(3) + 2 * pad_x - 2;
  cpu::WinogradShape si = tiles_of(n, in_c, out_h, out_w), so = tiles_of(n, out_c, out_h, out_w);
  si.h = x.size(2), si.w = x.size(3), si.pad_y = pad_y, si.pad_x = pad_x;
  so.h = out_h, so.w = out_w;
  at::Tensor u = at::empty({16, out_c, in_c}, w.options());
  at::Tensor y = at::empty({n, out_c, out_h, out_w}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "conv3x3_winograd", [&] {
    const scalar_t* wp = w.data_ptr<scalar_t>();
    scalar_t* up = u.data_ptr<scalar_t>();
    at::parallel_for(0, out_c, kGrainChannels,
                     [&](int64_t o0, int64_t o1) { cpu::winograd_weight(out_c, in_c, wp, up, o0, o1); });
    const scalar_t* xp = x.data_ptr<scalar_t>();
    scalar_t* yp = y.data_ptr<scalar_t>();
    const int64_t tiles = n * si.th * si.tw;
    for_blocks(tiles, block_tiles(std::max(in_c, out_c), tiles), [&](int64_t, int64_t t0, int64_t t1) {
      at::Tensor v = at::empty({16, in_c, t1 - t0}, x.options());
      cpu::winograd_input(si, xp, v.data_ptr<scalar_t>(), t0, t1);
      const at::Tensor m = at::bmm(u, v);  // [16, O, tiles]
      cpu::winograd_output(so, m.data_ptr<scalar_t>(), yp, t0, t1);
    });
  });
  return y;
}

// The weight gradient of forward_impl: x [N, I, H, W], dy [N, O, oh, ow] -> dw [O, I, 3, 3].
at::Tensor wgrad_impl(const at::Tensor& x_in, const at::Tensor& dy_in, int64_t pad_y, int64_t pad_x) {
  const at::Tensor x = x_in.contiguous(), dy = dy_in.contiguous();
  const int64_t n = x.size(0), in_c = x.size(1), out_c = dy.size(1), out_h = dy.size(2), out_w = dy.size(3);
  cpu::WinogradShape si = tiles_of(n, in_c, out_h, out_w), so = tiles_of(n, out_c, out_h, out_w);
  si.h = x.size(2), si.w = x.size(3), si.pad_y = pad_y, si.pad_x = pad_x;
  so.h = out_h, so.w = out_w;
  const int64_t tiles = n * si.th * si.tw;
  std::vector<at::Tensor> acc(static_cast<size_t>(std::max<int64_t>(1, at::get_num_threads())));
  at::Tensor dw = at::empty({out_c, in_c, 3, 3}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "conv3x3_winograd_wgrad", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* gp = dy.data_ptr<scalar_t>();
    const int64_t chunks =
        for_blocks(tiles, block_tiles(std::max(in_c, out_c), tiles), [&](int64_t c, int64_t t0, int64_t t1) {
          at::Tensor v = at::empty({16, in_c, t1 - t0}, x.options());
          at::Tensor g = at::empty({16, out_c, t1 - t0}, x.options());
          cpu::winograd_input(si, xp, v.data_ptr<scalar_t>(), t0, t1);
          cpu::winograd_grad_output(so, gp, g.data_ptr<scalar_t>(), t0, t1);
          at::Tensor& a = acc[static_cast<size_t>(c)];
          if (a.defined()) a.baddbmm_(g, v.transpose(1, 2));
          else a = at::bmm(g, v.transpose(1, 2));  // [16, O, I]
        });
    if (!acc[0].defined()) {  // no tiles (an empty batch): no gradient
      dw.zero_();
      return;
    }
    at::Tensor m = acc[0];
    for (int64_t c = 1; c < chunks; ++c) m = m + acc[static_cast<size_t>(c)];
    m = m.contiguous();
    const scalar_t* mp = m.data_ptr<scalar_t>();
    scalar_t* dp = dw.data_ptr<scalar_t>();
    at::parallel_for(0, out_c, kGrainChannels,
                     [&](int64_t o0, int64_t o1) { cpu::winograd_weight_grad(out_c, in_c, mp, dp, o0, o1); });
  });
  return dw;
}

at::Tensor flip_transpose(const at::Tensor& w) { return w.transpose(0, 1).flip({2, 3}); }

// Both functions keep their two tensor inputs and the padding for backward.
void save(AutogradContext* ctx, const at::Tensor& a, const at::Tensor& b, int64_t pad_y, int64_t pad_x) {
  ctx->save_for_backward({a, b});
  ctx->saved_data["pad"] = std::vector<int64_t>{pad_y, pad_x};
}
std::vector<int64_t> saved_pad(AutogradContext* ctx) { return ctx->saved_data["pad"].toIntVector(); }

struct WgradFn;

struct ConvFn : torch::autograd::Function<ConvFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w, int64_t pad_y,
                            int64_t pad_x) {
    save(ctx, x, w, pad_y, pad_x);
    return forward_impl(x, w, pad_y, pad_x);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads);
};

struct WgradFn : torch::autograd::Function<WgradFn> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& dy, int64_t pad_y,
                            int64_t pad_x) {
    save(ctx, x, dy, pad_y, pad_x);
    return wgrad_impl(x, dy, pad_y, pad_x);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const std::vector<int64_t> pad = saved_pad(ctx);
    const at::Tensor& ddw = grads[0];
    at::Tensor dx, ddy;
    if (ddw.defined() && ctx->needs_input_grad(0)) dx = ConvFn::apply(saved[1], flip_transpose(ddw), 2 - pad[0], 2 - pad[1]);
    if (ddw.defined() && ctx->needs_input_grad(1)) ddy = ConvFn::apply(saved[0], ddw, pad[0], pad[1]);
    return {dx, ddy, at::Tensor(), at::Tensor()};
  }
};

variable_list ConvFn::backward(AutogradContext* ctx, variable_list grads) {
  const variable_list saved = ctx->get_saved_variables();
  const std::vector<int64_t> pad = saved_pad(ctx);
  const at::Tensor& dy = grads[0];
  at::Tensor dx, dw;
  if (dy.defined() && ctx->needs_input_grad(0)) dx = ConvFn::apply(dy, flip_transpose(saved[1]), 2 - pad[0], 2 - pad[1]);
  if (dy.defined() && ctx->needs_input_grad(1)) dw = WgradFn::apply(saved[0], dy, pad[0], pad[1]);
  return {dx, dw, at::Tensor(), at::Tensor()};
}

std::atomic<int> g_cpu_path{static_cast<int>(ConvCpuPath::PerShape)};

// Why the op cannot take these operands, or nullptr when it can: conv3x3_winograd reports it,
// conv_use_winograd falls back to ATen.
const char* unsupported(const at::Tensor& x, const at::Tensor& w, int pad_y, int pad_x) {
  if (x.dim() != 4 || w.dim() != 4 || w.size(2) != 3 || w.size(3) != 3 || w.size(1) != x.size(1))
    return "x [N, I, H, W] and w [O, I, 3, 3] expected";
  if (!x.is_cpu() || !w.is_cpu()) return "CPU tensors only";
  const at::ScalarType st = x.scalar_type();
  if (st != w.scalar_type() || (st != at::kFloat && st != at::kDouble))
    return "float32 or float64 x and w of one dtype expected";
  if (pad_y < 0 || pad_y > 2 || pad_x < 0 || pad_x > 2) return "padding must be 0, 1 or 2";
  if (x.size(2) + 2 * pad_y < 3 || x.size(3) + 2 * pad_x < 3) return "the input is smaller than the filter";
  return nullptr;
}

}  // namespace

at::Tensor conv3x3_winograd(const at::Tensor& x, const at::Tensor& w, int pad_y, int pad_x) {
  const char* why = unsupported(x, w, pad_y, pad_x);
  TORCH_CHECK(why == nullptr, "conv3x3_winograd: ", why, "; got x ", x.sizes(), " ", x.scalar_type(), " ",
              x.device(), ", w ", w.sizes(), " ", w.scalar_type(), " ", w.device(), ", padding ", pad_y, ", ", pad_x);
  return ConvFn::apply(x, w, pad_y, pad_x);
}

bool conv_use_winograd(const at::Tensor& x, const at::Tensor& w, int stride, int pad_y, int pad_x, int groups) {
  if (stride != 1 || groups != 1 || unsupported(x, w, pad_y, pad_x) != nullptr) return false;
  const at::ScalarType st = x.scalar_type();
  switch (conv_cpu_path()) {
    case ConvCpuPath::Aten: return false;
    case ConvCpuPath::Winograd: return true;
    case ConvCpuPath::PerShape:
      // Measured with `styleforge bench-ops --only conv3x3` (forward + backward, 8 images of 128
      // channels, fused/aten). One thread: 32x32 0.58, 16x16 0.72, 8x8 0.97 (128 tiles), 4x4 1.26.
      // Two threads: 32x32 0.58, 16x16 0.71, 8x8 0.95 (64 tiles per thread), 4x4 1.37.
      // Too few tiles (per thread) do not pay for the transforms; too few channels leave too
      // little to multiply. More than two threads are not measured: 64 tiles per thread assumed.
      {
        const int64_t tiles = x.size(0) * ((x.size(2) + 1) / 2) * ((x.size(3) + 1) / 2);
        return st == at::kFloat && x.size(1) >= 32 && w.size(0) >= 32 && tiles >= 128 &&
               tiles >= 64 * std::max<int64_t>(1, at::get_num_threads());
      }
  }
  return false;
}

ConvCpuPath parse_conv_cpu_path(const std::string& name, const std::string& flag) {
  if (name == "auto") return ConvCpuPath::PerShape;
  if (name == "aten") return ConvCpuPath::Aten;
  if (name == "winograd") return ConvCpuPath::Winograd;
  throw std::invalid_argument(flag + " must be auto, aten or winograd, got '" + name + "'");
}

void set_conv_cpu_path(ConvCpuPath p) { g_cpu_path.store(static_cast<int>(p)); }
ConvCpuPath conv_cpu_path() { return static_cast<ConvCpuPath>(g_cpu_path.load()); }

}  // namespace sf::ops
