// Feature-space maps (torch-free header): 2-D embeddings of detector features of real and
// generated images by PCA and by exact t-SNE, their CSV files and scatter plots, and
// `styleforge embed`.
//
// PCA: the centred features' singular value decomposition; coordinates are the projections on
// the first two right singular vectors (each signed so that its largest-magnitude loading is
// positive), as scikit-learn's PCA up to the sign of each axis.
//
// t-SNE (van der Maaten and Hinton 2008), exact and O(N^2) in time and memory: squared Euclidean
// distances; per point a Gaussian whose precision is found by bisection so that the row entropy
// (natural log) is log(perplexity); P symmetrised and normalised; Student-t (one degree of
// freedom) similarities Q; gradient descent with gains (+0.2 / x0.8, at least 0.01), momentum 0.5
// during `exaggeration_iters` iterations with P multiplied by `exaggeration`, then 0.8 (update
// and gains restart at the switch); stops early when the gradient norm falls below 1e-7.
// Learning rate "auto" is max(N / exaggeration / 4, 50). Init "pca" takes the PCA coordinates
// scaled so that the first axis has standard deviation 1e-4; "random" draws N(0, 1e-4^2) from
// the seed. Runs in float64 on the CPU. At most kTsneMaxPoints points (N^2 float64 matrices: at
// 5000 points each is 200 MB and a handful are alive at once); use PCA beyond that.
//
// Determinism: the same features, options and LibTorch thread count give the same coordinates.
// Thread-safety: the functions hold no global state; LibTorch's thread pool is shared.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/image.h"

namespace sf::metrics {

inline constexpr int64_t kTsneMaxPoints = 5000;

// Row-major matrix of float64 features: rows x cols.
struct FeatureMatrix {
  int64_t rows = 0, cols = 0;
  std::vector<double> data;
  double at(int64_t r, int64_t c) const { return data[static_cast<size_t>(r * cols + c)]; }
};

// Row-major N x 2 coordinates.
struct Embedding {
  int64_t rows = 0;
  std::vector<double> xy;
  std::vector<double> explained_variance_ratio;  // PCA only: of each of the two axes
  double kl_divergence = 0;                      // t-SNE only: KL(P || Q) at the end
  int iterations = 0;                            // t-SNE only: iterations run
};

// Throws std::invalid_argument when there are fewer than 2 rows or no columns.
Embedding pca_2d(const FeatureMatrix& x);

struct TsneOptions {
  double perplexity = 30;
  int iterations = 1000;          // in total, exaggeration included
  int exaggeration_iters = 250;
  double exaggeration = 12;
  double learning_rate = 0;       // <= 0: "auto"
  std::string init = "pca";       // pca | random
  uint64_t seed = 0;              // random init
  // Called every 50 iterations with the iteration count and KL(P || Q) (exaggerated P early on).
  std::function<void(int iteration, double kl)> progress;
};

// Throws std::invalid_argument for bad options, fewer than 2 or more than kTsneMaxPoints rows, or
// a perplexity not below the number of rows.
Embedding tsne_2d(const FeatureMatrix& x, const TsneOptions& o);

// The calibrated conditional probabilities p_{j|i} (row-major N x N, rows sum to 1, zero
// diagonal) of squared Euclidean distances, and each row's Gaussian precision beta_i.
std::vector<double> tsne_conditional_p(const FeatureMatrix& x, double perplexity, std::vector<double>* betas = nullptr);

// One point of a map.
struct EmbedPoint {
  std::string source;  // "real" or "synthetic"
  int64_t cls = -1;    // class index, -1 when unknown (unlabelled pack or unconditional generator)
};

// CSV with header `id,source,class,x,y` (class empty when unknown). Throws naming the file.
void write_embedding_csv(const std::string& path, const std::vector<EmbedPoint>& points, const Embedding& e);

// Scatter plot: colour by source, marker shape by class (circle, square, diamond, triangle,
// cycled), a legend, a title line, no axes. class_names may be empty or shorter than the classes.
data::Image render_embedding(const std::vector<EmbedPoint>& points, const Embedding& e, const std::string& title,
                             const std::vector<std::string>& class_names, int size = 800);

// `styleforge embed`.
struct EmbedCommandOptions {
  std::string reals;        // dataset pack
  std::string network;      // checkpoint (or reference .pkl); its G_ema generates
  std::string detector;     // TorchScript feature detector (empty: as `metrics` finds it)
  std::string cache_dir;    // empty: trainer::default_cache_dir()
  std::string dest;         // output folder (created)
  int64_t count = 0;        // reals and generated images each
  std::vector<std::string> methods = {"pca", "tsne"};
  std::string cls = "all";  // all | class index | class name
  TsneOptions tsne;
  uint32_t seed = 0;        // real subset, z, labels, noise, t-SNE random init
  double truncation_psi = 1;
  int batch = 64, batch_gen = 4, threads = 0, size = 800;
  std::string device = "auto";
  bool save_features = false;  // also write features.csv (source, class, f0..)
  std::function<void(const std::string& line)> log;
};
// Returns 0; throws std::invalid_argument (bad option, message names the flag) or
// std::runtime_error (unreadable file, message names it).
int run_embed_command(const EmbedCommandOptions& o);

}  // namespace sf::metrics
