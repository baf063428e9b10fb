// The Winograd 3x3 convolution (trainer/conv_winograd.cpp) against ATen's conv2d: forward, the
// gradients, double and third order, over odd sizes, every padding it takes and several tile
// blocks; float64 to 1e-12 of the values' scale (the transforms are exact in exact arithmetic),
// float32 no less accurate than ATen's float32 against float64. Then the dispatch in
// conv2d_resample and a generator and R1 penalty on either path.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/network_paths_util.h"
#include "trainer/build_info.h"
#include "trainer/ops.h"

namespace ops = sf::ops;

namespace {

struct ConvPath {
  explicit ConvPath(ops::ConvCpuPath p) : before(ops::conv_cpu_path()) { ops::set_conv_cpu_path(p); }
  ~ConvPath() { ops::set_conv_cpu_path(before); }
  ops::ConvCpuPath before;
};

struct ConvCase {
  std::string name;
  int64_t n, in_c, out_c, h, w;
  int pad_y, pad_x;
};

const std::vector<ConvCase>& cases() {
  static const std::vector<ConvCase> c = {
      {"odd sizes", 2, 3, 4, 5, 7, 1, 1},
      {"no padding", 1, 2, 3, 4, 6, 0, 0},
      {"padding 2", 2, 3, 2, 6, 5, 2, 2},
      {"per-axis padding", 1, 4, 5, 3, 4, 1, 0},
      {"mixed padding odd", 3, 5, 6, 8, 9, 0, 2},
      {"one pixel", 2, 1, 1, 1, 1, 1, 1},
      {"filter-sized input", 2, 3, 4, 3, 3, 0, 0},
      {"wide channels", 2, 17, 19, 11, 13, 1, 1},
      {"several tile blocks", 3, 64, 40, 30, 34, 1, 1},  // 765 tiles, blocks of 256 cut tile rows
  };
  return c;
}

// The direct convolution: ATen's conv2d.
at::Tensor aten_conv(const at::Tensor& x, const at::Tensor& w, int py, int px) {
  return at::conv2d(x, w, {}, {1, 1}, {py, px});
}

// y; the gradients of sum(y^2 * p) w.r.t. x and w (create_graph); the gradients of
// sum(gx^2 * q) + sum(gw^2 * r) w.r.t. x and w (second order).
std::vector<at::Tensor> derivs(bool wino, const at::Tensor& x0, const at::Tensor& w0, const ConvCase& c,
                               uint64_t seed) {
  at::Tensor x = x0.detach().clone().requires_grad_(true);
  at::Tensor w = w0.detach().clone().requires_grad_(true);
  at::Tensor y = wino ? ops::conv3x3_winograd(x, w, c.pad_y, c.pad_x) : aten_conv(x, w, c.pad_y, c.pad_x);
  auto gen = at::detail::createCPUGenerator(seed);
  at::Tensor p = at::randn(y.sizes(), gen, x0.options());
  at::Tensor q = at::randn(x0.sizes(), gen, x0.options());
  at::Tensor r = at::randn(w0.sizes(), gen, x0.options());
  auto g = torch::autograd::grad({(y.square() * p).sum()}, {x, w}, {}, true, true);
  auto gg = torch::autograd::grad({(g[0].square() * q).sum() + (g[1].square() * r).sum()}, {x, w});
  return {y.detach(), g[0].detach(), g[1].detach(), gg[0].detach(), gg[1].detach()};
}

double max_err(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }
double scale_of(const at::Tensor& b) { return std::max(1.0, b.abs().max().item<double>()); }

const char* kWhat[] = {"forward", "grad x", "grad w", "second order x", "second order w"};

}  // namespace

TEST(ConvWinograd, Float64MatchesAtenToSecondOrder) {
  uint64_t seed = 700;
  for (const ConvCase& c : cases()) {
    auto g = at::detail::createCPUGenerator(seed++);
    const auto opt = at::TensorOptions().dtype(at::kDouble);
    at::Tensor x = at::randn({c.n, c.in_c, c.h, c.w}, g, opt);
    at::Tensor w = at::randn({c.out_c, c.in_c, 3, 3}, g, opt);
    auto ref = derivs(false, x, w, c, seed);
    auto got = derivs(true, x, w, c, seed);
    ++seed;
    for (size_t i = 0; i < ref.size(); ++i) {
      ASSERT_EQ(got[i].sizes(), ref[i].sizes()) << c.name << " " << kWhat[i];
      EXPECT_EQ(got[i].scalar_type(), at::kDouble);
      EXPECT_LE(max_err(got[i], ref[i]), 1e-12 * scale_of(ref[i])) << c.name << " " << kWhat[i];
      EXPECT_GT(ref[i].abs().max().item<double>(), 0) << c.name << " " << kWhat[i] << " is trivial";
    }
  }
}

// float32: the error against ATen's float64 result is within 4x ATen's own float32 error (or 2e-6
// of the scale, where ATen's is below that).
TEST(ConvWinograd, Float32AsAccurateAsAten) {
  uint64_t seed = 900;
  for (const ConvCase& c : cases()) {
    auto g = at::detail::createCPUGenerator(seed++);
    at::Tensor x = at::randn({c.n, c.in_c, c.h, c.w}, g, at::TensorOptions().dtype(at::kDouble));
    at::Tensor w = at::randn({c.out_c, c.in_c, 3, 3}, g, at::TensorOptions().dtype(at::kDouble));
    auto ref = derivs(false, x, w, c, seed);
    auto aten = derivs(false, x.to(at::kFloat), w.to(at::kFloat), c, seed);
    auto got = derivs(true, x.to(at::kFloat), w.to(at::kFloat), c, seed);
    ++seed;
    for (size_t i = 0; i < ref.size(); ++i) {
      EXPECT_EQ(got[i].scalar_type(), at::kFloat);
      const double scale = scale_of(ref[i]);
      const double err = max_err(got[i].to(at::kDouble), ref[i]);
      const double aten_err = max_err(aten[i].to(at::kDouble), ref[i]);
      EXPECT_LE(err, std::max(4 * aten_err, 2e-6 * scale))
          << c.name << " " << kWhat[i] << ": winograd " << err << ", aten " << aten_err << ", scale " << scale;
    }
  }
}

TEST(ConvWinograd, ThirdOrderMatchesAten) {
  const ConvCase c = cases()[0];
  auto g = at::detail::createCPUGenerator(11);
  const auto opt = at::TensorOptions().dtype(at::kDouble);
  at::Tensor x0 = at::randn({c.n, c.in_c, c.h, c.w}, g, opt), w0 = at::randn({c.out_c, c.in_c, 3, 3}, g, opt);
  std::vector<at::Tensor> res;
  for (bool wino : {false, true}) {
    at::Tensor x = x0.clone().requires_grad_(true), w = w0.clone().requires_grad_(true);
    at::Tensor y = wino ? ops::conv3x3_winograd(x, w, 1, 1) : aten_conv(x, w, 1, 1);
    at::Tensor gx = torch::autograd::grad({y.pow(3).sum()}, {x}, {}, true, true)[0];
    at::Tensor gw = torch::autograd::grad({gx.pow(3).sum()}, {w}, {}, true, true)[0];
    res.push_back(torch::autograd::grad({gw.pow(2).sum()}, {x})[0]);
  }
  EXPECT_LE(max_err(res[1], res[0]), 1e-11 * scale_of(res[0]));
  EXPECT_GT(res[0].abs().max().item<double>(), 0);
}

// Several threads split the tiles into fixed chunks and sum the weight gradients' partial sums.
// The comparison runs in a new process of this binary (the DISABLED_ body below): starting
// OpenMP's pool with more threads in this process, or using it in a forked copy of a process that
// has one, breaks the tests that fork children.
TEST(ConvWinograd, DISABLED_ThreadsBody) {
  const ConvCase c = cases().back();
  auto g = at::detail::createCPUGenerator(12);
  at::Tensor x = at::randn({c.n, c.in_c, c.h, c.w}, g), w = at::randn({c.out_c, c.in_c, 3, 3}, g);
  at::set_num_threads(1);
  const auto one = derivs(true, x, w, c, 13);
  at::set_num_threads(3);
  ASSERT_EQ(at::get_num_threads(), 3);
  // Our loops do run on the threads asked for: at::parallel_for has a parallel region only where
  // the build compiles with OpenMP.
  EXPECT_NE(sf::trainer::cpu_threads().find("OpenMP"), std::string::npos) << sf::trainer::cpu_threads();
  std::vector<int> thread_of(3, -1);
  at::parallel_for(0, 3, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) thread_of[static_cast<size_t>(i)] = at::get_thread_num();
  });
  EXPECT_EQ(std::set<int>(thread_of.begin(), thread_of.end()).size(), 3u) << "at::parallel_for ran on fewer threads";
  const auto three = derivs(true, x, w, c, 13);
  for (size_t i = 0; i < one.size(); ++i)
    EXPECT_LE(max_err(three[i], one[i]), 1e-5 * scale_of(one[i])) << kWhat[i];
  EXPECT_TRUE(at::equal(three[0], one[0])) << "the forward pass does not depend on the split";
}

TEST(ConvWinograd, ThreadsGiveTheSameResult) {
  std::string self(4096, '\0');
  const ssize_t len = readlink("/proc/self/exe", self.data(), self.size() - 1);
  ASSERT_GT(len, 0) << "cannot find this test binary";
  self.resize(static_cast<size_t>(len));
  std::string filter = "--gtest_filter=ConvWinograd.DISABLED_ThreadsBody";
  std::string also = "--gtest_also_run_disabled_tests";
  std::string brief = "--gtest_brief=1";
  char* argv[] = {self.data(), filter.data(), also.data(), brief.data(), nullptr};
  pid_t pid = 0;
  ASSERT_EQ(posix_spawn(&pid, self.c_str(), nullptr, nullptr, argv, environ), 0) << "cannot start " << self;
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "the child died (status " << status << ")";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "ConvWinograd.DISABLED_ThreadsBody failed in the child (output above)";
}

TEST(ConvWinograd, EmptyBatch) {
  at::Tensor x = at::zeros({0, 3, 6, 6}).requires_grad_(), w = at::randn({4, 3, 3, 3}).requires_grad_();
  at::Tensor y = ops::conv3x3_winograd(x, w, 1, 1);
  EXPECT_EQ(y.sizes(), at::IntArrayRef({0, 4, 6, 6}));
  auto g = torch::autograd::grad({y.sum()}, {x, w});
  EXPECT_EQ(g[0].sizes(), x.sizes());
  EXPECT_TRUE(at::equal(g[1], at::zeros_like(w)));
}

TEST(ConvWinograd, RejectsWhatItDoesNotTake) {
  const at::Tensor x = at::zeros({1, 2, 4, 4}), w3 = at::zeros({3, 2, 3, 3});
  EXPECT_THROW(ops::conv3x3_winograd(x, at::zeros({3, 2, 5, 5}), 1, 1), c10::Error);
  EXPECT_THROW(ops::conv3x3_winograd(x, at::zeros({3, 4, 3, 3}), 1, 1), c10::Error);
  EXPECT_THROW(ops::conv3x3_winograd(x, w3, 3, 1), c10::Error);
  EXPECT_THROW(ops::conv3x3_winograd(x, w3, -1, 1), c10::Error);
  EXPECT_THROW(ops::conv3x3_winograd(x.to(at::kDouble), w3, 1, 1), c10::Error);
  EXPECT_THROW(ops::conv3x3_winograd(x.to(at::kHalf), w3.to(at::kHalf), 1, 1), c10::Error);
  EXPECT_THROW(ops::conv3x3_winograd(at::zeros({1, 2, 1, 1}), w3, 0, 0), c10::Error);
}

// The per-shape rule, and conv2d_resample's plain convolutions following the path.
TEST(ConvWinograd, CpuPathPerShape) {
  ConvPath keep(ops::ConvCpuPath::PerShape);
  const at::Tensor big = at::zeros({2, 128, 32, 32}), w = at::zeros({128, 128, 3, 3});
  const at::Tensor small = at::zeros({2, 128, 4, 4}), few = at::zeros({2, 3, 32, 32}), wf = at::zeros({128, 3, 3, 3});
  EXPECT_TRUE(ops::conv_use_winograd(big, w, 1, 1, 1, 1));
  EXPECT_FALSE(ops::conv_use_winograd(small, w, 1, 1, 1, 1));
  EXPECT_FALSE(ops::conv_use_winograd(few, wf, 1, 1, 1, 1));
  EXPECT_FALSE(ops::conv_use_winograd(big, w, 2, 1, 1, 1));                      // strided
  EXPECT_FALSE(ops::conv_use_winograd(big, at::zeros({128, 64, 3, 3}), 1, 1, 1, 2));  // grouped
  EXPECT_FALSE(ops::conv_use_winograd(big, at::zeros({128, 128, 1, 1}), 1, 0, 0, 1));
  EXPECT_FALSE(ops::conv_use_winograd(big.to(at::kDouble), w.to(at::kDouble), 1, 1, 1, 1));
  ops::set_conv_cpu_path(ops::ConvCpuPath::Winograd);
  EXPECT_TRUE(ops::conv_use_winograd(small, w, 1, 1, 1, 1));
  EXPECT_TRUE(ops::conv_use_winograd(big.to(at::kDouble), w.to(at::kDouble), 1, 1, 1, 1));
  EXPECT_FALSE(ops::conv_use_winograd(big, w, 1, 3, 3, 1));
  ops::set_conv_cpu_path(ops::ConvCpuPath::Aten);
  EXPECT_FALSE(ops::conv_use_winograd(big, w, 1, 1, 1, 1));

  // The flag values of train/bench --cpu-conv and selftest --conv.
  EXPECT_EQ(ops::parse_conv_cpu_path("auto"), ops::ConvCpuPath::PerShape);
  EXPECT_EQ(ops::parse_conv_cpu_path("aten"), ops::ConvCpuPath::Aten);
  EXPECT_EQ(ops::parse_conv_cpu_path("winograd"), ops::ConvCpuPath::Winograd);
  try {
    ops::parse_conv_cpu_path("fast");
    ADD_FAILURE() << "an unknown path was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("--cpu-conv"), std::string::npos) << e.what();
  }

  // conv2d_resample (padding 1, no resampling) runs the path: the autograd node says which.
  at::Tensor x = at::randn({1, 4, 6, 6}).requires_grad_(), wr = at::randn({5, 4, 3, 3});
  for (auto p : {ops::ConvCpuPath::Aten, ops::ConvCpuPath::Winograd}) {
    ops::set_conv_cpu_path(p);
    at::Tensor y = ops::conv2d_resample(x, wr, at::Tensor(), 1, 1, ops::Pad::all(1));
    const std::string node = y.grad_fn()->name();
    EXPECT_EQ(node.find("ConvFn") != std::string::npos, p == ops::ConvCpuPath::Winograd) << node;
  }
}

// A generator and the discriminator's R1 penalty (second order into D's parameters) give the same
// values and gradients with every plain 3x3 convolution on the Winograd path (float32).
TEST(ConvWinograd, NetworksAndR1MatchAten) {
  ConvPath keep(ops::conv_cpu_path());
  sf::path_test::SmallNetworks nets("skip", 256, 60);
  sf::path_test::expect_same_outputs(
      nets, [](bool on) { ops::set_conv_cpu_path(on ? ops::ConvCpuPath::Winograd : ops::ConvCpuPath::Aten); }, 1e-4);
}
