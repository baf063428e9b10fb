// Up-front validation of `styleforge train` flags, before MPI starts and before any rank does
// work: ranges, NaN/inf, combinations (parameter servers vs ranks), metric names, and conflicts
// with a checkpoint given to --resume (a changed architecture or batch is an error naming both
// values; the checkpoint is said to be a training state or a network). Every problem is one line.
//
// Torch-free header; the implementation reads checkpoint attributes (no tensors). Reentrant.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "trainer/train_options.h"

namespace sf::trainer {

// Flags of `train` that TrainOptions does not hold.
struct TrainLaunch {
  std::string resume;                 // --resume ("", "latest", a file or a named network)
  double timeout_s = 600;             // --timeout
  int gpus = 0;                       // --gpus
  int param_servers = 0;              // --param-servers
  bool grid_given = false;            // --grid was on the command line
  std::vector<std::string> metrics;   // --metrics names (none removed)
  bool metrics_rank = false;          // a metrics rank will be started
  // Throws std::exception for an unknown metric name (metrics::parse_metric); may be empty.
  std::function<void(const std::string&)> check_metric;
};

// "" when everything is acceptable, else the first problem as one line (without a prefix).
// `world_size` is the number of ranks of this job (from the launcher's environment), 1 when
// not started by mpirun/srun. `note` receives an informational line about --resume (may be null).
std::string validate_options(const TrainOptions& o, const TrainLaunch& l, int world_size, std::string* note = nullptr);

// The CLI step: validates with the job's world size from the environment; on a problem prints
// "styleforge train: <problem>" (on launcher rank 0 only) and returns 2 (usage), else prints the
// --resume note (rank 0) and returns 0.
int check_train_options(const TrainOptions& o, const TrainLaunch& l);

}  // namespace sf::trainer
