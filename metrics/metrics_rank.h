// The metrics rank: evaluates snapshots that trainer rank 0 hands over, without stalling training.
//
// run_metrics_rank() loops on MetricsLink::next(): for each snapshot it rebuilds G_ema from the
// header's generator config and the flat buffer (tensors in registration order), evaluates the
// requested metrics and appends `metric-<name>.jsonl` lines to the run directory. When it falls
// behind it evaluates the newest snapshot and logs the ones it skipped. A stop signal on this rank
// is forwarded to trainer rank 0 (which then checkpoints and stops every trainer). The loop ends
// when training reports it is done; the exit code is the trainers'.
// Torch-free header; runs on the main thread of its rank.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace sf::sharding {
class MetricsLink;
}

namespace sf::metrics {

struct MetricsRankOptions {
  std::vector<std::string> metrics;  // e.g. fid50k_full, kid50k_full
  std::string detector;              // path, or empty: the default lookup
  int threads = 0;
  int batch = 64;
  int64_t num_gen = 0;  // > 0: generated images per metric (renames it, e.g. fid1k_full)
  int nice = 19;        // scheduling niceness of the metrics rank: trainers sharing its cores come first
  std::string device = "cpu";  // a GPU of its own when there is one (launcher decides), else the CPU
};

int run_metrics_rank(sharding::MetricsLink& link, const MetricsRankOptions& opts, const std::atomic<int>* stop);

}  // namespace sf::metrics
