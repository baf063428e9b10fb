// Selftest kinds of the metrics library (registered through trainer/selftest.h):
//
//   fid_kid   inputs/<set>_features [N, F] float32 for the sets `gen` and `real`; outputs mu_<set>,
//             sigma_<set> (float64, compared to 1e-9), fid and kid (compared to 1e-6). The number of
//             KID subsets, their size and the seed are read from the notes ("one subset of size
//             min(n_real,n_gen)", "100 subsets of size 1000", "seed 123"); by default 100 subsets
//             of at most 1000, seed 0.
//   detector  a TorchScript detector named in the notes (a `*.pt` file, relative to the fixture's
//             folder); outputs `features` = detector(<input named in the notes' call, else img>,
//             return_features=True) and `features_<x>` = the same for inputs/<x>.
#include <ATen/ATen.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <mutex>
#include <regex>
#include <stdexcept>

#include "data/h5.h"
#include "metrics/detector.h"
#include "metrics/metrics.h"
#include "metrics/stats.h"
#include "trainer/selftest.h"
#include "trainer/tensor_io.h"

namespace fs = std::filesystem;

namespace sf::metrics {
namespace {

double rel_err(const at::Tensor& ours, const at::Tensor& ref) {
  at::Tensor a = ours.to(at::kDouble).reshape(-1), b = ref.to(at::kDouble).reshape(-1);
  if (a.numel() != b.numel())
    throw std::runtime_error("shape " + c10::str(ours.sizes()) + " vs reference " + c10::str(ref.sizes()));
  double nb = b.norm().item<double>(), nd = (a - b).norm().item<double>();
  return nb == 0 ? nd : nd / nb;
}

at::Tensor read(const h5::Handle& f, const std::string& name, at::ScalarType t) {
  std::lock_guard<std::recursive_mutex> lock(h5::global_mutex());
  if (!h5::exists(f, name)) throw std::runtime_error("no dataset " + name);
  return trainer::read_tensor(f, name, t);
}

std::vector<std::string> outputs_of(const h5::Handle& f) {
  std::lock_guard<std::recursive_mutex> lock(h5::global_mutex());
  if (!h5::exists(f, "outputs")) return {};
  return h5::members(h5::open_group(f, "outputs"));
}

std::vector<trainer::SelftestComparison> check_fid_kid(const trainer::SelftestFile& file) {
  constexpr double kStatsTol = 1e-9, kMetricTol = 1e-6;
  h5::Handle f = h5::open_file(file.path);
  std::map<std::string, FeatureStats> stats;
  auto stats_of = [&](const std::string& set) -> FeatureStats& {
    auto it = stats.find(set);
    if (it != stats.end()) return it->second;
    FeatureStats s(/*capture_all=*/true, /*capture_mean_cov=*/true);
    s.append(read(f, "inputs/" + set + "_features", at::kFloat));
    return stats.emplace(set, std::move(s)).first->second;
  };
  std::vector<trainer::SelftestComparison> out;
  for (const auto& o : outputs_of(f)) {
    const std::string name = "outputs/" + o;
    at::Tensor ref = read(f, name, at::kDouble);
    if (o.rfind("mu_", 0) == 0) {
      out.push_back({name, rel_err(stats_of(o.substr(3)).mean_cov().first, ref), kStatsTol});
    } else if (o.rfind("sigma_", 0) == 0) {
      out.push_back({name, rel_err(stats_of(o.substr(6)).mean_cov().second, ref), kStatsTol});
    } else if (o == "fid") {
      auto [mu_g, s_g] = stats_of("gen").mean_cov();
      auto [mu_r, s_r] = stats_of("real").mean_cov();
      out.push_back({name, rel_err(at::scalar_tensor(fid(mu_g, s_g, mu_r, s_r), at::kDouble), ref), kMetricTol});
    } else if (o == "kid") {
      int subsets = 100;
      int64_t size = 1000;
      uint32_t seed = 0;
      std::smatch m;
      static const std::regex count_re(R"(\b(\d+|one)\s+subsets?\b)", std::regex::icase);
      static const std::regex size_re(R"(subsets?\s+of\s+(?:size\s+|at most\s+)?(\d+|min\())", std::regex::icase);
      static const std::regex seed_re(R"(\bseed\s*=?\s*(\d+))", std::regex::icase);
      if (std::regex_search(file.notes, m, count_re)) subsets = m[1] == "one" ? 1 : std::stoi(m[1]);
      if (std::regex_search(file.notes, m, size_re)) size = m[1] == "min(" ? INT64_MAX : std::stoll(m[1]);
      if (std::regex_search(file.notes, m, seed_re)) seed = static_cast<uint32_t>(std::stoul(m[1]));
      double v = kid(stats_of("gen").all(), stats_of("real").all(), subsets, size, seed);
      out.push_back({name, rel_err(at::scalar_tensor(v, at::kDouble), ref), kMetricTol});
    } else {
      throw std::runtime_error("unknown fid_kid output '" + o + "'");
    }
  }
  return out;
}

std::vector<trainer::SelftestComparison> check_detector(const trainer::SelftestFile& file) {
  static const std::regex pt_re(R"(([A-Za-z0-9_./\-]+\.pt)\b)");
  std::smatch m;
  std::string pt;
  nlohmann::json cfg = nlohmann::json::parse(file.config_json.empty() ? "{}" : file.config_json);
  if (cfg.contains("detector")) pt = cfg["detector"].get<std::string>();
  else if (std::regex_search(file.notes, m, pt_re)) pt = m[1];
  if (pt.empty()) throw std::runtime_error("the notes name no detector file (*.pt)");
  if (fs::path(pt).is_relative()) pt = (fs::path(file.path).parent_path() / pt).string();
  Detector det(pt);
  std::string main_input = "img";
  static const std::regex call_re(R"(detector\(\s*([A-Za-z_][A-Za-z_0-9]*))");
  if (std::regex_search(file.notes, m, call_re)) main_input = m[1];
  h5::Handle f = h5::open_file(file.path);
  std::vector<trainer::SelftestComparison> out;
  for (const auto& o : outputs_of(f)) {
    std::string input;
    if (o == "features") input = main_input;
    else if (o.rfind("features_", 0) == 0) input = o.substr(9);
    else throw std::runtime_error("unknown detector output '" + o + "'");
    at::Tensor feats = det.features(read(f, "inputs/" + input, at::kByte));
    out.push_back({"outputs/" + o, rel_err(feats, read(f, "outputs/" + o, at::kFloat)), 0});
  }
  return out;
}

}  // namespace

void register_selftest_kinds() {
  trainer::register_selftest_kind("fid_kid", check_fid_kid);
  trainer::register_selftest_kind("detector", check_detector);
}

}  // namespace sf::metrics
