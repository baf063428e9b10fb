// Feature statistics and the distances computed from them: FID, KID, precision/recall.
//
// FeatureStats accumulates detector features as the reference's FeatureStats does: the sum and the
// sum of outer products in float64 (population covariance: cov = E[x xᵀ] − μ μᵀ) and, when asked,
// every feature row (float32) for KID. It stops accepting rows at max_items.
//
// fid() is ‖μ₁ − μ₂‖² + tr(Σ₁ + Σ₂ − 2 sqrtm(Σ₁ Σ₂)). For symmetric positive semi-definite Σ₁, Σ₂
// the eigenvalues of Σ₁ Σ₂ are those of the symmetric matrix √Σ₁ Σ₂ √Σ₁, so the trace of the square
// root is computed from two symmetric eigen-decompositions in float64 (eigenvalues that rounding
// pushes below zero count as zero, which is what the real part of the reference's complex
// scipy.linalg.sqrtm result gives).
//
// kid() is the unbiased MMD² with the cubic polynomial kernel k(x, y) = (xᵀy / d + 1)³, averaged
// over subsets drawn without replacement with numpy's legacy RandomState.choice (a permutation's
// prefix), generated rows first, then real rows, for each subset — the reference's order of draws.
//
// Not thread-safe (one FeatureStats per producer); the free functions are pure.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace sf::metrics {

class FeatureStats {
 public:
  FeatureStats(bool capture_all, bool capture_mean_cov, int64_t max_items = -1);

  // Appends rows of x ([N, F], any floating type; converted to float32 first as the reference
  // does). Rows beyond max_items are dropped.
  void append(const at::Tensor& x);
  bool is_full() const { return max_items_ >= 0 && num_items_ >= max_items_; }
  int64_t num_items() const { return num_items_; }
  int64_t num_features() const { return num_features_; }
  int64_t max_items() const { return max_items_; }
  bool captures_all() const { return capture_all_; }
  bool captures_mean_cov() const { return capture_mean_cov_; }

  // [N, F] float32 (throws unless capture_all).
  at::Tensor all() const;
  // Mean [F] and population covariance [F, F], both float64 (throws unless capture_mean_cov).
  std::pair<at::Tensor, at::Tensor> mean_cov() const;

  // HDF5 file with raw_mean, raw_cov (float64), num_items and, when captured, features; `meta`
  // (free text, e.g. the cache key) is stored as an attribute and returned by load().
  void save(const std::string& path, const std::string& meta = "") const;
  static FeatureStats load(const std::string& path, std::string* meta = nullptr);

 private:
  bool capture_all_, capture_mean_cov_;
  int64_t max_items_;
  int64_t num_items_ = 0, num_features_ = -1;
  std::vector<at::Tensor> chunks_;  // float32 rows (capture_all)
  at::Tensor raw_mean_, raw_cov_;    // float64 sums (capture_mean_cov)
};

// Square root of a symmetric positive semi-definite matrix (float64), through its eigen-decomposition.
at::Tensor sqrtm_psd(const at::Tensor& a);
// tr(sqrtm(s1 @ s2)) for symmetric PSD s1, s2 (float64).
double trace_sqrtm_product(const at::Tensor& s1, const at::Tensor& s2);

double fid(const at::Tensor& mu1, const at::Tensor& sigma1, const at::Tensor& mu2, const at::Tensor& sigma2);

// gen_features [Ng, F], real_features [Nr, F]; subsets of size min(Ng, Nr, max_subset_size).
double kid(const at::Tensor& gen_features, const at::Tensor& real_features, int num_subsets, int64_t max_subset_size,
           uint32_t seed);

// Improved precision and recall (Kynkäänniemi et al. 2019), the reference's pr<N>k3 definition:
// the k-NN radius of a manifold point is its distance to the k-th nearest other point of the same
// set (the (k+1)-th smallest distance, the point itself included); a probe is inside the manifold
// when its distance to at least one manifold point is at most that point's radius. precision =
// fraction of generated probes inside the real manifold, recall = fraction of real probes inside
// the generated manifold. Euclidean distances in float64 (the reference uses float16 on GPUs), in
// row batches on the features' device. Returns {precision, recall}.
std::pair<double, double> precision_recall(const at::Tensor& real_features, const at::Tensor& gen_features, int k);

}  // namespace sf::metrics
