#include "sharding/nccl_comm.h"

#include <chrono>
#include <sstream>
#include <thread>

namespace sf::sharding {
namespace {

[[noreturn]] void fail(int rank, const std::string& what) {
  throw CommError("rank " + std::to_string(rank) + " (" + host_name() + "): " + what);
}

}  // namespace

#define SF_NCCL_CHECK(call)                                                                           \
  do {                                                                                                \
    ncclResult_t r_ = (call);                                                                         \
    if (r_ != ncclSuccess && r_ != ncclInProgress)                                                    \
      fail(rank_, std::string(#call) + " failed: " + ncclGetErrorString(r_) + " [" + __FILE__ + ":" + \
                      std::to_string(__LINE__) + "]");                                                \
  } while (0)
#define SF_CUDA_CHECK(call)                                                                           \
  do {                                                                                                \
    cudaError_t e_ = (call);                                                                          \
    if (e_ != cudaSuccess)                                                                            \
      fail(rank_, std::string(#call) + " failed: " + cudaGetErrorString(e_) + " [" + __FILE__ + ":" + \
                      std::to_string(__LINE__) + "]");                                                \
  } while (0)

NcclCommunicator::NcclCommunicator(MpiCommunicator& mpi, int device, double timeout_s)
    : mpi_(mpi), rank_(mpi.rank()), size_(mpi.size()), device_(device), timeout_s_(timeout_s) {
  SF_CUDA_CHECK(cudaSetDevice(device_));
  SF_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  ncclUniqueId id;
  if (rank_ == 0) SF_NCCL_CHECK(ncclGetUniqueId(&id));
  mpi_.broadcast(&id, sizeof id, 0);
  // Non-blocking init so that a missing peer times out instead of hanging.
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  SF_NCCL_CHECK(ncclCommInitRankConfig(&comm_, size_, id, rank_, &config));
  const auto start = std::chrono::steady_clock::now();
  while (true) {
    ncclResult_t state = ncclSuccess;
    SF_NCCL_CHECK(ncclCommGetAsyncError(comm_, &state));
    if (state == ncclSuccess) break;
    if (state != ncclInProgress) fail(rank_, std::string("NCCL init failed: ") + ncclGetErrorString(state));
    if (timeout_s_ > 0 &&
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > timeout_s_) {
      ncclCommAbort(comm_);
      comm_ = nullptr;
      fail(rank_, "NCCL init did not complete within the timeout");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

NcclCommunicator::~NcclCommunicator() {
  if (comm_ && !aborted_) ncclCommDestroy(comm_);
  if (stream_) cudaStreamDestroy(stream_);
}

std::string NcclCommunicator::describe() const {
  int v = 0;
  ncclGetVersion(&v);
  return "nccl " + std::to_string(v) + " x" + std::to_string(size_) + " (device " + std::to_string(device_) + ")";
}

void NcclCommunicator::wait(const char* what) {
  const auto start = std::chrono::steady_clock::now();
  while (true) {
    const cudaError_t q = cudaStreamQuery(stream_);
    if (q == cudaSuccess) return;
    if (q != cudaErrorNotReady) SF_CUDA_CHECK(q);
    ncclResult_t async = ncclSuccess;
    SF_NCCL_CHECK(ncclCommGetAsyncError(comm_, &async));
    if (async != ncclSuccess && async != ncclInProgress) {
      ncclCommAbort(comm_);
      aborted_ = true;
      fail(rank_, std::string(what) + ": NCCL error " + ncclGetErrorString(async) + "; communicator aborted");
    }
    if (timeout_s_ > 0 &&
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > timeout_s_) {
      ncclCommAbort(comm_);
      aborted_ = true;
      std::ostringstream s;
      s << what << " did not complete within " << timeout_s_ << " s; communicator aborted";
      fail(rank_, s.str());
    }
    std::this_thread::yield();
  }
}

void NcclCommunicator::allreduce_sum(float* data, size_t count) { allreduce_sum_many({{data, count}}); }

void NcclCommunicator::allreduce_sum_many(const std::vector<std::pair<float*, size_t>>& buffers) {
  allreduce_many(buffers, ncclSum);
}

void NcclCommunicator::allreduce_mean_many(const std::vector<std::pair<float*, size_t>>& buffers) {
  allreduce_many(buffers, ncclAvg);
}

void NcclCommunicator::allreduce_many(const std::vector<std::pair<float*, size_t>>& buffers, ncclRedOp_t op) {
  SF_NCCL_CHECK(ncclGroupStart());
  for (const auto& [p, n] : buffers) SF_NCCL_CHECK(ncclAllReduce(p, p, n, ncclFloat32, op, comm_, stream_));
  SF_NCCL_CHECK(ncclGroupEnd());
  wait("allreduce");
}

void NcclCommunicator::allreduce_sum(double* host_data, size_t count) { mpi_.allreduce_sum(host_data, count); }

void NcclCommunicator::broadcast(void* data, size_t bytes, int root) {
  SF_NCCL_CHECK(ncclBroadcast(data, data, bytes, ncclUint8, root, comm_, stream_));
  wait("broadcast");
}

void NcclCommunicator::barrier() { mpi_.barrier(); }

}  // namespace sf::sharding
