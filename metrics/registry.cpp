#include "metrics/registry.h"

#include <regex>
#include <stdexcept>

namespace sf::metrics {
namespace {

// FID (Heusel et al.), as the reference: fid<N>_full uses every real image without x-flips;
// fid<N> uses at most N reals of the training set as trained (x-flips included).
MetricFamily fid_family() {
  MetricFamily f;
  f.family = "fid";
  f.help = "fid<count>[_full]  Frechet inception distance (e.g. fid50k_full: all reals, 50k generated)";
  f.parse = [](const std::string& name) -> std::optional<MetricSpec> {
    MetricSpec s;
    if (!parse_count_name(name, "fid", &s.num_gen, &s.full)) return std::nullopt;
    s.family = "fid";
    s.max_real = s.full ? -1 : s.num_gen;
    s.needs_mean_cov = true;
    return s;
  };
  f.compute = [](const MetricSpec& s, const MetricInputs& in) {
    auto [mu_real, sigma_real] = in.real.mean_cov();
    auto [mu_gen, sigma_gen] = in.gen.mean_cov();
    return nlohmann::json{{s.name, fid(mu_gen, sigma_gen, mu_real, sigma_real)}};
  };
  return f;
}

// KID (Binkowski et al.), as the reference: 100 subsets of at most 1000 images; kid<N>_full
// uses up to 1M reals without x-flips, kid<N> at most N reals of the training set as trained.
MetricFamily kid_family() {
  MetricFamily f;
  f.family = "kid";
  f.help = "kid<count>[_full]  Kernel inception distance, 100 subsets of at most 1000 (e.g. kid50k_full)";
  f.parse = [](const std::string& name) -> std::optional<MetricSpec> {
    MetricSpec s;
    if (!parse_count_name(name, "kid", &s.num_gen, &s.full)) return std::nullopt;
    s.family = "kid";
    s.max_real = s.full ? 1000000 : s.num_gen;
    s.needs_features = true;
    s.params = {{"num_subsets", 100}, {"max_subset_size", 1000}};
    return s;
  };
  f.compute = [](const MetricSpec& s, const MetricInputs& in) {
    double v = kid(in.gen.all(), in.real.all(), s.params.at("num_subsets").get<int>(),
                   s.params.at("max_subset_size").get<int64_t>(), in.seed);
    return nlohmann::json{{s.name, v}};
  };
  return f;
}

// Precision and recall (Kynkäänniemi et al.), as the reference's pr50k3_full: k = 3 nearest
// neighbours, up to 200k reals without x-flips (pr<N>: at most N reals of the training set as
// trained), any detector (the reference uses VGG16 features). Names: pr<count>[k<nhood>][_full]
// with a count in thousands (pr50k3_full), or plain digits and k = 3 (pr500_full).
MetricFamily pr_family() {
  MetricFamily f;
  f.family = "pr";
  f.help = "pr<count>[<k>][_full]  precision and recall, k nearest neighbours (default 3; e.g. pr50k3_full)";
  f.parse = [](const std::string& name) -> std::optional<MetricSpec> {
    static const std::regex re(R"(pr([0-9]+)(k?)([0-9]*)(_full)?)");
    std::smatch m;
    if (!std::regex_match(name, m, re)) return std::nullopt;
    if (m[3].length() && !m[2].length()) return std::nullopt;  // a neighbourhood size needs a count in thousands
    MetricSpec s;
    s.family = "pr";
    s.num_gen = std::stoll(m[1]) * (m[2].length() ? 1000 : 1);
    const int k = m[3].length() ? std::stoi(m[3]) : 3;
    if (s.num_gen <= 0 || k < 1 || k > 100) return std::nullopt;
    s.full = m[4].length() > 0;
    s.max_real = s.full ? 200000 : s.num_gen;
    s.needs_features = true;
    s.params = {{"nhood_size", k}};
    return s;
  };
  f.compute = [](const MetricSpec& s, const MetricInputs& in) {
    auto [precision, recall] = precision_recall(in.real.all(), in.gen.all(), s.params.at("nhood_size").get<int>());
    return nlohmann::json{{s.name + "_precision", precision}, {s.name + "_recall", recall}};
  };
  return f;
}

std::vector<MetricFamily>& registry() {
  static std::vector<MetricFamily> r = {fid_family(), kid_family(), pr_family()};
  return r;
}

}  // namespace

void register_metric_family(MetricFamily f) {
  for (auto& e : registry())
    if (e.family == f.family) {
      e = std::move(f);
      return;
    }
  registry().push_back(std::move(f));
}

const std::vector<MetricFamily>& metric_families() { return registry(); }

const MetricFamily& metric_family(const std::string& family) {
  for (const auto& f : registry())
    if (f.family == family) return f;
  throw std::invalid_argument("unknown metric family '" + family + "'");
}

std::string format_count(int64_t n) {
  if (n >= 1000 && n % 1000 == 0) return std::to_string(n / 1000) + "k";
  return std::to_string(n);
}

bool parse_count_name(const std::string& name, const std::string& prefix, int64_t* count, bool* full) {
  static const std::regex re(R"(([0-9]+)(k?)(_full)?)");
  if (name.compare(0, prefix.size(), prefix) != 0) return false;
  std::smatch m;
  const std::string rest = name.substr(prefix.size());
  if (!std::regex_match(rest, m, re)) return false;
  int64_t n = std::stoll(m[1]);
  if (m[2].length()) n *= 1000;
  if (n <= 0) return false;
  *count = n;
  *full = m[3].length() > 0;
  return true;
}

MetricSpec parse_metric(const std::string& name, int64_t num_gen_override) {
  for (const auto& f : registry()) {
    std::optional<MetricSpec> s = f.parse(name);
    if (!s) continue;
    s->family = f.family;
    s->name = name;
    if (num_gen_override > 0 && num_gen_override != s->num_gen) {
      // The same metric with another generated count: rename it, and rescale the legacy
      // (training-set) real count that the reference ties to the generated count.
      std::optional<MetricSpec> renamed =
          f.parse(f.family + format_count(num_gen_override) + (s->full ? "_full" : ""));
      if (!renamed) throw std::invalid_argument(name + ": cannot change its generated count");
      renamed->family = f.family;
      renamed->name = f.family + format_count(num_gen_override) + (s->full ? "_full" : "");
      return *renamed;
    }
    return *s;
  }
  std::string known;
  for (const auto& f : registry()) known += "\n  " + f.help;
  throw std::invalid_argument("unknown metric '" + name + "'; known forms:" + known);
}

}  // namespace sf::metrics
