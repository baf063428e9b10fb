#include "metrics/stats.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <numeric>
#include <stdexcept>

#include "data/h5.h"
#include "sharding/sampler.h"
#include "trainer/tensor_io.h"

namespace sf::metrics {

FeatureStats::FeatureStats(bool capture_all, bool capture_mean_cov, int64_t max_items)
    : capture_all_(capture_all), capture_mean_cov_(capture_mean_cov), max_items_(max_items) {}

void FeatureStats::append(const at::Tensor& x_in) {
  if (x_in.dim() != 2) throw std::invalid_argument("FeatureStats: features must be [N, F]");
  at::Tensor x = x_in.detach().to(at::kCPU).to(at::kFloat).contiguous();
  if (max_items_ >= 0 && num_items_ + x.size(0) > max_items_) {
    if (num_items_ >= max_items_) return;
    x = x.slice(0, 0, max_items_ - num_items_).contiguous();
  }
  if (num_features_ < 0) {
    num_features_ = x.size(1);
    if (capture_mean_cov_) {
      raw_mean_ = at::zeros({num_features_}, at::kDouble);
      raw_cov_ = at::zeros({num_features_, num_features_}, at::kDouble);
    }
  } else if (x.size(1) != num_features_) {
    throw std::invalid_argument("FeatureStats: " + std::to_string(x.size(1)) + " features, expected " +
                                std::to_string(num_features_));
  }
  num_items_ += x.size(0);
  if (capture_all_) chunks_.push_back(x.clone());
  if (capture_mean_cov_) {
    at::Tensor x64 = x.to(at::kDouble);
    raw_mean_ += x64.sum(0);
    raw_cov_ += at::matmul(x64.t(), x64);
  }
}

at::Tensor FeatureStats::all() const {
  if (!capture_all_) throw std::logic_error("FeatureStats: features were not captured");
  if (chunks_.empty()) return at::zeros({0, std::max<int64_t>(num_features_, 0)}, at::kFloat);
  return at::cat(chunks_, 0);
}

std::pair<at::Tensor, at::Tensor> FeatureStats::mean_cov() const {
  if (!capture_mean_cov_) throw std::logic_error("FeatureStats: mean and covariance were not captured");
  if (num_items_ == 0) throw std::runtime_error("FeatureStats: no items");
  at::Tensor mean = raw_mean_ / static_cast<double>(num_items_);
  at::Tensor cov = raw_cov_ / static_cast<double>(num_items_);
  cov = cov - at::outer(mean, mean);
  return {mean, cov};
}

void FeatureStats::save(const std::string& path, const std::string& meta) const {
  std::lock_guard<std::recursive_mutex> lock(h5::global_mutex());
  h5::Handle f = h5::create_file(path, /*overwrite=*/true);
  h5::write_int_attr(f, "num_items", num_items_);
  h5::write_int_attr(f, "num_features", num_features_);
  h5::write_int_attr(f, "max_items", max_items_);
  h5::write_int_attr(f, "capture_all", capture_all_ ? 1 : 0);
  h5::write_int_attr(f, "capture_mean_cov", capture_mean_cov_ ? 1 : 0);
  h5::write_string_attr(f, "meta", meta);
  if (capture_mean_cov_ && num_features_ >= 0) {
    trainer::write_tensor(f, "raw_mean", raw_mean_);
    trainer::write_tensor(f, "raw_cov", raw_cov_);
  }
  if (capture_all_ && num_features_ >= 0) trainer::write_tensor(f, "features", all());
  h5::flush(f);
}

FeatureStats FeatureStats::load(const std::string& path, std::string* meta) {
  std::lock_guard<std::recursive_mutex> lock(h5::global_mutex());
  h5::Handle f = h5::open_file(path);
  if (meta) *meta = h5::has_attr(f, "meta") ? h5::read_string_attr(f, "meta") : std::string();
  FeatureStats s(h5::read_int_attr(f, "capture_all") != 0, h5::read_int_attr(f, "capture_mean_cov") != 0,
                 h5::read_int_attr(f, "max_items"));
  s.num_items_ = h5::read_int_attr(f, "num_items");
  s.num_features_ = h5::read_int_attr(f, "num_features");
  if (s.num_features_ < 0) return s;
  if (s.capture_mean_cov_) {
    s.raw_mean_ = trainer::read_tensor(f, "raw_mean", at::kDouble);
    s.raw_cov_ = trainer::read_tensor(f, "raw_cov", at::kDouble);
    if (s.raw_mean_.numel() != s.num_features_ || s.raw_cov_.numel() != s.num_features_ * s.num_features_)
      throw std::runtime_error(path + ": raw_mean/raw_cov do not match num_features");
  }
  if (s.capture_all_) {
    at::Tensor all = trainer::read_tensor(f, "features", at::kFloat);
    if (all.dim() != 2 || all.size(0) != s.num_items_ || all.size(1) != s.num_features_)
      throw std::runtime_error(path + ": features do not match num_items/num_features");
    s.chunks_.push_back(all);
  }
  return s;
}

at::Tensor sqrtm_psd(const at::Tensor& a) {
  at::Tensor s = a.to(at::kDouble);
  s = (s + s.t()) * 0.5;  // exactly symmetric for the eigen-solver
  auto [w, v] = at::linalg_eigh(s);
  return at::matmul(v * w.clamp_min(0).sqrt().unsqueeze(0), v.t());
}

double trace_sqrtm_product(const at::Tensor& s1, const at::Tensor& s2) {
  at::Tensor r = sqrtm_psd(s1);
  at::Tensor m = at::matmul(at::matmul(r, s2.to(at::kDouble)), r);
  m = (m + m.t()) * 0.5;
  at::Tensor w = at::linalg_eigvalsh(m);
  return w.clamp_min(0).sqrt().sum().item<double>();
}

double fid(const at::Tensor& mu1, const at::Tensor& sigma1, const at::Tensor& mu2, const at::Tensor& sigma2) {
  at::Tensor d = mu1.to(at::kDouble) - mu2.to(at::kDouble);
  double m = (d * d).sum().item<double>();
  double tr = sigma1.to(at::kDouble).trace().item<double>() + sigma2.to(at::kDouble).trace().item<double>();
  return m + tr - 2 * trace_sqrtm_product(sigma1, sigma2);
}

namespace {

// numpy's legacy RandomState.choice(n, m, replace=False): the first m entries of permutation(n).
at::Tensor choice_without_replacement(sharding::NumpyRandomState& rs, int64_t n, int64_t m) {
  std::vector<int64_t> perm(static_cast<size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  rs.shuffle(perm);
  return at::from_blob(perm.data(), {m}, at::kLong).clone();
}

}  // namespace

double kid(const at::Tensor& gen_features, const at::Tensor& real_features, int num_subsets, int64_t max_subset_size,
           uint32_t seed) {
  if (gen_features.dim() != 2 || real_features.dim() != 2 || gen_features.size(1) != real_features.size(1))
    throw std::invalid_argument("kid: feature matrices must be [N, F] with the same F");
  const double n = static_cast<double>(real_features.size(1));
  const int64_t m = std::min({real_features.size(0), gen_features.size(0), max_subset_size});
  if (m < 2) throw std::invalid_argument("kid: needs at least 2 items per subset");
  if (num_subsets < 1) throw std::invalid_argument("kid: needs at least one subset");
  sharding::NumpyRandomState rs(seed);
  at::Tensor g64 = gen_features.to(at::kDouble), r64 = real_features.to(at::kDouble);
  double t = 0;
  for (int s = 0; s < num_subsets; ++s) {
    at::Tensor x = g64.index_select(0, choice_without_replacement(rs, gen_features.size(0), m));
    at::Tensor y = r64.index_select(0, choice_without_replacement(rs, real_features.size(0), m));
    at::Tensor a = (at::matmul(x, x.t()) / n + 1).pow(3) + (at::matmul(y, y.t()) / n + 1).pow(3);
    at::Tensor b = (at::matmul(x, y.t()) / n + 1).pow(3);
    double off_diag = a.sum().item<double>() - a.diagonal().sum().item<double>();
    t += off_diag / static_cast<double>(m - 1) - b.sum().item<double>() * 2 / static_cast<double>(m);
  }
  return t / num_subsets / static_cast<double>(m);
}

namespace {

// Squared Euclidean distances [rows, cols] in float64: |a|² + |b|² − 2 a·b through a matrix
// product (float32 features in float64 arithmetic: the cancellation error, ~1e-16 |a|², is far
// below the features' own precision), clamped at 0.
at::Tensor squared_distances(const at::Tensor& rows, const at::Tensor& cols) {
  const at::Tensor rn = rows.square().sum(1, /*keepdim=*/true), cn = cols.square().sum(1).unsqueeze(0);
  return (rn + cn - 2.0 * at::mm(rows, cols.t())).clamp_min(0.0);
}

// Fraction of probes within the k-NN radius of at least one manifold point.
double coverage(const at::Tensor& manifold, const at::Tensor& probes, int k) {
  const int64_t n = manifold.size(0);
  // Row batches whose distance block stays near 64 MB.
  const int64_t rows = std::max<int64_t>(1, std::min<int64_t>(10000, (int64_t{8} << 20) / std::max<int64_t>(1, n)));
  std::vector<at::Tensor> radius;
  for (int64_t r = 0; r < n; r += rows) {
    at::Tensor d = squared_distances(manifold.slice(0, r, std::min(n, r + rows)), manifold);
    radius.push_back(std::get<0>(d.kthvalue(k + 1, 1)));
  }
  const at::Tensor kth = at::cat(radius);  // squared radii [n]
  int64_t inside = 0;
  for (int64_t r = 0; r < probes.size(0); r += rows) {
    at::Tensor d = squared_distances(probes.slice(0, r, std::min(probes.size(0), r + rows)), manifold);
    inside += d.le(kth.unsqueeze(0)).any(1).sum().item<int64_t>();
  }
  return probes.size(0) ? static_cast<double>(inside) / static_cast<double>(probes.size(0)) : std::nan("");
}

}  // namespace

std::pair<double, double> precision_recall(const at::Tensor& real_features, const at::Tensor& gen_features, int k) {
  if (real_features.dim() != 2 || gen_features.dim() != 2 || real_features.size(1) != gen_features.size(1))
    throw std::invalid_argument("precision_recall: features must be [N, F] with the same F");
  if (k < 1 || real_features.size(0) <= k || gen_features.size(0) <= k)
    throw std::invalid_argument("precision_recall: needs more than k = " + std::to_string(k) + " real and generated images (have " +
                                std::to_string(real_features.size(0)) + " and " + std::to_string(gen_features.size(0)) + ")");
  const at::Tensor real = real_features.to(at::kDouble).contiguous(), gen = gen_features.to(at::kDouble).contiguous();
  return {coverage(real, gen, k), coverage(gen, real, k)};
}

}  // namespace sf::metrics
