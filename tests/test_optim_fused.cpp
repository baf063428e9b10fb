// The fused optimiser updates (cuda/optim_math.h, run by trainer/optim.cpp's CPU loops) against the
// ATen path, and Adam against torch.optim.Adam's formula evaluated here in float64.
//
// What is asserted, and why:
//  - exp_avg, exp_avg_sq, EMA and nan_to_num results: the same bits as the ATen path. The fused
//    arithmetic is ATen's CPU arithmetic op for op (lerp and addcmul as fused multiply-adds, as
//    ATen's AVX2/AVX-512 kernels compute them); where ATen runs its DEFAULT kernels (no FMA) a
//    1-ulp difference is allowed instead.
//  - Adam's parameters: the same bits as the ATen op sequence with a correctly rounded sqrt, and
//    within the sqrt's effect of ATen's own path: ATen's CPU sqrt (MKL) is not correctly rounded
//    (1 ulp), which moves the update by ~2^-22 relative and the rounded parameter by <= 1 ulp per
//    step.
#include <ATen/ATen.h>
#include <ATen/Version.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "trainer/optim.h"
#include "trainer/param_store.h"

using namespace sf::trainer;

namespace {

// Restores the CPU dispatch of the optimiser when a scope ends.
struct CpuPath {
  explicit CpuPath(bool fused) : before(set_optim_cpu_path(fused)) {}
  ~CpuPath() { set_optim_cpu_path(before); }
  std::optional<bool> before;
};

const std::vector<std::vector<int64_t>> kShapes = {{1}, {3}, {0}, {7, 5}, {33, 17}, {4, 3, 3, 3}, {70001}};

// Parameters of odd sizes (p0..p6), one frozen, one that never gets a gradient, one buffer.
ParamStore make_store(uint64_t seed, at::ScalarType dtype) {
  ParamStore s;
  auto g = at::detail::createCPUGenerator(seed);
  for (size_t i = 0; i < kShapes.size(); ++i) s.param("p" + std::to_string(i), at::randn(kShapes[i], g).to(dtype));
  s.param("frozen", at::randn({5}, g).to(dtype), false);
  s.param("nograd", at::randn({6}, g).to(dtype));
  s.buffer("buf", at::randn({9}, g).to(dtype));
  return s;
}

// Gradients of step `k`: p1 has none at steps 0 and 2 (its step count lags); NaN/+-inf in some.
std::map<std::string, at::Tensor> make_grads(int k, at::ScalarType dtype) {
  std::map<std::string, at::Tensor> out;
  auto g = at::detail::createCPUGenerator(1000 + k);
  for (size_t i = 0; i < kShapes.size(); ++i) {
    if (i == 1 && (k == 0 || k == 2)) continue;
    at::Tensor t = at::randn(kShapes[i], g) * (k % 2 ? 0.01 : 3.0);
    if (t.numel() >= 3 && k % 2 == 0) {
      t.view(-1)[0] = std::numeric_limits<float>::quiet_NaN();
      t.view(-1)[1] = std::numeric_limits<float>::infinity();
      t.view(-1)[2] = -std::numeric_limits<float>::infinity();
    }
    out["p" + std::to_string(i)] = t.to(dtype);
  }
  return out;
}

void set_grads(const ParamStore& s, const std::map<std::string, at::Tensor>& grads) {
  for (const auto& e : s.entries()) {
    if (e.is_buffer || !e.trainable) continue;
    auto it = grads.find(e.name);
    e.tensor.mutable_grad() = it == grads.end() ? at::Tensor() : it->second.clone();
  }
}

// ATen's kernels for this CPU ("DEFAULT", "AVX2", "AVX512", ...): all but DEFAULT use fma.
bool aten_uses_fma() { return at::get_cpu_capability() != "DEFAULT"; }

// Float tensors: bitwise equal, or (allow_ulp) at most one float ulp apart.
void expect_same_bits(const at::Tensor& a, const at::Tensor& b, bool allow_ulp, const std::string& what) {
  ASSERT_TRUE(a.sizes().equals(b.sizes())) << what;
  ASSERT_EQ(a.scalar_type(), b.scalar_type()) << what;
  if (a.numel() == 0) return;
  if (!allow_ulp) {
    EXPECT_EQ(std::memcmp(a.contiguous().data_ptr(), b.contiguous().data_ptr(), a.nbytes()), 0)
        << what << ": not the same bits, max |diff| " << (a - b).abs().max().item<double>();
    return;
  }
  at::Tensor bound = at::nextafter(b.abs(), at::full({}, INFINITY, b.options())) - b.abs();
  EXPECT_TRUE(((a - b).abs() <= bound).all().item<bool>()) << what;
}

at::Tensor grad_of(const ParamStore& s, const std::string& n) { return s.at(n).grad(); }

std::map<std::string, at::Tensor> states(const Adam& a) {
  std::map<std::string, at::Tensor> out;
  for (const auto& [k, t] : a.state_tensors()) out[k] = t;
  return out;
}

}  // namespace

// Sanitize + Adam, fused against ATen, several steps, betas on both sides of ATen's lerp switch.
TEST(OptimFused, AdamMatchesAtenPath) {
  const bool fma = aten_uses_fma();
  const std::vector<Adam::Options> opts = {{0.002, 0.0, 0.99, 1e-8}, {0.001, 0.9, 0.999, 1e-8}, {0.01, 0.3, 0.9, 1e-6}};
  for (size_t oi = 0; oi < opts.size(); ++oi) {
    const Adam::Options& o = opts[oi];
    ParamStore fs = make_store(7, at::kFloat), as = make_store(7, at::kFloat);
    Adam fused(fs, o), aten(as, o);
    std::map<std::string, int64_t> steps;
    double max_update = 0;
    for (int k = 0; k < 6; ++k) {
      const std::string at_step = "options " + std::to_string(oi) + " step " + std::to_string(k) + " ";
      const auto grads = make_grads(k, at::kFloat);
      set_grads(fs, grads);
      set_grads(as, grads);
      std::map<std::string, at::Tensor> before;
      for (const auto& e : fs.entries()) before[e.name] = e.tensor.detach().clone();
      {
        CpuPath p(true);
        sanitize_gradients(fs);
        fused.step();
      }
      {
        CpuPath p(false);
        sanitize_gradients(as);
        aten.step();
      }
      for (const auto& [n, g] : grads) {
        expect_same_bits(grad_of(fs, n), grad_of(as, n), false, at_step + n + " sanitized grad");
        ASSERT_FALSE(grad_of(fs, n).isnan().any().item<bool>());
        steps[n] += 1;
      }
      const auto sf = states(fused), sa = states(aten);
      ASSERT_EQ(sf.size(), sa.size());
      for (const auto& [key, t] : sf) {
        ASSERT_TRUE(sa.count(key)) << key;
        if (key.size() > 5 && key.substr(key.size() - 5) == "/step")
          EXPECT_EQ(t.item<int64_t>(), sa.at(key).item<int64_t>()) << key;
        else
          expect_same_bits(t, sa.at(key), !fma, at_step + key);
      }
      // Parameters: ATen's op sequence with a correctly rounded sqrt gives the fused bits.
      for (const auto& [n, g] : grads) {
        const int64_t st = sf.at(n + "/step").item<int64_t>();
        ASSERT_EQ(st, steps[n]) << n;
        const double bc1 = 1 - std::pow(o.beta1, static_cast<double>(st));
        const double bc2s = std::pow(1 - std::pow(o.beta2, static_cast<double>(st)), 0.5);
        at::Tensor v = sf.at(n + "/exp_avg_sq");
        at::Tensor denom = (v.to(at::kDouble).sqrt().to(at::kFloat) / bc2s).add_(o.eps);
        at::Tensor expect = before.at(n).addcdiv(sf.at(n + "/exp_avg"), denom, -(o.lr / bc1));
        expect_same_bits(fs.at(n).detach(), expect, !fma, at_step + n + " param vs exact-sqrt ATen ops");
        const at::Tensor pa = as.at(n).detach();
        if (pa.numel() == 0) continue;
        max_update = std::max(max_update, (pa - before.at(n)).abs().max().item<double>());
        // Up to k+1 steps of (1 ulp of the parameter + 2^-21 of the largest update).
        const double ulp = std::ldexp(std::max(1.0, pa.abs().max().item<double>()), -23);
        const double tol = (k + 1) * (ulp + std::ldexp(max_update, -21));
        EXPECT_LE((fs.at(n).detach() - pa).abs().max().item<double>(), tol) << at_step << n << " vs ATen path";
      }
      // Untouched: the frozen parameter, the one without gradient, the buffer.
      for (const char* n : {"frozen", "nograd", "buf"}) EXPECT_TRUE(at::equal(fs.at(n), before.at(n))) << n;
      EXPECT_FALSE(sf.count("nograd/exp_avg"));
    }
  }
}

// Adam in float32 and float64 (both paths) against torch.optim.Adam's update written out here in
// float64: m = lerp(m, g, 1 - b1); v = b2 v + (1 - b2) g^2; p -= lr / bc1 * m / (sqrt(v) / sqrt(bc2) + eps).
// Tolerances: float64 tensors 1e-13 relative to max(1, |x|) (a few ulps over 8 steps); float32
// tensors 8 steps of 2 float ulps of max(1, |x|) for parameters, 1e-5 relative for the moments.
TEST(OptimFused, AdamMatchesTorchFormulaInFloat64) {
  const Adam::Options o{0.003, 0.5, 0.99, 1e-8};
  const int kSteps = 8;
  for (at::ScalarType dtype : {at::kFloat, at::kDouble}) {
    for (bool fused : {true, false}) {
      CpuPath path(fused);
      ParamStore s;
      auto gen = at::detail::createCPUGenerator(3);
      at::Tensor p0 = at::randn({257}, gen, at::kDouble);
      s.param("w", p0.clone().to(dtype));  // p0 stays the start values
      Adam adam(s, o);
      std::vector<double> p(p0.data_ptr<double>(), p0.data_ptr<double>() + p0.numel()), m(p.size(), 0), v(p.size(), 0);
      for (int k = 1; k <= kSteps; ++k) {
        at::Tensor g = at::randn({257}, gen, at::kDouble) * (k % 3 == 0 ? 1e-3 : 1.0);
        g = g.to(dtype).to(at::kDouble);  // the float32 run sees rounded gradients
        s.at("w").mutable_grad() = g.to(dtype);
        adam.step();
        const double bc1 = 1 - std::pow(o.beta1, k), bc2 = 1 - std::pow(o.beta2, k);
        const double* gp = g.data_ptr<double>();
        for (size_t i = 0; i < p.size(); ++i) {
          m[i] = m[i] + (1 - o.beta1) * (gp[i] - m[i]);
          v[i] = o.beta2 * v[i] + (1 - o.beta2) * gp[i] * gp[i];
          p[i] -= o.lr / bc1 * m[i] / (std::sqrt(v[i]) / std::sqrt(bc2) + o.eps);
        }
      }
      auto st = states(adam);
      const at::Tensor ours_p = s.at("w").detach().to(at::kDouble), ours_m = st.at("w/exp_avg").to(at::kDouble),
                       ours_v = st.at("w/exp_avg_sq").to(at::kDouble);
      const bool f32 = dtype == at::kFloat;
      for (size_t i = 0; i < p.size(); ++i) {
        const double pt = f32 ? kSteps * 2 * std::ldexp(std::max(1.0, std::abs(p[i])), -23)
                              : 1e-13 * std::max(1.0, std::abs(p[i]));
        const double rel = f32 ? 1e-5 : 1e-13;
        ASSERT_NEAR(ours_p[i].item<double>(), p[i], pt) << (f32 ? "float32" : "float64") << " fused=" << fused << " i=" << i;
        ASSERT_NEAR(ours_m[i].item<double>(), m[i], rel * std::max(1.0, std::abs(m[i]))) << i;
        ASSERT_NEAR(ours_v[i].item<double>(), v[i], rel * std::max(1.0, std::abs(v[i]))) << i;
      }
      EXPECT_EQ(st.at("w/step").item<int64_t>(), kSteps);
      // Not vacuous: the parameters moved by much more than the tolerance.
      EXPECT_GT((ours_p - p0).abs().max().item<double>(), 1e-3);
    }
  }
}

// G_ema update, fused against ATen, betas on both sides of the lerp switch; buffers are copied.
TEST(OptimFused, EmaMatchesAtenPath) {
  const bool fma = aten_uses_fma();
  for (at::ScalarType dtype : {at::kFloat, at::kDouble}) {
    for (double beta : {0.999, 0.7, 0.5, 0.3, 0.0}) {
      ParamStore src = make_store(11, dtype), fe = make_store(12, dtype), ae = make_store(12, dtype);
      {
        CpuPath p(true);
        update_ema(fe, src, beta);
      }
      {
        CpuPath p(false);
        update_ema(ae, src, beta);
      }
      for (size_t i = 0; i < fe.entries().size(); ++i) {
        const auto& e = fe.entries()[i];
        expect_same_bits(e.tensor.detach(), ae.entries()[i].tensor.detach(), !fma && !e.is_buffer,
                         e.name + " beta " + std::to_string(beta));
      }
      EXPECT_TRUE(at::equal(fe.at("buf"), src.at("buf")));
      if (beta == 0.0) EXPECT_TRUE(at::equal(fe.at("p4"), src.at("p4")));
    }
  }
}

// nan_to_num: NaN -> 0, +-inf -> +-1e5, everything else (incl. -0, subnormals, 3.4e38) unchanged.
TEST(OptimFused, NanToNumMatchesAten) {
  for (at::ScalarType dtype : {at::kFloat, at::kDouble}) {
    ParamStore fs = make_store(5, dtype), as = make_store(5, dtype);
    auto g = at::detail::createCPUGenerator(9);
    std::map<std::string, at::Tensor> grads;
    for (size_t i = 0; i < kShapes.size(); ++i) {
      at::Tensor t = at::randn(kShapes[i], g, at::kDouble);
      const int64_t n = t.numel();
      const double specials[] = {NAN, INFINITY, -INFINITY, -0.0, 1e-40, 3.4e38, -1e6, 1e5};
      for (int64_t j = 0; j < n; j += 3) t.view(-1)[j] = specials[(j / 3) % 8];
      grads["p" + std::to_string(i)] = t.to(dtype);
    }
    set_grads(fs, grads);
    set_grads(as, grads);
    {
      CpuPath p(true);
      sanitize_gradients(fs);
    }
    {
      CpuPath p(false);
      sanitize_gradients(as);
    }
    for (const auto& [n, t] : grads) {
      expect_same_bits(grad_of(fs, n), grad_of(as, n), false, n);
      at::Tensor want = at::nan_to_num(t, 0.0, 1e5, -1e5);
      expect_same_bits(grad_of(fs, n), want, false, n + " vs at::nan_to_num");
      if (t.numel() >= 7) {
        EXPECT_EQ(grad_of(fs, n).view(-1)[0].item<double>(), 0.0);
        EXPECT_EQ(grad_of(fs, n).view(-1)[3].item<double>(), 1e5);
        EXPECT_EQ(grad_of(fs, n).view(-1)[6].item<double>(), -1e5);
      }
    }
  }
}

// CPU defaults (Adam and EMA fused, nan_to_num ATen); the setter forces all three and restores.
TEST(OptimFused, CpuDefaultsAndSetter) {
  ASSERT_FALSE(set_optim_cpu_path(std::nullopt).has_value());  // no test leaves a forced path behind
  EXPECT_TRUE(optim_fused(false, OptimOp::Adam));
  EXPECT_TRUE(optim_fused(false, OptimOp::Ema));
  EXPECT_FALSE(optim_fused(false, OptimOp::NanToNum));
  {
    CpuPath p(false);
    for (OptimOp op : {OptimOp::Adam, OptimOp::Ema, OptimOp::NanToNum}) EXPECT_FALSE(optim_fused(false, op));
  }
  {
    CpuPath p(true);
    for (OptimOp op : {OptimOp::Adam, OptimOp::Ema, OptimOp::NanToNum}) EXPECT_TRUE(optim_fused(false, op));
  }
  EXPECT_FALSE(set_optim_cpu_path(std::nullopt).has_value());
  EXPECT_TRUE(optim_fused(false, OptimOp::Adam));
  EXPECT_FALSE(optim_fused(false, OptimOp::NanToNum));
}
