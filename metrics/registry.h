// The metric registry: each family (fid, kid; later pr, ppl, ...) says which names it accepts,
// what it needs (how many reals and generated images, mean/covariance or all features) and how to
// compute its results from the feature statistics.
//
// A name is `<family><count>[_full]`, count as `50k` (50,000) or plain digits (`500`); a family may
// accept other shapes through its own parse function. Built-in families are registered when the
// registry is first used; register_metric_family() adds more (before evaluators are built).
// Not thread-safe while registering; reading is safe afterwards.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "metrics/stats.h"

namespace sf::metrics {

struct MetricSpec {
  std::string name;              // as reported, without @detector (e.g. "fid50k_full")
  std::string family;            // "fid"
  int64_t num_gen = 50000;       // generated images
  int64_t max_real = -1;         // reals used, at most (-1: all)
  bool full = true;              // _full: all reals without x-flips; else the training set as trained
  bool needs_mean_cov = false;
  bool needs_features = false;   // all feature rows (KID, precision/recall)
  nlohmann::json params = nlohmann::json::object();  // family-specific settings
};

struct MetricInputs {
  const FeatureStats& real;
  const FeatureStats& gen;
  uint32_t seed = 0;
};

struct MetricFamily {
  std::string family;
  std::string help;  // one line, e.g. "fid<count>[_full]: Frechet inception distance"
  // Returns the spec for `name` (no @detector), or nothing when the name is not of this family.
  std::function<std::optional<MetricSpec>(const std::string& name)> parse;
  // {result name: value, ...}; result names are the metric name with optional suffixes.
  std::function<nlohmann::json(const MetricSpec& spec, const MetricInputs& in)> compute;
};

void register_metric_family(MetricFamily f);
const std::vector<MetricFamily>& metric_families();
const MetricFamily& metric_family(const std::string& family);

// Throws std::invalid_argument listing the known forms when no family accepts the name.
// num_gen_override > 0 replaces the generated count and renames the metric accordingly.
MetricSpec parse_metric(const std::string& name, int64_t num_gen_override = 0);

// "50k" for 50000, "500" for 500.
std::string format_count(int64_t n);
// Parses `<prefix><count>[_full]` exactly; count in images.
bool parse_count_name(const std::string& name, const std::string& prefix, int64_t* count, bool* full);

}  // namespace sf::metrics
