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
  if (compute_done_) cudaEventDestroy(compute_done_);
  if (stream_) cudaStreamDestroy(stream_);
}

std::string NcclCommunicator::describe() const {
  int v = 0;
  ncclGetVersion(&v);
  return "nccl " + std::to_string(v) + " x" + std::to_string(size_) + " (device " + std::to_string(device_) + ")";
}

void NcclCommunicator::wait(const char* what) {
  poll(what, [this] { return cudaStreamQuery(stream_); });
}

void NcclCommunicator::wait_event(cudaEvent_t event, const char* what) {
  poll(what, [event] { return cudaEventQuery(event); });
}

void NcclCommunicator::poll(const char* what, const std::function<cudaError_t()>& query) {
  const auto start = std::chrono::steady_clock::now();
  while (true) {
    const cudaError_t q = query();
    if (q == cudaSuccess) return;
    if (q != cudaErrorNotReady) SF_CUDA_CHECK(q);
    ncclResult_t async = ncclSuccess;
    SF_NCCL_CHECK(ncclCommGetAsyncError(comm_, &async));
    if (async != ncclSuccess && async != ncclInProgress) {
      ncclCommAbort(comm_);
      aborted_ = true;
      fail(rank_, std::string(what) + " on GPU " + std::to_string(device_) + ": NCCL error " +
                      ncclGetErrorString(async) + "; communicator aborted");
    }
    if (timeout_s_ > 0 &&
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > timeout_s_) {
      ncclCommAbort(comm_);
      aborted_ = true;
      std::ostringstream s;
      s << what << " on GPU " << device_ << " did not complete within " << timeout_s_
        << " s (a peer rank stopped?); communicator aborted";
      fail(rank_, s.str());
    }
    std::this_thread::yield();
  }
}

class NcclReducer final : public BucketReducer {
 public:
  NcclReducer(NcclCommunicator& c, std::function<void*()> compute) : c_(c), compute_(std::move(compute)) {
    int rank_ = c_.rank_;
    SF_CUDA_CHECK(cudaEventCreateWithFlags(&done_[0], cudaEventDisableTiming));
    SF_CUDA_CHECK(cudaEventCreateWithFlags(&done_[1], cudaEventDisableTiming));
  }
  ~NcclReducer() override {
    for (cudaEvent_t e : ready_) cudaEventDestroy(e);
    for (cudaEvent_t e : done_) cudaEventDestroy(e);
  }
  void launch(float* data, size_t count) override {
    int rank_ = c_.rank_;
    if (used_ == ready_.size()) {
      cudaEvent_t e;
      SF_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
      ready_.push_back(e);
    }
    cudaEvent_t ready = ready_[used_++];
    SF_CUDA_CHECK(cudaEventRecord(ready, static_cast<cudaStream_t>(compute_())));
    SF_CUDA_CHECK(cudaStreamWaitEvent(c_.stream_, ready, 0));
    SF_NCCL_CHECK(ncclAllReduce(data, data, count, ncclFloat32, ncclAvg, c_.comm_, c_.stream_));
  }
  void finish() override {
    int rank_ = c_.rank_;
    const auto t0 = std::chrono::steady_clock::now();
    cudaEvent_t done = done_[cur_];
    SF_CUDA_CHECK(cudaEventRecord(done, c_.stream_));
    SF_CUDA_CHECK(cudaStreamWaitEvent(static_cast<cudaStream_t>(compute_()), done, 0));
    // The previous finish's reductions must have completed by now (or within the deadline).
    if (pending_[1 - cur_]) c_.wait_event(done_[1 - cur_], "gradient allreduce");
    pending_[cur_] = true;
    cur_ = 1 - cur_;
    used_ = 0;
    exposed_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  std::string describe() const override { return "overlapped (" + c_.describe() + ")"; }

 private:
  NcclCommunicator& c_;
  std::function<void*()> compute_;
  std::vector<cudaEvent_t> ready_;
  size_t used_ = 0;
  cudaEvent_t done_[2] = {nullptr, nullptr};
  bool pending_[2] = {false, false};
  int cur_ = 0;
};

std::unique_ptr<BucketReducer> NcclCommunicator::make_reducer(std::function<void*()> compute_stream) {
  SF_CUDA_CHECK(cudaSetDevice(device_));
  return std::make_unique<NcclReducer>(*this, std::move(compute_stream));
}

void NcclCommunicator::allreduce_sum(float* data, size_t count) { allreduce_sum_many({{data, count}}); }

void NcclCommunicator::allreduce_sum_many(const std::vector<std::pair<float*, size_t>>& buffers) {
  allreduce_many(buffers, ncclSum);
}

void NcclCommunicator::allreduce_mean_many(const std::vector<std::pair<float*, size_t>>& buffers) {
  allreduce_many(buffers, ncclAvg);
}

void NcclCommunicator::after_compute() {
  if (!compute_done_) SF_CUDA_CHECK(cudaEventCreateWithFlags(&compute_done_, cudaEventDisableTiming));
  cudaStream_t compute = compute_ ? static_cast<cudaStream_t>(compute_()) : cudaStreamLegacy;
  SF_CUDA_CHECK(cudaEventRecord(compute_done_, compute));
  SF_CUDA_CHECK(cudaStreamWaitEvent(stream_, compute_done_, 0));
}

void NcclCommunicator::allreduce_many(const std::vector<std::pair<float*, size_t>>& buffers, ncclRedOp_t op) {
  after_compute();
  SF_NCCL_CHECK(ncclGroupStart());
  for (const auto& [p, n] : buffers) SF_NCCL_CHECK(ncclAllReduce(p, p, n, ncclFloat32, op, comm_, stream_));
  SF_NCCL_CHECK(ncclGroupEnd());
  wait("allreduce");
}

void NcclCommunicator::allreduce_sum(double* host_data, size_t count) { mpi_.allreduce_sum(host_data, count); }

void NcclCommunicator::broadcast(void* data, size_t bytes, int root) {
  after_compute();
  SF_NCCL_CHECK(ncclBroadcast(data, data, bytes, ncclUint8, root, comm_, stream_));
  wait("broadcast");
}

void NcclCommunicator::barrier() { mpi_.barrier(); }

}  // namespace sf::sharding
