// The torch-free parts of `styleforge classify` (trainer/classify.h): splits, metrics, option
// parsing and the summary figure.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <numeric>
#include <random>
#include <stdexcept>

#include "metrics/report_plot.h"
#include "trainer/classify.h"

namespace sf::trainer::classify {
namespace {

std::vector<std::vector<int64_t>> by_class(const std::vector<int64_t>& labels, int num_classes) {
  if (num_classes < 2) throw std::invalid_argument("classify needs at least 2 classes, the pack has " +
                                                   std::to_string(num_classes));
  std::vector<std::vector<int64_t>> out(static_cast<size_t>(num_classes));
  for (size_t i = 0; i < labels.size(); ++i) {
    const int64_t c = labels[i];
    if (c < 0 || c >= num_classes)
      throw std::invalid_argument("label " + std::to_string(c) + " of image " + std::to_string(i) + " is outside [0, " +
                                  std::to_string(num_classes) + ")");
    out[static_cast<size_t>(c)].push_back(static_cast<int64_t>(i));
  }
  return out;
}

void shuffle(std::vector<int64_t>& v, uint64_t seed, uint64_t stream) {
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + stream + 1);
  // Fisher-Yates with our own index draw: std::shuffle's use of the engine is not specified.
  for (size_t i = v.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(rng() % i);
    std::swap(v[i - 1], v[j]);
  }
}

int64_t share(size_t n, double frac) { return static_cast<int64_t>(std::llround(static_cast<double>(n) * frac)); }

void sort_split(Split& s) {
  std::sort(s.train.begin(), s.train.end());
  std::sort(s.val.begin(), s.val.end());
  std::sort(s.test.begin(), s.test.end());
}

}  // namespace

Split stratified_split(const std::vector<int64_t>& labels, int num_classes, double val_frac, double test_frac,
                       uint64_t seed) {
  if (!(test_frac > 0 && test_frac < 1)) throw std::invalid_argument("--test-frac must be in (0, 1)");
  if (!(val_frac >= 0 && val_frac < 1)) throw std::invalid_argument("--val-frac must be in [0, 1)");
  if (!(val_frac + test_frac < 1)) throw std::invalid_argument("--val-frac + --test-frac must be below 1");
  auto classes = by_class(labels, num_classes);
  Split s;
  for (size_t c = 0; c < classes.size(); ++c) {
    auto& idx = classes[c];
    if (idx.empty()) continue;
    shuffle(idx, seed, c);
    int64_t nt = std::max<int64_t>(1, share(idx.size(), test_frac));
    int64_t nv = val_frac > 0 ? std::max<int64_t>(1, share(idx.size(), val_frac)) : 0;
    if (nt + nv >= static_cast<int64_t>(idx.size()))
      throw std::invalid_argument("class " + std::to_string(c) + " has only " + std::to_string(idx.size()) +
                                  " images: too few for a train/val/test split");
    s.test.insert(s.test.end(), idx.begin(), idx.begin() + nt);
    s.val.insert(s.val.end(), idx.begin() + nt, idx.begin() + nt + nv);
    s.train.insert(s.train.end(), idx.begin() + nt + nv, idx.end());
  }
  sort_split(s);
  return s;
}

std::vector<Split> stratified_folds(const std::vector<int64_t>& labels, int num_classes, int k, double val_frac,
                                    uint64_t seed) {
  if (k < 2) throw std::invalid_argument("--folds must be at least 2");
  if (!(val_frac >= 0 && val_frac < 1)) throw std::invalid_argument("--val-frac must be in [0, 1)");
  auto classes = by_class(labels, num_classes);
  std::vector<Split> folds(static_cast<size_t>(k));
  // Per class the shuffled indices are dealt to the folds round-robin, continuing where the
  // previous class stopped so that fold sizes differ by at most one overall.
  std::vector<std::vector<std::vector<int64_t>>> members(classes.size(), std::vector<std::vector<int64_t>>(k));
  size_t next = 0;
  for (size_t c = 0; c < classes.size(); ++c) {
    auto& idx = classes[c];
    if (idx.empty()) continue;
    if (static_cast<int>(idx.size()) < k)
      throw std::invalid_argument("--folds " + std::to_string(k) + ": class " + std::to_string(c) + " has only " +
                                  std::to_string(idx.size()) + " images");
    shuffle(idx, seed, c);
    for (int64_t i : idx) members[c][next++ % static_cast<size_t>(k)].push_back(i);
  }
  for (int f = 0; f < k; ++f) {
    Split& s = folds[static_cast<size_t>(f)];
    for (size_t c = 0; c < classes.size(); ++c) {
      std::vector<int64_t> rest;
      for (int g = 0; g < k; ++g) {
        const auto& m = members[c][static_cast<size_t>(g)];
        if (g == f)
          s.test.insert(s.test.end(), m.begin(), m.end());
        else
          rest.insert(rest.end(), m.begin(), m.end());
      }
      if (rest.empty()) continue;
      shuffle(rest, seed + 1000003ull * static_cast<uint64_t>(f + 1), c);
      int64_t nv = val_frac > 0 ? std::max<int64_t>(1, share(rest.size(), val_frac)) : 0;
      if (nv >= static_cast<int64_t>(rest.size()))
        throw std::invalid_argument("class " + std::to_string(c) + " is too small for --folds " + std::to_string(k) +
                                    " with --val-frac");
      s.val.insert(s.val.end(), rest.begin(), rest.begin() + nv);
      s.train.insert(s.train.end(), rest.begin() + nv, rest.end());
    }
    sort_split(s);
  }
  return folds;
}

Split with_synthetic(const Split& real, int64_t num_real, int64_t num_synthetic) {
  Split s = real;
  for (int64_t i = 0; i < num_synthetic; ++i) s.train.push_back(num_real + i);
  return s;
}

double roc_auc(const std::vector<double>& pos, const std::vector<double>& neg) {
  if (pos.empty() || neg.empty()) return std::numeric_limits<double>::quiet_NaN();
  // Mid-ranks of the pooled scores; U = (sum of positive ranks) - n_pos (n_pos + 1) / 2.
  std::vector<std::pair<double, int>> all;
  all.reserve(pos.size() + neg.size());
  for (double v : pos) all.push_back({v, 1});
  for (double v : neg) all.push_back({v, 0});
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  double rank_sum = 0;
  for (size_t i = 0; i < all.size();) {
    size_t j = i;
    while (j < all.size() && all[j].first == all[i].first) ++j;
    const double mid = (static_cast<double>(i + 1) + static_cast<double>(j)) / 2;  // ranks i+1 .. j
    for (size_t t = i; t < j; ++t)
      if (all[t].second) rank_sum += mid;
    i = j;
  }
  const double np = static_cast<double>(pos.size()), nn = static_cast<double>(neg.size());
  return (rank_sum - np * (np + 1) / 2) / (np * nn);
}

Metrics evaluate_predictions(const std::vector<int64_t>& labels, const std::vector<float>& probs, int num_classes) {
  const size_t n = labels.size(), K = static_cast<size_t>(num_classes);
  if (num_classes < 2 || probs.size() != n * K) throw std::invalid_argument("evaluate_predictions: size mismatch");
  if (n == 0) throw std::invalid_argument("evaluate_predictions: no predictions");
  std::vector<int64_t> pred(n);
  int64_t correct = 0;
  for (size_t i = 0; i < n; ++i) {
    const float* p = probs.data() + i * K;
    pred[i] = std::max_element(p, p + K) - p;
    correct += pred[i] == labels[i];
  }
  Metrics m;
  m.accuracy = static_cast<double>(correct) / static_cast<double>(n);
  // One-vs-rest recall of class k (its sensitivity) and of the rest (its specificity), and AUC.
  auto one_vs_rest = [&](size_t k, double* sens, double* spec, double* auc) {
    int64_t tp = 0, fn = 0, tn = 0, fp = 0;
    std::vector<double> ps, ns;
    for (size_t i = 0; i < n; ++i) {
      const bool is_k = labels[i] == static_cast<int64_t>(k), said_k = pred[i] == static_cast<int64_t>(k);
      (is_k ? ps : ns).push_back(probs[i * K + k]);
      if (is_k) (said_k ? tp : fn)++;
      else (said_k ? fp : tn)++;
    }
    const double nan = std::numeric_limits<double>::quiet_NaN();
    *sens = tp + fn ? static_cast<double>(tp) / static_cast<double>(tp + fn) : nan;
    *spec = tn + fp ? static_cast<double>(tn) / static_cast<double>(tn + fp) : nan;
    *auc = roc_auc(ps, ns);
  };
  if (num_classes == 2) {
    one_vs_rest(1, &m.sensitivity, &m.specificity, &m.auc);
    return m;
  }
  double s_sum = 0, p_sum = 0, a_sum = 0;
  int present = 0;
  for (size_t k = 0; k < K; ++k) {
    double s, p, a;
    one_vs_rest(k, &s, &p, &a);
    if (std::isnan(s) || std::isnan(a)) continue;  // class absent from the test set
    s_sum += s, p_sum += p, a_sum += a, ++present;
  }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  m.sensitivity = present ? s_sum / present : nan;
  m.specificity = present ? p_sum / present : nan;
  m.auc = present ? a_sum / present : nan;
  return m;
}

MeanStd mean_std(const std::vector<double>& v) {
  MeanStd r;
  if (v.empty()) return {std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::quiet_NaN()};
  r.mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  if (v.size() > 1) {
    double ss = 0;
    for (double x : v) ss += (x - r.mean) * (x - r.mean);
    r.std = std::sqrt(ss / static_cast<double>(v.size() - 1));
  }
  return r;
}

std::vector<std::string> parse_augment(const std::string& text) {
  std::vector<std::string> out;
  if (text.empty() || text == "none") return out;
  size_t pos = 0;
  while (true) {
    const size_t comma = text.find(',', pos);
    const std::string part = text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    if (part != "flips" && part != "rot90" && part != "intensity")
      throw std::invalid_argument("--augment: unknown augmentation '" + part + "' (flips, rot90, intensity or none)");
    if (std::find(out.begin(), out.end(), part) == out.end()) out.push_back(part);
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

std::vector<std::pair<int, std::string>> parse_synthetic_networks(const std::string& text) {
  std::vector<std::pair<int, std::string>> out;
  if (text.empty()) return out;
  if (text.find('=') == std::string::npos) return {{-1, text}};
  size_t pos = 0;
  while (true) {
    const size_t comma = text.find(',', pos);
    const std::string part = text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    const size_t eq = part.find('=');
    int cls = -1;
    if (eq != std::string::npos && part.compare(0, 5, "class") == 0 && eq > 5) {
      try {
        size_t used = 0;
        cls = std::stoi(part.substr(5, eq - 5), &used);
        if (used != eq - 5) cls = -1;
      } catch (const std::logic_error&) {
        cls = -1;
      }
    }
    if (cls < 0 || eq + 1 >= part.size())
      throw std::invalid_argument("--synthetic-network: cannot parse '" + part +
                                  "' (one checkpoint, or class0=A.h5,class1=B.h5)");
    for (const auto& e : out)
      if (e.first == cls) throw std::invalid_argument("--synthetic-network: class" + std::to_string(cls) + " given twice");
    out.push_back({cls, part.substr(eq + 1)});
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  std::sort(out.begin(), out.end());
  return out;
}

data::Image render_summary_plot(const nlohmann::json& result) {
  using metrics::Canvas;
  using metrics::Rgb;
  const std::vector<std::pair<std::string, std::string>> metric_names = {
      {"accuracy", "accuracy"}, {"sensitivity", "sensitivity"}, {"specificity", "specificity"}, {"auc", "ROC AUC"}};
  const auto& arms = result.at("arms");
  const int W = 900, H = 520, left = 70, right = 20, top = 60, bottom = 80;
  Canvas cv(W, H);
  const Rgb ink{40, 40, 40}, grid{225, 225, 225};
  std::string title = "test metrics, mean +- std over " + std::to_string(result.at("settings").at("seeds").size()) +
                      " seed(s)";
  cv.text((W - Canvas::text_width(title, 2)) / 2, 15, title, 2, ink);
  const int x0 = left, x1 = W - right, y0 = top, y1 = H - bottom;
  auto ymap = [&](double v) { return y1 - (y1 - y0) * std::clamp(v, 0.0, 1.0); };
  for (int t = 0; t <= 10; t += 2) {
    const double v = t / 10.0;
    const double y = ymap(v);
    cv.line(x0, y, x1, y, 1, grid);
    char lab[16];
    std::snprintf(lab, sizeof lab, "%.1f", v);
    cv.text(x0 - 8 - Canvas::text_width(lab, 1) , static_cast<int>(y) - 4, lab, 1, ink);
  }
  cv.line(x0, y0, x0, y1, 1.5, ink);
  cv.line(x0, y1, x1, y1, 1.5, ink);
  const int groups = static_cast<int>(metric_names.size());
  const int na = std::max<int>(1, static_cast<int>(arms.size()));
  const double gw = static_cast<double>(x1 - x0) / groups, bw = gw * 0.7 / na;
  for (int g = 0; g < groups; ++g) {
    const double gx = x0 + g * gw + gw * 0.15;
    for (int a = 0; a < static_cast<int>(arms.size()); ++a) {
      const auto& s = arms[static_cast<size_t>(a)].at("summary").at(metric_names[g].first);
      const double mean = s.at("mean").is_number() ? s.at("mean").get<double>() : std::nan("");
      const double sd = s.at("std").is_number() ? s.at("std").get<double>() : 0.0;
      const Rgb col = metrics::palette(a);
      const double bx = gx + a * bw;
      if (std::isfinite(mean)) {
        cv.fill_rect(static_cast<int>(bx + 2), static_cast<int>(ymap(mean)), static_cast<int>(bx + bw - 2), y1 - 1, col);
        const double cx = bx + bw / 2;
        cv.line(cx, ymap(mean - sd), cx, ymap(mean + sd), 1.5, ink);
        cv.line(cx - bw / 6, ymap(mean + sd), cx + bw / 6, ymap(mean + sd), 1.5, ink);
        cv.line(cx - bw / 6, ymap(mean - sd), cx + bw / 6, ymap(mean - sd), 1.5, ink);
        char lab[16];
        std::snprintf(lab, sizeof lab, "%.3f", mean);
        cv.text(static_cast<int>(cx - Canvas::text_width(lab, 1) / 2.0), static_cast<int>(ymap(mean + sd)) - 14, lab, 1,
                ink);
      }
    }
    const std::string& name = metric_names[g].second;
    cv.text(static_cast<int>(x0 + g * gw + (gw - Canvas::text_width(name, 2)) / 2), y1 + 10, name, 2, ink);
  }
  // Legend below the axis labels.
  int lx = x0;
  for (int a = 0; a < static_cast<int>(arms.size()); ++a) {
    const std::string name = arms[static_cast<size_t>(a)].at("name").get<std::string>();
    cv.fill_rect(lx, H - 32, lx + 16, H - 18, metrics::palette(a));
    cv.text(lx + 22, H - 32, name, 2, ink);
    lx += 22 + Canvas::text_width(name, 2) + 30;
  }
  return cv.image();
}

}  // namespace sf::trainer::classify
