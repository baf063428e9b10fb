// Feature-space maps (metrics/embed.h): t-SNE's perplexity calibration, determinism, cluster
// separation, argument checks, CSV and PNG output, and the comparison with scikit-learn's PCA,
// TSNE and trustworthiness (tests/tsne_check.py).
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "metrics/embed.h"
#include "metrics/report_plot.h"
#include "tests/test_data_util.h"

using namespace sf;
using metrics::FeatureMatrix;

namespace {

// `per` points around each of `k` centres in `dim` dimensions; cluster c has spread 1 + c/2.
FeatureMatrix clusters(int k, int per, int dim, uint32_t seed, std::vector<int>* labels = nullptr) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> nd(0, 1);
  std::vector<std::vector<double>> centres(static_cast<size_t>(k), std::vector<double>(static_cast<size_t>(dim)));
  for (auto& c : centres)
    for (auto& v : c) v = 4 * nd(rng);
  FeatureMatrix x;
  x.rows = static_cast<int64_t>(k) * per;
  x.cols = dim;
  for (int c = 0; c < k; ++c)
    for (int i = 0; i < per; ++i) {
      for (int d = 0; d < dim; ++d) x.data.push_back(centres[static_cast<size_t>(c)][static_cast<size_t>(d)] + (1 + c / 2.0) * nd(rng));
      if (labels) labels->push_back(c);
    }
  return x;
}

// Share of points whose nearest other point in the 2-D map has the same label.
double nn_agreement(const metrics::Embedding& e, const std::vector<int>& labels) {
  int same = 0;
  for (int64_t i = 0; i < e.rows; ++i) {
    double best = 1e300;
    int64_t arg = -1;
    for (int64_t j = 0; j < e.rows; ++j) {
      if (j == i) continue;
      const double dx = e.xy[2 * i] - e.xy[2 * j], dy = e.xy[2 * i + 1] - e.xy[2 * j + 1];
      if (dx * dx + dy * dy < best) best = dx * dx + dy * dy, arg = j;
    }
    same += labels[static_cast<size_t>(i)] == labels[static_cast<size_t>(arg)];
  }
  return static_cast<double>(same) / static_cast<double>(e.rows);
}

std::string python() {
  auto r = test::run_shell("bash " STYLEFORGE_SOURCE_DIR "/scripts/torch-env.sh");
  std::string p = r.out;
  while (!p.empty() && (p.back() == '\n' || p.back() == ' ')) p.pop_back();
  if (p.find('\n') != std::string::npos) p = p.substr(p.rfind('\n') + 1);
  return r.rc == 0 ? p : std::string();
}

void write_features(const std::string& path, const FeatureMatrix& x) {
  std::ofstream out(path);
  out << "id,source,class";
  for (int64_t j = 0; j < x.cols; ++j) out << ",f" << j;
  out << "\n";
  char buf[40];
  for (int64_t i = 0; i < x.rows; ++i) {
    out << i << ",real,";
    for (int64_t j = 0; j < x.cols; ++j) {
      std::snprintf(buf, sizeof buf, ",%.17g", x.at(i, j));
      out << buf;
    }
    out << "\n";
  }
}

std::vector<metrics::EmbedPoint> real_points(int64_t n) {
  return std::vector<metrics::EmbedPoint>(static_cast<size_t>(n), metrics::EmbedPoint{"real", -1});
}

// One LibTorch thread for the scope: the many small N x N operations of t-SNE run several times
// faster on one thread than on two contended ones.
struct OneThread {
  int old = at::get_num_threads();
  OneThread() { at::set_num_threads(1); }
  ~OneThread() { at::set_num_threads(old); }
};

}  // namespace

TEST(Embed, PerplexityCalibration) {
  FeatureMatrix x = clusters(3, 40, 10, 7);
  for (double perp : {5.0, 30.0}) {
    std::vector<double> beta;
    std::vector<double> p = metrics::tsne_conditional_p(x, perp, &beta);
    ASSERT_EQ(p.size(), static_cast<size_t>(x.rows * x.rows));
    ASSERT_EQ(beta.size(), static_cast<size_t>(x.rows));
    for (int64_t i = 0; i < x.rows; ++i) {
      double sum = 0, h = 0;
      for (int64_t j = 0; j < x.rows; ++j) {
        const double v = p[static_cast<size_t>(i * x.rows + j)];
        sum += v;
        if (v > 0) h -= v * std::log(v);
      }
      EXPECT_EQ(p[static_cast<size_t>(i * x.rows + i)], 0.0) << "row " << i;
      EXPECT_NEAR(sum, 1.0, 1e-12) << "row " << i;
      EXPECT_NEAR(h, std::log(perp), 1e-4) << "perplexity " << perp << ", row " << i;
      EXPECT_GT(beta[static_cast<size_t>(i)], 0);
    }
  }
  // A smaller perplexity needs sharper Gaussians.
  std::vector<double> b5, b30;
  metrics::tsne_conditional_p(x, 5, &b5);
  metrics::tsne_conditional_p(x, 30, &b30);
  for (size_t i = 0; i < b5.size(); ++i) EXPECT_GT(b5[i], b30[i]) << "row " << i;
}

TEST(Embed, CalibrationOfFarApartFeatures) {
  // Distances of 1e4 and more: the row-wise shift keeps exp() in range.
  FeatureMatrix x = clusters(2, 30, 5, 3);
  for (auto& v : x.data) v *= 1e4;
  std::vector<double> p = metrics::tsne_conditional_p(x, 10);
  for (int64_t i = 0; i < x.rows; ++i) {
    double h = 0;
    for (int64_t j = 0; j < x.rows; ++j)
      if (double v = p[static_cast<size_t>(i * x.rows + j)]; v > 0) h -= v * std::log(v);
    EXPECT_NEAR(h, std::log(10.0), 1e-4) << "row " << i;
  }
}

TEST(Embed, TsneIsDeterministicAndSeparatesClusters) {
  OneThread one;
  std::vector<int> labels;
  FeatureMatrix x = clusters(3, 50, 20, 11, &labels);
  metrics::TsneOptions o;
  o.perplexity = 20;
  o.iterations = 400;
  o.init = "random";
  o.seed = 5;
  metrics::Embedding a = metrics::tsne_2d(x, o), b = metrics::tsne_2d(x, o);
  ASSERT_EQ(a.xy.size(), static_cast<size_t>(2 * x.rows));
  EXPECT_EQ(a.xy, b.xy) << "same features and seed, different maps";
  EXPECT_GT(nn_agreement(a, labels), 0.95);
  EXPECT_TRUE(std::isfinite(a.kl_divergence));
  EXPECT_GT(a.kl_divergence, 0);
  o.seed = 6;
  metrics::Embedding c = metrics::tsne_2d(x, o);
  EXPECT_NE(a.xy, c.xy) << "another seed gave the same map";
  o.init = "pca";
  metrics::Embedding d = metrics::tsne_2d(x, o), e = metrics::tsne_2d(x, o);
  EXPECT_EQ(d.xy, e.xy);
  EXPECT_GT(nn_agreement(d, labels), 0.95);
}

TEST(Embed, PcaAxesAndVariance) {
  // Points spread along (3, 4) with a small orthogonal spread. In 2-D the first principal axis
  // is at angle atan2(2 c_xy, c_xx - c_yy) / 2 of the covariance; coordinates are projections.
  FeatureMatrix x;
  x.rows = 50;
  x.cols = 2;
  std::mt19937 rng(1);
  std::normal_distribution<double> nd(0, 1);
  for (int i = 0; i < 50; ++i) {
    const double t = nd(rng) * 10, s = nd(rng) * 0.1;
    x.data.push_back(3 * t / 5 - 4 * s / 5 + 7);
    x.data.push_back(4 * t / 5 + 3 * s / 5 - 2);
  }
  metrics::Embedding e = metrics::pca_2d(x);
  ASSERT_EQ(e.explained_variance_ratio.size(), 2u);
  EXPECT_GT(e.explained_variance_ratio[0], 0.999);
  EXPECT_NEAR(e.explained_variance_ratio[0] + e.explained_variance_ratio[1], 1.0, 1e-12);
  double mx = 0, my = 0;
  for (int i = 0; i < 50; ++i) mx += x.at(i, 0) / 50, my += x.at(i, 1) / 50;
  double cxx = 0, cyy = 0, cxy = 0;
  for (int i = 0; i < 50; ++i) {
    const double dx = x.at(i, 0) - mx, dy = x.at(i, 1) - my;
    cxx += dx * dx, cyy += dy * dy, cxy += dx * dy;
  }
  const double a = std::atan2(2 * cxy, cxx - cyy) / 2;
  double ux = std::cos(a), uy = std::sin(a);
  if (std::abs(ux) >= std::abs(uy) ? ux < 0 : uy < 0) ux = -ux, uy = -uy;  // largest loading positive
  double vx = -uy, vy = ux;  // the second axis, signed the same way
  if (std::abs(vx) >= std::abs(vy) ? vx < 0 : vy < 0) vx = -vx, vy = -vy;
  EXPECT_NEAR(ux, 0.6, 1e-2);
  EXPECT_NEAR(uy, 0.8, 1e-2);
  double mean0 = 0;
  for (int i = 0; i < 50; ++i) {
    mean0 += e.xy[2 * i] / 50;
    EXPECT_NEAR(e.xy[2 * i], ux * (x.at(i, 0) - mx) + uy * (x.at(i, 1) - my), 1e-9) << "point " << i;
    EXPECT_NEAR(e.xy[2 * i + 1], vx * (x.at(i, 0) - mx) + vy * (x.at(i, 1) - my), 1e-9) << "point " << i;
  }
  EXPECT_NEAR(mean0, 0, 1e-9);
}

TEST(Embed, RefusesBadInput) {
  FeatureMatrix x = clusters(2, 10, 3, 1);
  metrics::TsneOptions o;
  o.perplexity = 20;  // not below 20 points
  EXPECT_THROW(metrics::tsne_2d(x, o), std::invalid_argument);
  o.perplexity = 5;
  o.init = "spectral";
  EXPECT_THROW(metrics::tsne_2d(x, o), std::invalid_argument);
  FeatureMatrix big;
  big.rows = metrics::kTsneMaxPoints + 1;
  big.cols = 1;
  big.data.assign(static_cast<size_t>(big.rows), 0.0);
  EXPECT_THROW(metrics::tsne_2d(big, metrics::TsneOptions{}), std::invalid_argument);
  FeatureMatrix one;
  one.rows = 1;
  one.cols = 3;
  one.data = {1, 2, 3};
  EXPECT_THROW(metrics::pca_2d(one), std::invalid_argument);
}

TEST(Embed, CsvAndScatterPlot) {
  test::ScratchDir dir("embed_plot");
  std::vector<int> labels;
  FeatureMatrix x = clusters(2, 20, 4, 2, &labels);
  metrics::Embedding e = metrics::pca_2d(x);
  std::vector<metrics::EmbedPoint> pts;
  for (int64_t i = 0; i < x.rows; ++i) pts.push_back({i % 2 ? "synthetic" : "real", labels[static_cast<size_t>(i)]});
  pts[3].cls = -1;
  metrics::write_embedding_csv(dir / "m.csv", pts, e);
  std::ifstream in(dir / "m.csv");
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "id,source,class,x,y");
  int rows = 0;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream ss(line);
    for (std::string c; std::getline(ss, c, ',');) f.push_back(c);
    if (line.back() == ',') f.push_back("");
    ASSERT_EQ(f.size(), 5u) << line;
    EXPECT_EQ(f[0], std::to_string(rows));
    EXPECT_EQ(f[1], rows % 2 ? "synthetic" : "real");
    EXPECT_EQ(f[2], rows == 3 ? std::string() : std::to_string(labels[static_cast<size_t>(rows)]));
    EXPECT_NEAR(std::stod(f[3]), e.xy[2 * rows], 1e-6 * (1 + std::abs(e.xy[2 * rows])));
    ++rows;
  }
  EXPECT_EQ(rows, x.rows);

  data::Image img = metrics::render_embedding(pts, e, "PCA test", {"healthy", "lesion"}, 400);
  ASSERT_EQ(img.width, 400);
  ASSERT_EQ(img.height, 400);
  ASSERT_EQ(img.channels, 3);
  // Both source colours appear at full strength (marker centres) and most of the canvas is white.
  auto count = [&](metrics::Rgb c) {
    int n = 0;
    for (size_t i = 0; i < img.pixels.size(); i += 3)
      n += std::abs(img.pixels[i] - c.r) < 40 && std::abs(img.pixels[i + 1] - c.g) < 40 && std::abs(img.pixels[i + 2] - c.b) < 40;
    return n;
  };
  EXPECT_GT(count(metrics::palette(0)), 50);
  EXPECT_GT(count(metrics::palette(1)), 50);
  EXPECT_GT(count({255, 255, 255}), 400 * 400 / 2);
  EXPECT_THROW(metrics::write_embedding_csv(dir / "bad.csv", real_points(3), e), std::invalid_argument);
}

// Our t-SNE and PCA against scikit-learn: trustworthiness within 0.02 of sklearn's TSNE on the
// same features and perplexity; PCA coordinates within 1e-5 up to sign.
TEST(Embed, AgreesWithScikitLearn) {
  const std::string py = python();
  if (py.empty() || test::run_shell(py + " -c 'import sklearn'").rc != 0) {
    std::printf("SKIP: the torch venv's python cannot import sklearn (bash scripts/test-python-deps.sh installs it)\n");
    GTEST_SKIP() << "scikit-learn is not installed in the torch venv";
  }
  OneThread one;
  test::ScratchDir dir("embed_sklearn");
  FeatureMatrix x = clusters(3, 100, 50, 2026);
  write_features(dir / "features.csv", x);
  metrics::TsneOptions o;
  o.perplexity = 30;
  metrics::Embedding t = metrics::tsne_2d(x, o);
  metrics::write_embedding_csv(dir / "tsne.csv", real_points(x.rows), t);
  metrics::write_embedding_csv(dir / "pca.csv", real_points(x.rows), metrics::pca_2d(x));
  auto r = test::run_shell("OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 " + py + " " STYLEFORGE_SOURCE_DIR "/tests/tsne_check.py --features " + (dir / "features.csv") +
                           " --tsne " + (dir / "tsne.csv") + " --pca " + (dir / "pca.csv") + " --perplexity 30");
  std::printf("%s", r.out.c_str());
  EXPECT_EQ(r.rc, 0) << r.out;
}
