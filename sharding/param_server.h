// Sum-only parameter servers: ranks that add the trainers' gradients so the trainers do not.
//
// With `styleforge train --param-servers S`, world ranks T..T+S-1 (after the T trainers) run
// run_parameter_server() and the trainers use a ParamServerCommunicator. Every float sum or mean
// of a list of buffers is split into S contiguous shards per buffer; trainer t sends shard s of
// every buffer to server s, which adds the T copies in trainer order (so the result does not
// depend on arrival order), divides by T for a mean, and sends the result back to every trainer,
// into the same memory. Adam and everything else stay on the trainers; double statistics,
// broadcasts and barriers go through the trainers' MpiCommunicator as before.
//
// Protocol on the sync communicator (trainers 0..T-1, servers T..T+S-1): per call, each trainer
// sends each server a header {op, n, len_1..len_n} (op: sum, mean, or finish with an exit code),
// then its n shards; the server checks that all T headers agree (an error names the trainer that
// differs), replies with the n results and one int: whether a stop was requested on the server
// (SIGTERM/SIGUSR1 there), which the trainers fold into their own stop flag so that the usual
// coordinated checkpoint follows. Waits poll with the same deadline as every collective; an idle
// server (between calls) sleeps between probes and waits without a deadline, since trainers may
// spend long in checkpoints; a dead trainer ends the job through mpirun or the trainers' timeouts.
// Not thread-safe: one thread per process.
#pragma once

#include <mpi.h>

#include <atomic>
#include <string>
#include <vector>

#include "sharding/mpi_comm.h"

namespace sf::sharding {

class ParamServerCommunicator final : public Communicator {
 public:
  // `trainers`: the trainers' communicator (rank/size, doubles, broadcast, barrier; outlives this).
  // `sync`: trainers then servers, as sharding::sync_comm() builds it. `stop`: set to SIGUSR1's
  // number when a server reports a stop request (may be null).
  ParamServerCommunicator(MpiCommunicator& trainers, MPI_Comm sync, int num_servers, std::atomic<int>* stop);
  ParamServerCommunicator(const ParamServerCommunicator&) = delete;
  ParamServerCommunicator& operator=(const ParamServerCommunicator&) = delete;

  int rank() const override { return trainers_.rank(); }
  int size() const override { return trainers_.size(); }
  void allreduce_sum(float* data, size_t count) override { allreduce_sum_many({{data, count}}); }
  void allreduce_sum(double* data, size_t count) override { trainers_.allreduce_sum(data, count); }
  void allreduce_sum_many(const std::vector<std::pair<float*, size_t>>& buffers) override;
  void allreduce_mean_many(const std::vector<std::pair<float*, size_t>>& buffers) override;
  void broadcast(void* data, size_t bytes, int root) override { trainers_.broadcast(data, bytes, root); }
  void barrier() override { trainers_.barrier(); }
  std::string describe() const override;
  // Ends the servers' loops; they return `exit_code` (the trainers' own). Every trainer calls it
  // once, after training; after an error the launcher aborts the whole job instead.
  void finish(int exit_code);

 private:
  void exchange(const std::vector<std::pair<float*, size_t>>& buffers, int op);
  MpiCommunicator& trainers_;
  MPI_Comm sync_ = MPI_COMM_NULL;
  int num_servers_, num_trainers_;
  std::atomic<int>* stop_;
};

// The server loop: serves exchanges until the trainers finish; returns their exit code. Throws
// CommError on a protocol mismatch or a timeout within an exchange. `stop` (may be null): a
// signal received on this rank, reported to the trainers with every reply.
int run_parameter_server(MPI_Comm sync, int num_trainers, double timeout_s, const std::atomic<int>* stop);

}  // namespace sf::sharding
