// Process bootstrap for multi-rank runs: MPI start-up, the Slurm sanity check, local ranks from a
// host-hash allgather, and the role of every rank.
//
// MpiSession initialises MPI (MPI_THREAD_SERIALIZED) only when the process was started by an MPI
// or PMIx launcher (mpirun, srun --mpi=pmix), so single-process commands never pay for MPI, and
// finalises it on destruction. discover_topology() is collective over MPI_COMM_WORLD: every rank
// learns every rank's host, its local rank and local size (ranks on the same host, by a hash of
// the host name), and its role: trainers are ranks 0..T-1, then S parameter-server ranks (when
// asked for), and with a metrics rank it is the last rank.
// Under Slurm (SLURM_NTASKS set) it fails when the MPI world size differs from SLURM_NTASKS, which
// is what N independent singletons look like (srun without a working --mpi plugin).
// Not thread-safe; call from the main thread.
#pragma once

#include <mpi.h>

#include <string>
#include <vector>

namespace sf::sharding {

bool launched_by_mpi();

class MpiSession {
 public:
  explicit MpiSession(bool enable);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;
  bool active() const { return active_; }

 private:
  bool active_ = false;
};

enum class Role { Trainer, Server, Metrics };

struct Topology {
  int world_rank = 0, world_size = 1;
  int local_rank = 0, local_size = 1;
  std::string host;
  std::vector<std::string> hosts;  // by world rank
  int num_trainers = 1;
  int num_servers = 0;             // parameter-server ranks: world ranks num_trainers .. +num_servers-1
  int metrics_rank = -1;           // world rank of the metrics rank, -1 when none
  Role role = Role::Trainer;
  std::string describe() const;    // multi-line summary of every rank's host and role
};

// `want_metrics_rank`: reserve the last rank for metrics (needs world size >= 2).
// `param_servers`: reserve that many ranks after the trainers as parameter servers (at least one
// trainer must remain). Throws std::runtime_error on a Slurm size mismatch (message names
// SLURM_NTASKS and the fix) or when too few ranks are left for trainers.
Topology discover_topology(bool want_metrics_rank, int param_servers = 0);

// Splits MPI_COMM_WORLD into the trainers' communicator (MPI_COMM_NULL on other ranks).
MPI_Comm trainer_comm(const Topology& t);
// Trainers and parameter servers in world order (trainers first); MPI_COMM_NULL on the metrics rank.
MPI_Comm sync_comm(const Topology& t);

}  // namespace sf::sharding
