// Quality metrics of a generator against a dataset pack (torch-free header): the API of the
// metrics rank and of `styleforge metrics`.
//
// A MetricsEvaluator is built once per process from MetricsOptions (dataset pack, metric names,
// detector, cache folder) and then evaluates any number of generator snapshots, either from a
// checkpoint file (G_ema is loaded) or from G_ema's tensors as one flat float32 buffer (what the
// trainer hands to the metrics rank). Each evaluation returns one JSON object per metric, shaped as
// the reference's result dict: {"results": {name: value, ...}, "metric", "total_time",
// "total_time_str", "num_gpus"}; report_metric() adds "snapshot_pkl" and "timestamp" and appends the
// line to `<run_dir>/metric-<name>.jsonl`.
//
// Metric names: fid50k_full, kid50k_full (all reals, no x-flips, 50k generated), fid50k, kid50k
// (at most 50k reals, x-flipped when the run was trained with --mirror), and the same with any other
// count: fid10k_full, kid1k, fid500_full. A detector other than the standard Inception network
// (inception-2015-12-05.pt) is named in the metric: fid50k_full@detector_standin.
//
// Without a detector file the evaluator is disabled (enabled() false, status() says where to put
// the file) and evaluate() returns nothing: a training run never fails for lack of a detector.
// Real statistics (float64 mean and covariance, and all features for KID) are cached in
// `<cache dir>/metrics/`, keyed by the pack's content hash, the detector file's hash, the number
// of reals and the x-flip setting, written atomically and reused across runs.
//
// Channels: the detector takes RGB; 1-channel images are repeated to RGB (the reference), 3-channel
// ones go as they are. Images of any other channel count C are measured per channel: channel k of
// every real and generated image, as a gray image repeated to RGB, gives the features of channel k;
// the metric is computed for each channel and the reported value is their mean, with each
// channel's value under "per_channel" {name: {metric: value}} (names from the pack's
// channel_names, else ch0, ch1, ...). The real-statistics cache keys on the channel and the rule.
//
// Reproducibility: the same snapshot, pack, detector, seed, batch and batch_gen give the same
// values (z, labels and KID subsets are drawn per image from the seed; the synthesis noise, random
// as in the reference, is drawn per generator batch). Metrics requested together share one stream of
// generated images: fid10k_full is computed from the first 10k of the images kid50k_full uses, and
// has the value it would have alone.
//
// Thread-safety: one evaluator per thread; an evaluator is not safe to share.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sf::metrics {

struct MetricsOptions {
  std::string pack;                  // dataset pack of the real images
  std::vector<std::string> metrics;  // e.g. {"fid50k_full", "kid50k_full"} (without @detector)
  std::string detector;              // detector file; empty: $STYLEFORGE_DETECTOR, then <cache_dir>/inception-2015-12-05.pt
  std::string cache_dir;             // empty: trainer::default_cache_dir()
  int threads = 0;                   // LibTorch intra-op threads (0: leave as is)
  std::string device = "cpu";        // auto | cpu | cuda | cuda:N: where the generator and detector run
  int batch = 64;                    // images per detector call
  int batch_gen = 4;                 // images per generator call (the reference's batch_gen)
  uint32_t seed = 0;                 // z, labels, synthesis noise and KID subsets
  int64_t num_gen = 0;               // > 0: generated count of every metric (renames it: fid1k_full)
  bool mirror = false;               // the run trained with x-flips (legacy fid50k/kid50k use them)
  bool use_cache = true;             // read and write the real-statistics cache
  int num_gpus = 1;                  // reported in the result
  // Messages ("cache hit: PATH", ...). Empty: printed on stderr.
  std::function<void(const std::string& line)> log;
  // Progress of the feature passes: stage "reals" or "generated", items done, items in total.
  std::function<void(const std::string& stage, int64_t done, int64_t total)> progress;
};

class MetricsEvaluator {
 public:
  // Throws std::invalid_argument for an unknown metric name and std::runtime_error for an
  // unreadable pack; a missing or unloadable detector only disables the evaluator.
  explicit MetricsEvaluator(MetricsOptions opts);
  ~MetricsEvaluator();
  MetricsEvaluator(const MetricsEvaluator&) = delete;
  MetricsEvaluator& operator=(const MetricsEvaluator&) = delete;

  bool enabled() const;
  // Disabled: the one message saying why and where to put the detector. Enabled: what will run.
  const std::string& status() const;
  // Names as reported (count and detector included), in the order of the options.
  const std::vector<std::string>& metric_names() const;
  // The detector file in use (empty when disabled).
  const std::string& detector_path() const;

  // Computes or loads the real statistics now (otherwise the first evaluation does it).
  void prepare();
  // G_ema of a styleforge checkpoint. Throws std::runtime_error naming the file on errors.
  std::vector<nlohmann::json> evaluate(const std::string& checkpoint_path);
  // G_ema as the trainer hands it to the metrics rank: GeneratorConfig JSON, the state keys in
  // order and their values back to back (float32, each tensor contiguous).
  std::vector<nlohmann::json> evaluate_flat(const nlohmann::json& generator_config, const std::vector<std::string>& keys,
                                            const float* data, size_t count);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The reference's jsonl line: `result` plus "snapshot_pkl" (relative to run_dir when both are
// given) and "timestamp" (seconds since the epoch). Appends it to <run_dir>/metric-<metric>.jsonl
// when run_dir is a folder; returns the line (without newline).
std::string report_metric(const nlohmann::json& result, const std::string& run_dir, const std::string& snapshot);

// Checks metric names without building an evaluator; returns "" or a one-line error.
std::string check_metric_names(const std::vector<std::string>& names);
// Known metric families with a one-line description each (for --help).
std::vector<std::string> describe_metrics();

// `styleforge metrics`: options the command line gives.
struct MetricsCommandOptions {
  std::string network;              // styleforge checkpoint
  std::string data;                 // empty: the run's dataset (training options in the checkpoint)
  std::vector<std::string> metrics;
  std::string detector, cache_dir;
  std::optional<bool> mirror;       // empty: as the run trained
  std::string run_dir;              // empty: the checkpoint's folder when it holds training_options.json
  int64_t num_gen = 0;
  uint32_t seed = 0;
  int batch = 64, batch_gen = 4, threads = 0;
  std::string device = "auto";      // auto | cpu | cuda | cuda:N
  bool use_cache = true;
  std::function<void(const std::string& line)> log;
  std::function<void(const std::string& stage, int64_t done, int64_t total)> progress;
};
// Prints one jsonl line per metric on stdout; returns 0, or 1 when metrics are off or fail.
int run_metrics_command(const MetricsCommandOptions& o);

// Adds the selftest kinds `fid_kid` and `detector` (see trainer/selftest.h). Idempotent.
void register_selftest_kinds();

}  // namespace sf::metrics
