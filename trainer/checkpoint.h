// Checkpoints: one HDF5 file per snapshot, `network-snapshot-{kimg:06d}.h5` (with `-{nimg:09d}`
// appended when an earlier snapshot of the run already has that kimg).
//
// Layout (docs in README.md, "Checkpoint format"):
//   /G/<key>, /D/<key>, /G_ema/<key>   every parameter and buffer under its reference key
//   /augment_pipe/p                    float32 scalar (also when augmentation is off: 0)
//   /G_opt/, /D_opt/                   Adam state (exp_avg/, exp_avg_sq/, step/ per key)
//   /state/rng/<name>                  every random generator's state (uint8)
//   root attributes: format "styleforge-checkpoint", format_version, styleforge_version,
//   config (JSON {"G": ..., "D": ...}), training_options (JSON), dataset_hash, cur_nimg,
//   cur_tick, batch_idx, tick_start_nimg, ada_sign_sum, ada_sign_count, pl_mean, augment_p
// A file with only G/D/G_ema (an imported network) is a valid checkpoint without training state.
//
// write_checkpoint writes to `<path>.tmp-<pid>@<host>` (data/atomic_file.h), checks the close
// (a full disk fails there), fsyncs it and renames it over the destination, so a crash or a
// failed write never leaves a partial checkpoint under the final name or replaces the previous
// one; temporaries of killed writers in the folder are removed first. Every dataset is
// checksummed (data/h5.h) and verified on read. Readers throw std::runtime_error naming the file
// and what is wrong (one line): damage, a training checkpoint missing parts, NaN/inf weights.
// Not thread-safe (serial HDF5).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "trainer/networks.h"
#include "trainer/optim.h"
#include "trainer/train_options.h"

namespace sf::trainer {

struct TrainCounters {
  int64_t cur_nimg = 0;
  int64_t cur_tick = 0;
  int64_t batch_idx = 0;
  int64_t tick_start_nimg = 0;
  double augment_p = 0;
  double ada_sign_sum = 0, ada_sign_count = 0;  // ADA accumulators since the last adjustment
  double pl_mean = 0;
};

struct CheckpointWrite {
  const TrainOptions* options = nullptr;  // null for a network-only file
  const Generator* G = nullptr;
  const Discriminator* D = nullptr;
  const Generator* G_ema = nullptr;
  const Adam* G_opt = nullptr;
  const Adam* D_opt = nullptr;
  TrainCounters counters;
  std::map<std::string, at::Tensor> rngs;  // random generator states (uint8)
};
void write_checkpoint(const std::string& path, const CheckpointWrite& c);

struct CheckpointInfo {
  std::string path;
  GeneratorConfig G;
  DiscriminatorConfig D;
  bool has_D = false;
  bool has_training_state = false;
  std::optional<TrainOptions> options;
  TrainCounters counters;
};
CheckpointInfo read_checkpoint_info(const std::string& path);

// Strict loads (keys and shapes must match). Any pointer may be null to skip that part.
void load_networks(const std::string& path, Generator* G, Discriminator* D, Generator* G_ema);
void load_training_state(const std::string& path, Adam* G_opt, Adam* D_opt, std::map<std::string, at::Tensor>* rngs);

// Snapshot files of a run directory, sorted by kimg (oldest first).
std::vector<std::string> list_snapshots(const std::string& run_dir);
// Deletes all but the newest `keep` snapshots (keep 0: none deleted).
void prune_snapshots(const std::string& run_dir, int keep);

}  // namespace sf::trainer
