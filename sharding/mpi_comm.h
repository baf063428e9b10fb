// MPI implementation of the Communicator, with deadlines instead of hangs.
//
// Every collective is issued non-blocking (MPI_Iallreduce, MPI_Ibcast, MPI_Ibarrier; large float
// sums as a ring of MPI_Isend/MPI_Irecv, below) and then polled with a yield between tests, so that waiting ranks leave the cores to ranks that still
// compute. While polling, non-zero ranks send a heartbeat to rank 0 about once a
// second on a private duplicate of the communicator, and rank 0 records when it last heard from
// each rank. A collective that does not complete within the timeout throws CommError naming this
// rank and host, the operation, and (on rank 0) the ranks not heard from recently — the ranks that
// are most likely dead. The launcher turns an uncaught error into MPI_Abort of the whole job.
//
// Float buffers of at least kRingMinBytes are summed by a ring allreduce of our own: a
// reduce-scatter in n-1 steps (each rank adds the chunk arriving from its left neighbour, in
// segments of kRingSegmentFloats so that adding overlaps the next receive) and an allgather in
// n-1 steps. Each rank sends 2(n-1)/n of the buffer, the bandwidth optimum; on shared memory this
// is as fast as Open MPI's blocking MPI_Allreduce and several times faster than its non-blocking
// MPI_Iallreduce for 25–100 MB buckets (`styleforge bench-comm`). A mean divides each chunk once,
// on its owner, between the two halves. Every rank ends with the same bits (the allgather copies
// the owner's chunk); the order of additions depends on the chunk, not on timing.
//
// MpiCommunicator owns its duplicated MPI_Comm handles (freed in the destructor, before
// MPI_Finalize). Not thread-safe: one thread at a time calls it (MPI_THREAD_SERIALIZED; the gradient
// worker of sharding/bucket_reducer.h takes turns with the training thread).
#pragma once

#include <mpi.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include "sharding/communicator.h"

namespace sf::sharding {

class CommError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Checks an MPI return code; throws CommError with the call, rank, host, file and line.
void check_mpi(int rc, const char* call, const char* file, int line);
#define SF_MPI_CHECK(call) ::sf::sharding::check_mpi((call), #call, __FILE__, __LINE__)

std::string host_name();

class MpiCommunicator final : public Communicator {
 public:
  // Duplicates `comm`. timeout_s <= 0 means wait forever.
  MpiCommunicator(MPI_Comm comm, double timeout_s);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void allreduce_sum(float* data, size_t count) override;
  void allreduce_sum(double* data, size_t count) override;
  void allreduce_sum_many(const std::vector<std::pair<float*, size_t>>& buffers) override;
  void allreduce_mean_many(const std::vector<std::pair<float*, size_t>>& buffers) override;
  void broadcast(void* data, size_t bytes, int root) override;
  void barrier() override;
  std::string describe() const override;
  MPI_Comm comm() const { return comm_; }
  double timeout_s() const { return timeout_s_; }
  // Polls `reqs` (on any communicator) to completion with this communicator's deadline and
  // heartbeats; throws CommError naming `what` on timeout.
  void wait_all(std::vector<MPI_Request>& reqs, const char* what);

 private:
  static constexpr size_t kRingMinBytes = 256 << 10;
  static constexpr size_t kRingSegmentFloats = 256 << 10;  // 1 MiB

  void allreduce_many(const std::vector<std::pair<float*, size_t>>& buffers, bool mean);
  void ring_allreduce(float* data, size_t count, bool mean);
  void heartbeat_tick();
  MPI_Comm comm_ = MPI_COMM_NULL, hb_comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
  double timeout_s_;
  std::string host_;
  std::chrono::steady_clock::time_point last_sent_;
  std::vector<std::chrono::steady_clock::time_point> last_heard_;  // rank 0: every rank; others: rank 0
  int hb_payload_ = 0;
  std::vector<float> ring_tmp_;  // two receive segments
};

}  // namespace sf::sharding
