// In-process metrics at snapshot ticks (inprocess_metrics.h).
#include "metrics/inprocess_metrics.h"

#include <cstdio>
#include <nlohmann/json.hpp>

#include "metrics/metrics.h"

namespace sf::metrics {

InProcessMetrics::InProcessMetrics(MetricsRankOptions opts) : opts_(std::move(opts)) {}
InProcessMetrics::~InProcessMetrics() = default;

bool InProcessMetrics::start(const nlohmann::json& run, const std::function<void(const std::string&)>& log) {
  if (opts_.metrics.empty()) return false;
  MetricsOptions mo;
  mo.pack = run.at("data").get<std::string>();
  mo.metrics = opts_.metrics;
  mo.detector = opts_.detector;
  mo.device = run.value("device", std::string("cpu"));
  mo.batch = opts_.batch;
  mo.num_gen = opts_.num_gen;
  mo.seed = static_cast<uint32_t>(run.value("seed", 0));
  mo.mirror = run.value("mirror", false);
  mo.num_gpus = run.value("num_trainers", 1);
  mo.log = [log](const std::string& line) { log(line.rfind("metrics", 0) == 0 ? line : "metrics: " + line); };
  // The feature passes report progress once per batch: that is when the waiting trainers hear
  // from rank 0.
  mo.progress = [this](const std::string&, int64_t, int64_t) {
    if (alive_) alive_();
  };
  evaluator_ = std::make_unique<MetricsEvaluator>(mo);  // logs why when it is off
  if (!evaluator_->enabled()) return false;
  log(evaluator_->status() + " (in this process at snapshots: no metrics rank)");
  return true;
}

std::vector<nlohmann::json> InProcessMetrics::evaluate(const nlohmann::json& G, const std::vector<std::string>& keys,
                                                       const std::vector<float>& flat,
                                                       const std::function<void()>& alive) {
  if (!evaluator_ || !evaluator_->enabled()) return {};
  alive_ = alive;
  struct Reset {
    std::function<void()>& f;
    ~Reset() { f = nullptr; }
  } reset{alive_};
  return evaluator_->evaluate_flat(G, keys, flat.data(), flat.size());
}

std::string InProcessMetrics::report(const nlohmann::json& result, const std::string& run_dir,
                                     const std::string& checkpoint) {
  report_metric(result, run_dir, checkpoint);
  std::string s;
  if (auto it = result.find("results"); it != result.end() && it->is_object())
    for (auto& [name, v] : it->items()) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.6g", v.is_number() ? v.get<double>() : 0.0);
      s += (s.empty() ? "" : ", ") + name + " " + buf;
    }
  return s + " (" + result.value("total_time_str", std::string("?")) + ")";
}

}  // namespace sf::metrics
