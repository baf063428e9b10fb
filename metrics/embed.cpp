// PCA and exact t-SNE of feature matrices, and `styleforge embed` (metrics/embed.h).
#include "metrics/embed.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <numeric>
#include <random>
#include <sstream>
#include <stdexcept>

#include "data/pack.h"
#include "metrics/detector.h"
#include "trainer/checkpoint.h"
#include "trainer/device.h"
#include "trainer/import.h"
#include "trainer/networks.h"
#include "trainer/transfer.h"

namespace fs = std::filesystem;

namespace sf::metrics {
namespace {

constexpr double kEps = std::numeric_limits<double>::epsilon();  // floor of P and Q (as scikit-learn)

at::Tensor to_tensor(const FeatureMatrix& x) {
  if (x.rows < 2 || x.cols < 1) throw std::invalid_argument("need at least 2 points with at least 1 feature");
  if (static_cast<int64_t>(x.data.size()) != x.rows * x.cols)
    throw std::invalid_argument("feature matrix holds " + std::to_string(x.data.size()) + " values, not " +
                                std::to_string(x.rows) + " x " + std::to_string(x.cols));
  return at::from_blob(const_cast<double*>(x.data.data()), {x.rows, x.cols}, at::kDouble).clone();
}

Embedding from_tensor(const at::Tensor& y) {
  at::Tensor c = y.contiguous().to(at::kDouble);
  Embedding e;
  e.rows = c.size(0);
  e.xy.assign(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
  return e;
}

// [N, 2] PCA projections of the rows of x (float64) and the explained variance ratios.
at::Tensor pca_tensor(const at::Tensor& x, std::vector<double>* ratios) {
  const int64_t n = x.size(0);
  at::Tensor xc = x - x.mean(0, true);
  auto [u, s, vh] = at::linalg_svd(xc, /*full_matrices=*/false);
  const int64_t k = std::min<int64_t>(2, vh.size(0));
  at::Tensor v = vh.slice(0, 0, k).clone();  // [k, d]
  // Sign of each axis: its largest-magnitude loading positive.
  at::Tensor idx = v.abs().argmax(1, true);
  at::Tensor sign = v.gather(1, idx).sign();
  sign = at::where(sign == 0, at::ones_like(sign), sign);
  v = v * sign;
  at::Tensor y = at::zeros({n, 2}, at::kDouble);
  y.slice(1, 0, k).copy_(xc.matmul(v.t()));
  if (ratios) {
    at::Tensor var = s * s;
    const double total = var.sum().item<double>();
    ratios->assign(2, 0.0);
    for (int64_t i = 0; i < k; ++i) (*ratios)[static_cast<size_t>(i)] = total > 0 ? var[i].item<double>() / total : 0;
  }
  return y;
}

// Squared Euclidean distances between rows, [N, N], zero diagonal.
at::Tensor squared_distances(const at::Tensor& x) {
  at::Tensor sq = (x * x).sum(1);
  at::Tensor d = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * x.matmul(x.t())).clamp_min(0);
  d.fill_diagonal_(0);
  return d;
}

// Row-wise bisection on the Gaussian precision beta_i so that the entropy of p_{.|i} is
// log(perplexity); all rows at once. Returns p_{j|i} [N, N] and writes beta [N].
at::Tensor conditional_p(const at::Tensor& dist, double perplexity, at::Tensor* beta_out) {
  const int64_t n = dist.size(0);
  const double target = std::log(perplexity);
  constexpr double kTol = 1e-5;
  constexpr int kSteps = 200;
  // Shift each row by its smallest off-diagonal distance: exp() stays in range for any beta.
  at::Tensor off = dist.clone();
  off.fill_diagonal_(std::numeric_limits<double>::infinity());
  at::Tensor shifted = dist - std::get<0>(off.min(1, true));
  shifted.fill_diagonal_(0);
  at::Tensor beta = at::ones({n, 1}, at::kDouble);
  at::Tensor lo = at::full({n, 1}, -std::numeric_limits<double>::infinity(), at::kDouble);
  at::Tensor hi = at::full({n, 1}, std::numeric_limits<double>::infinity(), at::kDouble);
  at::Tensor done = at::zeros({n, 1}, at::kBool);
  at::Tensor p;
  for (int step = 0; step < kSteps; ++step) {
    p = at::exp(-shifted * beta);
    p.fill_diagonal_(0);
    at::Tensor z = p.sum(1, true);  // >= 1: the nearest neighbour contributes exp(0)
    at::Tensor h = at::log(z) + beta * (p * shifted).sum(1, true) / z;
    at::Tensor diff = h - target;
    done = done.logical_or(diff.abs() <= kTol);
    if (done.all().item<bool>()) break;
    at::Tensor up = diff > 0;  // entropy too high: sharper Gaussian
    at::Tensor new_lo = at::where(up, beta, lo), new_hi = at::where(up, hi, beta);
    at::Tensor raised = at::where(at::isinf(new_hi), beta * 2, (beta + new_hi) / 2);
    at::Tensor lowered = at::where(at::isinf(new_lo), beta / 2, (beta + new_lo) / 2);
    at::Tensor next = at::where(up, raised, lowered);
    beta = at::where(done, beta, next);
    lo = at::where(done, lo, new_lo);
    hi = at::where(done, hi, new_hi);
  }
  p = at::exp(-shifted * beta);
  p.fill_diagonal_(0);
  p = p / p.sum(1, true);
  if (beta_out) *beta_out = beta.squeeze(1);
  return p;
}

// KL(P || Q) and its gradient with respect to y, Student-t with one degree of freedom. In-place
// steps keep the number of N x N passes and allocations low.
double kl_and_gradient(const at::Tensor& P, const at::Tensor& y, at::Tensor& grad, bool want_kl) {
  at::Tensor sq = (y * y).sum(1);
  at::Tensor num = at::addmm(sq.unsqueeze(1) + sq.unsqueeze(0), y, y.t(), /*beta=*/1, /*alpha=*/-2);
  num.clamp_min_(0).add_(1).reciprocal_();
  num.fill_diagonal_(0);
  at::Tensor Q = num / num.sum();
  Q.clamp_min_(kEps);
  double kl = 0;
  // The diagonal has P = 0 and adds nothing.
  if (want_kl) kl = (P * at::log(P.clamp_min(kEps) / Q)).sum().item<double>();
  at::Tensor pq = Q.neg_().add_(P).mul_(num);  // (P - Q) * num, in Q's storage
  grad = 4 * (pq.sum(1, true) * y - pq.matmul(y));
  return kl;
}

void check_tsne(const FeatureMatrix& x, const TsneOptions& o) {
  if (!(o.perplexity > 0)) throw std::invalid_argument("perplexity must be positive");
  if (x.rows > kTsneMaxPoints)
    throw std::invalid_argument("exact t-SNE takes at most " + std::to_string(kTsneMaxPoints) + " points, not " +
                                std::to_string(x.rows));
  if (o.perplexity >= static_cast<double>(x.rows))
    throw std::invalid_argument("perplexity " + std::to_string(o.perplexity) + " must be below the number of points (" +
                                std::to_string(x.rows) + ")");
  if (o.iterations < 1 || o.exaggeration_iters < 0 || !(o.exaggeration > 0))
    throw std::invalid_argument("t-SNE needs at least 1 iteration and a positive exaggeration");
  if (o.init != "pca" && o.init != "random") throw std::invalid_argument("t-SNE init must be pca or random, not " + o.init);
}

}  // namespace

Embedding pca_2d(const FeatureMatrix& x) {
  c10::NoGradGuard no_grad;
  std::vector<double> ratios;
  Embedding e = from_tensor(pca_tensor(to_tensor(x), &ratios));
  e.explained_variance_ratio = ratios;
  return e;
}

std::vector<double> tsne_conditional_p(const FeatureMatrix& x, double perplexity, std::vector<double>* betas) {
  c10::NoGradGuard no_grad;
  if (!(perplexity > 0)) throw std::invalid_argument("perplexity must be positive");
  at::Tensor beta;
  at::Tensor p = conditional_p(squared_distances(to_tensor(x)), perplexity, &beta).contiguous();
  if (betas) betas->assign(beta.data_ptr<double>(), beta.data_ptr<double>() + beta.numel());
  return std::vector<double>(p.data_ptr<double>(), p.data_ptr<double>() + p.numel());
}

Embedding tsne_2d(const FeatureMatrix& x, const TsneOptions& o) {
  check_tsne(x, o);
  c10::NoGradGuard no_grad;
  at::Tensor X = to_tensor(x);
  const int64_t n = X.size(0);
  at::Tensor P = conditional_p(squared_distances(X), o.perplexity, nullptr);
  P = P + P.t();
  P = (P / P.sum().clamp_min(kEps)).clamp_min(kEps);
  P.fill_diagonal_(0);
  at::Tensor y;
  if (o.init == "pca") {
    y = pca_tensor(X, nullptr);
    const double sd = y.select(1, 0).std().item<double>();
    y = sd > 0 ? y / sd * 1e-4 : y;
  } else {
    at::Generator gen = at::detail::createCPUGenerator(o.seed);
    y = at::randn({n, 2}, gen, at::kDouble) * 1e-4;
  }
  const double lr = o.learning_rate > 0 ? o.learning_rate : std::max(static_cast<double>(n) / o.exaggeration / 4, 50.0);
  constexpr int kCheckEvery = 50, kNoProgress = 300;
  constexpr double kMinGradNorm = 1e-7;
  Embedding e;
  int it = 0;
  double kl = 0;
  const int stages[2] = {std::min(o.exaggeration_iters, o.iterations), o.iterations};
  for (int stage = 0; stage < 2; ++stage) {
    const bool exaggerated = stage == 0;
    if (exaggerated && o.exaggeration_iters == 0) continue;
    at::Tensor Pst = exaggerated ? P * o.exaggeration : P;
    const double momentum = exaggerated ? 0.5 : 0.8;
    at::Tensor update = at::zeros_like(y), gains = at::ones_like(y), grad;
    double best = std::numeric_limits<double>::infinity();
    int best_it = it;
    for (; it < stages[stage]; ++it) {
      const bool check = (it + 1) % kCheckEvery == 0 || it + 1 == o.iterations;
      kl = kl_and_gradient(Pst, y, grad, check);
      at::Tensor inc = (update * grad) < 0;
      gains = at::where(inc, gains + 0.2, gains * 0.8).clamp_min(0.01);
      grad = grad * gains;
      update = momentum * update - lr * grad;
      y = y + update;
      if (!check) continue;
      if (o.progress) o.progress(it + 1, kl);
      if (kl < best) {
        best = kl;
        best_it = it;
      } else if (it - best_it > kNoProgress) {
        ++it;
        break;
      }
      if (grad.norm().item<double>() <= kMinGradNorm) {
        ++it;
        break;
      }
    }
  }
  at::Tensor g;
  e = from_tensor(y);
  e.kl_divergence = kl_and_gradient(P, y, g, true);
  e.iterations = it;
  return e;
}

// ---- styleforge embed ----

namespace {

struct Features {
  std::vector<at::Tensor> parts;  // float32 [n, F] each
  std::vector<EmbedPoint> points;
};

int64_t parse_class(const std::string& s, const data::PackInfo& info, const std::string& pack) {
  if (s == "all") return -1;
  if (info.label_kind != data::LabelKind::Class)
    throw std::invalid_argument("--class " + s + ": the pack " + pack + " has no class labels (use --class all)");
  for (size_t i = 0; i < info.class_names.size(); ++i)
    if (info.class_names[i] == s) return static_cast<int64_t>(i);
  char* end = nullptr;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || *end || v < 0 || v >= info.label_dim)
    throw std::invalid_argument("--class " + s + ": not a class of " + pack + " (all, 0.." +
                                std::to_string(info.label_dim - 1) + " or a class name)");
  return v;
}

void write_features_csv(const std::string& path, const std::vector<EmbedPoint>& pts, const at::Tensor& f) {
  std::ofstream out(path);
  if (!out) throw std::runtime_error("cannot write " + path);
  out << "id,source,class";
  for (int64_t j = 0; j < f.size(1); ++j) out << ",f" << j;
  out << "\n";
  at::Tensor c = f.contiguous();
  const double* d = c.data_ptr<double>();
  char buf[32];
  for (int64_t i = 0; i < f.size(0); ++i) {
    const auto& p = pts[static_cast<size_t>(i)];
    out << i << "," << p.source << ",";
    if (p.cls >= 0) out << p.cls;
    for (int64_t j = 0; j < f.size(1); ++j) {
      std::snprintf(buf, sizeof buf, ",%.9g", d[i * f.size(1) + j]);
      out << buf;
    }
    out << "\n";
  }
  if (!out.flush()) throw std::runtime_error("cannot write " + path);
}

}  // namespace

int run_embed_command(const EmbedCommandOptions& c) {
  auto log = [&](const std::string& s) {
    if (c.log) c.log(s);
    else std::cerr << s << "\n";
  };
  using Clock = std::chrono::steady_clock;
  if (c.count < 1) throw std::invalid_argument("--count must be at least 1");
  if (c.batch < 1 || c.batch_gen < 1) throw std::invalid_argument("--batch and --batch-gen must be at least 1");
  if (c.size < 200 || c.size > 8000) throw std::invalid_argument("--size must be 200..8000 pixels");
  if (c.methods.empty()) throw std::invalid_argument("--method names no method");
  bool want_tsne = false;
  for (const auto& m : c.methods) {
    if (m != "pca" && m != "tsne") throw std::invalid_argument("--method " + m + ": not pca or tsne");
    want_tsne = want_tsne || m == "tsne";
  }
  if (want_tsne) {
    if (!(c.tsne.perplexity > 0)) throw std::invalid_argument("--perplexity must be positive");
    if (2 * c.count > kTsneMaxPoints)
      throw std::invalid_argument("--count " + std::to_string(c.count) + ": exact t-SNE takes at most " +
                                  std::to_string(kTsneMaxPoints) + " points (--count " +
                                  std::to_string(kTsneMaxPoints / 2) + "); use --method pca for more");
    if (c.tsne.perplexity >= static_cast<double>(2 * c.count))
      throw std::invalid_argument("--perplexity must be below the number of points (2 x --count = " +
                                  std::to_string(2 * c.count) + ")");
    if (c.tsne.init != "pca" && c.tsne.init != "random") throw std::invalid_argument("--init must be pca or random");
    if (c.tsne.iterations < 1) throw std::invalid_argument("--iterations must be at least 1");
  }
  if (c.dest.empty()) throw std::invalid_argument("--dest is required");

  data::PackReader pack(c.reals);
  const data::PackInfo& pi = pack.info();
  const int64_t want_cls = parse_class(c.cls, pi, c.reals);
  const trainer::NetworkFile net(c.network);
  if (net.imported()) log(c.network + ": reference network pickle, imported (" + net.import_result().summary() + ")");
  const trainer::CheckpointInfo info = trainer::read_checkpoint_info(net.checkpoint());
  const auto& gc = info.G;
  if (gc.img_resolution != pi.resolution || gc.img_channels != pi.channels)
    throw std::invalid_argument(c.network + " makes " + std::to_string(gc.img_channels) + "x" +
                                std::to_string(gc.img_resolution) + "x" + std::to_string(gc.img_resolution) +
                                " images but the pack " + c.reals + " holds " + std::to_string(pi.channels) + "x" +
                                std::to_string(pi.resolution) + "x" + std::to_string(pi.resolution));
  if (gc.c_dim > 0 && pi.label_dim != gc.c_dim)
    throw std::invalid_argument(c.network + " is conditional (c_dim " + std::to_string(gc.c_dim) + ") but the pack " +
                                c.reals + " has " +
                                (pi.label_dim ? "labels of size " + std::to_string(pi.label_dim) : std::string("no labels")));
  const bool class_labels = pi.label_kind == data::LabelKind::Class;
  if (want_cls >= 0 && gc.c_dim == 0)
    log("note: " + c.network + " is unconditional; --class " + c.cls + " selects the reals only");

  // Reals: a seeded sample of `count` images (of the class asked for), read in file order.
  std::vector<int64_t> pool;
  for (int64_t i = 0; i < pack.size(); ++i)
    if (want_cls < 0 || pack.class_label(i) == want_cls) pool.push_back(i);
  if (static_cast<int64_t>(pool.size()) < c.count)
    throw std::invalid_argument("--count " + std::to_string(c.count) + ": the pack " + c.reals + " has only " +
                                std::to_string(pool.size()) + " images" +
                                (want_cls >= 0 ? " of class " + c.cls : std::string()));
  std::mt19937_64 rng(c.seed);
  std::shuffle(pool.begin(), pool.end(), rng);
  pool.resize(static_cast<size_t>(c.count));
  std::sort(pool.begin(), pool.end());

  const std::string cache_dir = c.cache_dir.empty() ? trainer::default_cache_dir() : c.cache_dir;
  const DetectorLocation loc = locate_detector(c.detector, cache_dir);
  if (!loc.found) throw std::runtime_error(loc.message);
  if (c.threads > 0) at::set_num_threads(c.threads);
  const c10::Device dev = trainer::resolve_device(c.device, 0, 1, /*shared_ok=*/true);
  Detector det(loc.path, dev);
  log("embed: " + std::to_string(c.count) + " reals of " + c.reals + " and " + std::to_string(c.count) +
      " images of " + c.network + " through " + loc.path);

  c10::NoGradGuard no_grad;
  const auto t0 = Clock::now();
  Features f;
  const size_t bytes = pi.image_bytes();
  std::vector<uint8_t> buf;
  for (int64_t done = 0; done < c.count;) {
    const int64_t nb = std::min<int64_t>(c.batch, c.count - done);
    buf.resize(bytes * static_cast<size_t>(nb));
    pack.read_images(pool.data() + done, static_cast<size_t>(nb), buf.data());
    at::Tensor img = at::from_blob(buf.data(), {nb, pi.channels, pi.resolution, pi.resolution}, at::kByte).clone();
    f.parts.push_back(det.features(img).to(at::kDouble));
    for (int64_t i = done; i < done + nb; ++i)
      f.points.push_back({"real", class_labels ? pack.class_label(pool[static_cast<size_t>(i)]) : -1});
    done += nb;
  }

  trainer::Generator G(gc);
  G.state().to(dev);
  trainer::load_networks(net.checkpoint(), nullptr, nullptr, &G);
  G.train(false);
  at::Generator zgen = at::detail::createCPUGenerator(c.seed);
  at::Generator noise_gen = trainer::make_device_generator(dev, (uint64_t{1} << 32) + c.seed);
  std::mt19937_64 label_rng(c.seed + 1);
  std::uniform_int_distribution<int64_t> pick(0, pack.size() - 1);
  for (int64_t done = 0; done < c.count;) {
    const int64_t nb = std::min<int64_t>(c.batch, c.count - done);
    std::vector<at::Tensor> imgs;
    for (int64_t j = 0; j < nb; j += c.batch_gen) {
      const int64_t m = std::min<int64_t>(c.batch_gen, nb - j);
      at::Tensor z = at::randn({m, gc.z_dim}, zgen, at::kFloat);
      at::Tensor lab = at::zeros({m, gc.c_dim}, at::kFloat);
      for (int64_t k = 0; k < m; ++k) {
        int64_t cls = -1;
        if (gc.c_dim > 0) {
          if (want_cls >= 0) {
            lab.data_ptr<float>()[k * gc.c_dim + want_cls] = 1;
            cls = want_cls;
          } else {
            const int64_t src = pick(label_rng);
            pack.label_as_float(src, lab.data_ptr<float>() + k * gc.c_dim);
            if (class_labels) cls = pack.class_label(src);
          }
        }
        f.points.push_back({"synthetic", cls});
      }
      at::Tensor ws = G.mapping(z.to(dev), lab.to(dev), c.truncation_psi, -1);
      imgs.push_back(to_uint8_images(G.synthesis(ws, trainer::NoiseMode::Random, std::nullopt, noise_gen)).cpu());
    }
    f.parts.push_back(det.features(at::cat(imgs, 0)).to(at::kDouble));
    done += nb;
  }
  at::Tensor feats = at::cat(f.parts, 0).contiguous();
  char line[256];
  std::snprintf(line, sizeof line, "features: %lld x %lld in %.1f s", static_cast<long long>(feats.size(0)),
                static_cast<long long>(feats.size(1)), std::chrono::duration<double>(Clock::now() - t0).count());
  log(line);

  fs::create_directories(c.dest);
  if (c.save_features) write_features_csv((fs::path(c.dest) / "features.csv").string(), f.points, feats);
  FeatureMatrix fm;
  fm.rows = feats.size(0);
  fm.cols = feats.size(1);
  fm.data.assign(feats.data_ptr<double>(), feats.data_ptr<double>() + feats.numel());

  for (const auto& m : c.methods) {
    const auto t1 = Clock::now();
    Embedding e;
    std::string title;
    if (m == "pca") {
      e = pca_2d(fm);
      std::snprintf(line, sizeof line, "PCA (%.1f%% + %.1f%% of the variance)", 100 * e.explained_variance_ratio[0],
                    100 * e.explained_variance_ratio[1]);
      title = line;
    } else {
      TsneOptions to = c.tsne;
      to.seed = c.seed;
      if (!to.progress)
        to.progress = [&](int it, double kl) {
          if (it % 250 == 0 && it < to.iterations) {
            char msg[96];
            std::snprintf(msg, sizeof msg, "t-SNE: iteration %d of %d, KL %.3f%s", it, to.iterations, kl,
                          it <= to.exaggeration_iters ? " (exaggerated)" : "");
            log(msg);
          }
        };
      e = tsne_2d(fm, to);
      std::snprintf(line, sizeof line, "t-SNE (perplexity %g, %d iterations, KL %.3f)", to.perplexity, e.iterations,
                    e.kl_divergence);
      title = line;
    }
    const std::string csv = (fs::path(c.dest) / ("embed-" + m + ".csv")).string();
    const std::string png = (fs::path(c.dest) / ("embed-" + m + ".png")).string();
    write_embedding_csv(csv, f.points, e);
    data::write_png_file(png, render_embedding(f.points, e, title, pi.class_names, c.size));
    std::snprintf(line, sizeof line, " (%.1f s)", std::chrono::duration<double>(Clock::now() - t1).count());
    std::cout << csv << ", " << png << ": " << title << ", " << c.count << " real and " << c.count << " synthetic"
              << line << std::endl;
  }
  return 0;
}

}  // namespace sf::metrics
