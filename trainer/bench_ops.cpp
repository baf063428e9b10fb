#include "trainer/bench_ops.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <stdexcept>
#include <vector>

#include "trainer/device.h"
#include "trainer/ops.h"
#include "trainer/optim.h"
#include "trainer/param_store.h"

#ifdef STYLEFORGE_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace sf::trainer {
namespace {

struct Case {
  std::string name;
  std::function<void()> aten, fused;  // one timed repetition each (forward and backward)
};

void sync(const c10::Device& d) {
#ifdef STYLEFORGE_WITH_CUDA
  if (d.is_cuda()) c10::cuda::device_synchronize();
#else
  (void)d;
#endif
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Alternates the two paths, `iters` times each after one warm-up of each.
std::pair<double, double> time_pair(const Case& c, int iters, const c10::Device& d) {
  auto once = [&](const std::function<void()>& f) {
    sync(d);
    const auto t0 = std::chrono::steady_clock::now();
    f();
    sync(d);
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  };
  once(c.aten);
  once(c.fused);
  std::vector<double> a, f;
  for (int i = 0; i < iters; ++i) {
    a.push_back(once(c.aten));
    f.push_back(once(c.fused));
  }
  return {median(a), median(f)};
}

// bias_act as the networks call it (lrelu, bias, conv_clamp 256 x gain): forward, then the
// gradient of a weighted sum with respect to x and b.
Case bias_act_case(const std::vector<int64_t>& shape, const c10::TensorOptions& opt) {
  at::Tensor x = at::randn(shape, opt).requires_grad_();
  at::Tensor b = at::randn({shape[1]}, opt).requires_grad_();
  at::Tensor g = at::randn(shape, opt);
  const double clamp = 256 * std::sqrt(2.0);
  auto run = [x, b, g, clamp](bool fused) {
    at::Tensor y = fused ? ops::bias_act_fused(x, b, 1, ops::Act::Lrelu, std::nullopt, std::nullopt, clamp)
                         : ops::bias_act_ref(x, b, 1, ops::Act::Lrelu, std::nullopt, std::nullopt, clamp);
    (void)torch::autograd::grad({y}, {x, b}, {g});
  };
  std::string name = "bias_act lrelu+bias+clamp fwd+bwd " + c10::str(at::IntArrayRef(shape));
  return {name, [run] { run(false); }, [run] { run(true); }};
}

// upfirdn2d through the wrappers the networks and the augmentation call, forward and the gradient
// with respect to x; ATen is the CPU/CUDA formulation in ops.cpp, fused the upfirdn2d_fused op on
// CUDA and the CPU's default choice (Upfirdn2dCpuPath::PerShape: the fused loops, a rank-one 2-D
// filter run as its separable factor) on the CPU.
Case upfirdn2d_case(const std::string& what, const std::vector<int64_t>& shape, const c10::TensorOptions& opt,
                    std::function<at::Tensor(const at::Tensor&)> fn) {
  at::Tensor x = at::randn(shape, opt).requires_grad_();
  auto run = [x, fn](bool fused) {
    const ops::Upfirdn2dCpuPath cpu = ops::upfirdn2d_cpu_path();
    const bool cuda = ops::upfirdn2d_fused_is_default(true);
    ops::set_upfirdn2d_cpu_path(fused ? ops::Upfirdn2dCpuPath::PerShape : ops::Upfirdn2dCpuPath::Aten);
    ops::set_upfirdn2d_cuda_default(fused);
    at::Tensor y = fn(x);
    (void)torch::autograd::grad({y}, {x}, {at::ones_like(y)});
    ops::set_upfirdn2d_cpu_path(cpu);
    ops::set_upfirdn2d_cuda_default(cuda);
  };
  std::string name = "upfirdn2d " + what + " fwd+bwd " + c10::str(at::IntArrayRef(shape));
  return {name, [run] { run(false); }, [run] { run(true); }};
}

// The 3x3 convolution (padding 1) as conv2d_resample runs it: forward only, or forward and the
// gradients with respect to x and w. ATen is oneDNN's direct convolution, fused the Winograd path.
Case conv3x3_case(const std::vector<int64_t>& shape, bool backward, const c10::TensorOptions& opt) {
  at::Tensor x = at::randn(shape, opt).requires_grad_(backward);
  at::Tensor w = at::randn({shape[1], shape[1], 3, 3}, opt).requires_grad_(backward);
  auto run = [x, w, backward](bool fused) {
    const ops::ConvCpuPath before = ops::conv_cpu_path();
    ops::set_conv_cpu_path(fused ? ops::ConvCpuPath::Winograd : ops::ConvCpuPath::Aten);
    at::Tensor y = ops::conv2d_resample(x, w, at::Tensor(), 1, 1, ops::Pad::all(1));
    if (backward) (void)torch::autograd::grad({y}, {x, w}, {at::ones_like(y)});
    ops::set_conv_cpu_path(before);
  };
  std::string name = std::string("conv3x3 winograd ") + (backward ? "fwd+bwd " : "fwd ") + c10::str(at::IntArrayRef(shape));
  return {name, [run] { run(false); }, [run] { run(true); }};
}

// Adam::step and update_ema over a parameter list shaped like a network's: `layers` modulated
// convolution layers of c channels (3x3 weight, bias, a 512-wide affine and its bias).
std::vector<Case> optim_cases(int layers, int64_t c, const c10::TensorOptions& opt) {
  auto store = std::make_shared<ParamStore>(), ema = std::make_shared<ParamStore>();
  int64_t count = 0;
  for (int i = 0; i < layers; ++i) {
    const std::vector<std::vector<int64_t>> shapes = {{c, c, 3, 3}, {c}, {c, 512}, {c}};
    for (size_t k = 0; k < shapes.size(); ++k) {
      const std::string name = "l" + std::to_string(i) + "." + std::to_string(k);
      at::Tensor p = store->param(name, at::randn(shapes[k], opt));
      p.mutable_grad() = at::randn(shapes[k], opt);
      ema->param(name, p.detach().clone(), false);
      count += p.numel();
    }
  }
  auto adam = std::make_shared<Adam>(*store, Adam::Options{});
  auto with_path = [](bool fused, const std::function<void()>& f) {
    const auto cpu = set_optim_cpu_path(fused), cuda = set_optim_cuda_path(fused);
    f();
    set_optim_cpu_path(cpu);
    set_optim_cuda_path(cuda);
  };
  const std::string what = " (" + std::to_string(4 * layers) + " tensors, " + std::to_string(count) + " values)";
  std::vector<Case> out;
  out.push_back({"Adam step" + what, [=] { with_path(false, [&] { adam->step(); }); },
                 [=] { with_path(true, [&] { adam->step(); }); }});
  out.push_back({"G_ema update" + what, [=] { with_path(false, [&] { update_ema(*ema, *store, 0.999); }); },
                 [=] { with_path(true, [&] { update_ema(*ema, *store, 0.999); }); }});
  out.push_back({"gradient nan_to_num" + what, [=] { with_path(false, [&] { sanitize_gradients(*store); }); },
                 [=] { with_path(true, [&] { sanitize_gradients(*store); }); }});
  return out;
}

}  // namespace

int run_bench_ops(const BenchOpsOptions& o, std::ostream& out) {
  if (o.iters < 1) throw std::invalid_argument("--iters must be at least 1");
  if (o.threads < 1) throw std::invalid_argument("--threads must be at least 1");
  const c10::Device dev = resolve_device(o.device, 0, 1, true);
  at::set_num_threads(o.threads);
  at::manual_seed(0);
  const c10::TensorOptions opt = at::TensorOptions().device(dev).dtype(at::kFloat);
  const bool big = o.shapes == "large" || (o.shapes == "auto" && dev.is_cuda());
  if (o.shapes != "auto" && o.shapes != "large" && o.shapes != "small")
    throw std::invalid_argument("--shapes must be auto, small or large");

  std::vector<Case> cases;
  // The CPU bench's layers (32x32, 128 channels, batch 8) or 256x256 --cfg auto's (batch 32).
  const std::vector<std::vector<int64_t>> act_shapes =
      big ? std::vector<std::vector<int64_t>>{{32, 64, 256, 256}, {32, 256, 64, 64}, {32, 512, 16, 16}}
          : std::vector<std::vector<int64_t>>{{8, 128, 32, 32}, {8, 128, 8, 8}};
  for (const auto& s : act_shapes) cases.push_back(bias_act_case(s, opt));

  const at::Tensor f4 = ops::setup_filter({1, 3, 3, 1}).to(dev);
  // The augmentation's 12-tap wavelet filter (separable), as AugmentPipe builds it.
  const at::Tensor f12 = ops::setup_filter({-0.0010f, 0.0081f, -0.0340f, 0.0865f, -0.1705f, 0.6109f, 0.6109f,
                                            -0.1705f, 0.0865f, -0.0340f, 0.0081f, -0.0010f}).to(dev);
  const int64_t n = big ? 32 : 8, c = 128, r = big ? 128 : 32;  // 128 channels at 32 or 128
  auto up4 = [f4](const at::Tensor& x) { return ops::upsample2d(x, f4); };
  auto filt4 = [f4](const at::Tensor& x) { return ops::upfirdn2d(x, f4, 1, 1, 1, 1, {}, false, 4.0); };
  auto down4 = [f4](const at::Tensor& x) { return ops::downsample2d(x, f4); };
  auto up12 = [f12](const at::Tensor& x) { return ops::upsample2d(x, f12, 2); };
  auto down12 = [f12](const at::Tensor& x) { return ops::downsample2d(x, f12, 2, ops::Pad::all(-4), true); };
  cases.push_back(upfirdn2d_case("up 2, 4x4 (activations)", {n, c, r / 2, r / 2}, opt, up4));
  cases.push_back(upfirdn2d_case("4x4 filter after a transposed conv", {n, c, r + 2, r + 2}, opt, filt4));
  cases.push_back(upfirdn2d_case("down 2, 4x4 (skip)", {n, c, r, r}, opt, down4));
  cases.push_back(upfirdn2d_case("up 2, 4x4 (images)", {n, 3, r, r}, opt, up4));
  cases.push_back(upfirdn2d_case("up 2, 12-tap (augmentation)", {n, 3, 2 * r, 2 * r}, opt, up12));
  cases.push_back(upfirdn2d_case("down 2, 12-tap (augmentation)", {n, 3, 4 * r, 4 * r}, opt, down12));

  if (!dev.is_cuda()) {  // the Winograd convolution is a CPU path (cuDNN chooses its own on GPUs)
    for (int64_t res : {32, 16, 8, 4}) {
      cases.push_back(conv3x3_case({n, c, res, res}, false, opt));
      cases.push_back(conv3x3_case({n, c, res, res}, true, opt));
    }
  }

  for (auto& oc : optim_cases(20, big ? 512 : 128, opt)) cases.push_back(std::move(oc));

  out << "bench-ops: device " << dev << ", threads " << o.threads << ", " << o.iters
      << " timed repetitions per path (alternating), median ms\n";
  for (const auto& c : cases) {
    if (!o.only.empty() && c.name.find(o.only) == std::string::npos) continue;
    auto [a, f] = time_pair(c, o.iters, dev);
    char line[512];
    std::snprintf(line, sizeof line, "%-72s aten %9.3f ms  fused %9.3f ms  fused/aten %.3f\n", c.name.c_str(), a, f,
                  f / a);
    out << line << std::flush;
  }
  return 0;
}

}  // namespace sf::trainer
