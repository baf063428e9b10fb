// Metrics evaluated by the training process itself (no metrics rank): the SnapshotMetrics of
// trainer/training_loop.h on top of MetricsEvaluator (metrics/metrics.h).
//
// A single-process run, or one with `--metrics-rank none`, evaluates the requested metrics on
// trainer rank 0 at snapshot ticks, as the reference does, and appends the same
// `metric-<name>.jsonl` lines as the metrics rank. The evaluator is built at start() from the
// run's pack, seed and x-flip setting, on the trainer's device; the real statistics are computed
// (or read from the cache) at the first evaluation. Torch-free header; one instance per process,
// used from the training thread only.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "metrics/metrics_rank.h"
#include "trainer/training_loop.h"

namespace sf::metrics {

class MetricsEvaluator;

class InProcessMetrics final : public trainer::SnapshotMetrics {
 public:
  // opts: metric names, detector, generated count and batch (threads, nice and device unused:
  // the trainer's threads and device are used).
  explicit InProcessMetrics(MetricsRankOptions opts);
  ~InProcessMetrics() override;

  bool start(const nlohmann::json& run, const std::function<void(const std::string&)>& log) override;
  std::vector<nlohmann::json> evaluate(const nlohmann::json& G, const std::vector<std::string>& keys,
                                       const std::vector<float>& flat, const std::function<void()>& alive) override;
  std::string report(const nlohmann::json& result, const std::string& run_dir, const std::string& checkpoint) override;

 private:
  MetricsRankOptions opts_;
  std::unique_ptr<MetricsEvaluator> evaluator_;
  std::function<void()> alive_;  // set during evaluate()
};

}  // namespace sf::metrics
