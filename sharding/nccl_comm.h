// NCCL implementation of the Communicator, for CUDA tensors (built when nccl.h and the CUDA
// runtime are found; see CMakeLists.txt option STYLEFORGE_WITH_NCCL).
//
// Bootstrap: rank 0 of the given MPI communicator creates the ncclUniqueId and broadcasts it over
// MPI; every rank then joins with ncclCommInitRank on the device it was bound to. Collectives run
// on the communicator's own CUDA stream; every wait polls cudaStreamQuery together with
// ncclCommGetAsyncError and, on an error or after the timeout, calls ncclCommAbort and throws
// CommError naming the rank, host and operation (so a dead peer never hangs the job). Buffers
// are device pointers. Host-side (double) reductions — statistics — go through the MPI
// communicator given at construction, which must outlive this object.
// Not thread-safe; owned by the training thread.
#pragma once

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <functional>
#include <memory>
#include <string>

#include "sharding/bucket_reducer.h"
#include "sharding/mpi_comm.h"

namespace sf::sharding {

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(MpiCommunicator& mpi, int device, double timeout_s);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void allreduce_sum(float* device_data, size_t count) override;
  void allreduce_sum(double* host_data, size_t count) override;  // statistics: through MPI
  void allreduce_sum_many(const std::vector<std::pair<float*, size_t>>& device_buffers) override;
  void allreduce_mean_many(const std::vector<std::pair<float*, size_t>>& device_buffers) override;  // ncclAvg
  void broadcast(void* device_data, size_t bytes, int root) override;
  void barrier() override;
  std::string describe() const override;
  cudaStream_t stream() const { return stream_; }
  // Gradient buckets reduced while backward runs: each launch records an event on the compute
  // stream (`compute_stream()`, called at every launch/finish: the stream backward runs on, e.g.
  // LibTorch's current stream) and makes NCCL's stream wait for it, so NCCL never reads a gradient
  // that backward may still write; finish() makes the compute stream wait for the last allreduce
  // (no host wait) and checks the previous iteration's reductions with the deadline, so a dead
  // peer is reported (rank, host, GPU) instead of hanging and the host runs at most one iteration
  // ahead of the reductions.
  std::unique_ptr<BucketReducer> make_reducer(std::function<void*()> compute_stream);
  // The stream that produces the buffers of the blocking collectives below (allreduce_*,
  // broadcast): they first wait for everything already queued on it. Unset: the legacy default
  // stream is used (cudaStreamNonBlocking streams do not synchronise with it implicitly).
  void set_compute_stream(std::function<void*()> compute_stream) { compute_ = std::move(compute_stream); }

 private:
  friend class NcclReducer;
  void wait(const char* what);
  // Polls `event` until it completes, with the deadline and NCCL's async error check.
  void wait_event(cudaEvent_t event, const char* what);
  // Polls `query` until cudaSuccess; aborts the communicator on an NCCL error or the deadline.
  void poll(const char* what, const std::function<cudaError_t()>& query);
  void allreduce_many(const std::vector<std::pair<float*, size_t>>& buffers, ncclRedOp_t op);
  void after_compute();  // orders stream_ after the compute stream
  std::function<void*()> compute_;
  cudaEvent_t compute_done_ = nullptr;
  MpiCommunicator& mpi_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  int rank_ = 0, size_ = 1, device_ = 0;
  double timeout_s_;
  bool aborted_ = false;
};

}  // namespace sf::sharding
