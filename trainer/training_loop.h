// Entry points of `styleforge train`, `generate` and `bench` (torch-free header for launcher/).
//
// run_training: parse → resolve preset → validate → print → write training_options.json →
// (dry run stops here) → train. A run directory `outdir/NNNNN-<desc>/` receives log.txt,
// stats.jsonl (one line per tick, the reference's stat names), reals.png, fakes_init.png,
// fakesNNNNNN.png, and network-snapshot-NNNNNN.h5 checkpoints (trainer/checkpoint.h).
// `resume` = a checkpoint path or "latest" (the newest snapshot of the newest run in outdir, or
// of run_dir when given) continues that run in its own directory exactly: counters, p, optimiser
// moments and random streams carry on; only the total length (--kimg) may change.
// A stop request (SIGTERM/SIGUSR1, set through `stop`) makes the loop write a checkpoint at the
// end of the current iteration and return kRequeue.
// Metrics: with a metrics rank, rank 0 hands G_ema over at snapshots (sharding/metrics_link.h);
// without one, `local_metrics` evaluates it in this process at snapshot ticks (not at the snapshot
// of a stop request) and the tick line says how long that took.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "sharding/communicator.h"

namespace sf::sharding {
class MetricsLink;
}
#include "trainer/generate.h"  // generate's request, declared there
#include "trainer/train_options.h"

namespace sf::trainer {

// Metrics that trainer rank 0 evaluates itself at snapshot ticks when the job has no metrics rank
// (a single process, or --metrics-rank none), as the reference does: training pauses meanwhile.
// Implemented in metrics/ and handed in by the launcher (trainer/ does not depend on metrics/).
// Used from the training thread of rank 0 only.
class SnapshotMetrics {
 public:
  virtual ~SnapshotMetrics() = default;
  // Once, before training: the run's settings {data, seed, mirror, num_trainers, device}. Logs
  // what will be computed, or why nothing (e.g. no detector file); false when metrics are off.
  virtual bool start(const nlohmann::json& run, const std::function<void(const std::string&)>& log) = 0;
  // G_ema as GeneratorConfig JSON, its state keys in order and their values back to back.
  // `alive` is called every few seconds while it works (other trainers wait meanwhile). Returns
  // one result per metric, shaped as the reference's result dict.
  virtual std::vector<nlohmann::json> evaluate(const nlohmann::json& G, const std::vector<std::string>& keys,
                                               const std::vector<float>& flat, const std::function<void()>& alive) = 0;
  // Appends a result to <run_dir>/metric-<name>.jsonl, as the metrics rank does; returns a short
  // human-readable summary ("fid50k_full 12.34").
  virtual std::string report(const nlohmann::json& result, const std::string& run_dir, const std::string& checkpoint) = 0;
};

struct TrainRequest {
  TrainOptions options;         // flags (unresolved)
  std::string resume;           // "", "latest" or a checkpoint path
  bool dry_run = false;
  const std::atomic<int>* stop = nullptr;  // non-zero: checkpoint and return 3
  // Multi-rank runs (set by the launcher): the trainer ranks' hosts (index = trainer rank), the
  // topology summary logged once, and on trainer rank 0 the link to the metrics rank.
  std::vector<std::string> hosts;
  std::string topology;
  sharding::MetricsLink* metrics = nullptr;
  bool wait_metrics = false;
  double metrics_timeout_s = 600;
  // Rank 0 writes TensorBoard event files into the run directory (a new one per start or resume):
  // every stats.jsonl mean at each tick, the fakes grid at each snapshot; the metrics rank adds
  // its results to a file of its own under <run>/metrics/ (`train --tensorboard off`: none).
  bool tensorboard = true;
  // No metrics rank: metrics evaluated in this process at snapshots (set on every trainer rank;
  // rank 0 evaluates, the others wait). Null: none.
  SnapshotMetrics* local_metrics = nullptr;
};

// Returns the process exit code: 0 done, 3 stopped on request after a checkpoint.
// Errors throw with a one-line message.
int run_training(const TrainRequest& req, sharding::Communicator& comm);

// The run directory a finished/stopped run_training used (for tests and scripts).
const std::string& last_run_dir();

struct BenchRequest {
  int resolution = 32, channels = 3, cbase = 4096, cmax = 128, batch = 8, iters = 16, threads = 1;
  std::string aug = "noaug";
  uint64_t seed = 0;
  std::string device = "cpu";    // auto | cpu | cuda | cuda:N (one GPU per rank on a host)
  std::string overlap = "both";  // on | off | both (alternating blocks of iterations, both reported)
  int pairs = 1;                 // blocks per overlap mode when both
  double bucket_mb = 25;         // gradient bucket size (the first bucket is at most 1 MiB)
  std::string cfg;               // a preset (e.g. auto, paper256) instead of --cbase/--cmax/--map/--mbstd
  bool fp32 = true, nhwc = false; // as train --fp32 / --nhwc (mixed precision on GPUs)
  std::string cpu_conv = "auto";  // as train --cpu-conv
};
// Times `iters` training iterations on reals held in memory; prints sec/kimg last. With a
// multi-rank communicator the batch is split across its ranks and the share of the step spent in
// gradient synchronisation is printed too.
int run_bench(const BenchRequest& req, sharding::Communicator& comm);

// `styleforge bench-comm`: bus bandwidth 2(n-1)/n * bytes / time of the gradient sync (buckets of
// tensors) and of `raw` (a plain allreduce of one buffer of the same bytes, supplied by the caller).
struct BenchCommRow {
  int64_t bytes = 0;
  double ours_s = 0, raw_s = 0, ours_busbw = 0, raw_busbw = 0;
  double flat_s = 0;  // the communicator's own allreduce of one flat buffer
};
std::vector<BenchCommRow> run_bench_comm(const std::vector<int64_t>& bytes, int iters, sharding::Communicator& comm,
                                         const std::function<void(float*, size_t)>& raw);

}  // namespace sf::trainer
