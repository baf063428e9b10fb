// Gradient buckets reduced while backward still runs (the design of PyTorch DDP's reducer).
//
// The training step hands each bucket to a BucketReducer as soon as backward has produced every
// gradient in it during the last accumulation round (launch), and waits for all of them only
// before the optimizer step (finish). Every rank must launch the same buckets in the same order.
// After finish() each launched buffer holds the mean over the ranks.
//
// Implementations:
// - DeferredReducer: launch() only records; finish() reduces everything at once. The behaviour
//   without overlap (`--no-overlap`, and for measuring what overlap saves).
// - ThreadedReducer: a worker thread reduces buckets in launch order through a host Communicator
//   (the MPI ring, parameter servers) while the training thread continues backward. MPI must have
//   been initialised with at least MPI_THREAD_SERIALIZED: between the first launch() and the return
//   of finish() only the worker calls the communicator; the training thread calls MPI only outside
//   that window (statistics, stop requests, checkpoints).
// - NCCL: NcclCommunicator::make_reducer (sharding/nccl_comm.h) orders NCCL's stream after the
//   compute stream with CUDA events; finish() makes the compute stream wait, without a host wait.
//
// exposed_seconds() is the time the training thread spent inside finish() (waiting for the
// reduction that backward did not hide): what `styleforge bench` reports as sync wait.
// Thread-safety: launch() may be called from an autograd thread, finish() from the training
// thread; one backward pass at a time.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "sharding/communicator.h"

namespace sf::sharding {

class BucketReducer {
 public:
  virtual ~BucketReducer() = default;
  virtual void launch(float* data, size_t count) = 0;
  virtual void finish() = 0;
  virtual std::string describe() const = 0;
  double exposed_seconds() const { return exposed_s_; }

 protected:
  double exposed_s_ = 0;
};

class DeferredReducer final : public BucketReducer {
 public:
  explicit DeferredReducer(Communicator& comm) : comm_(comm) {}
  void launch(float* data, size_t count) override;
  void finish() override;
  std::string describe() const override { return "deferred (" + comm_.describe() + ")"; }

 private:
  Communicator& comm_;
  std::vector<std::pair<float*, size_t>> pending_;
};

class ThreadedReducer final : public BucketReducer {
 public:
  explicit ThreadedReducer(Communicator& comm);
  ~ThreadedReducer() override;
  ThreadedReducer(const ThreadedReducer&) = delete;
  ThreadedReducer& operator=(const ThreadedReducer&) = delete;
  void launch(float* data, size_t count) override;
  // Rethrows the first error of the worker (a CommError naming the rank and the silent peers).
  void finish() override;
  std::string describe() const override { return "overlapped (" + comm_.describe() + ")"; }

 private:
  void run();
  Communicator& comm_;
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  std::deque<std::pair<float*, size_t>> queue_;
  size_t in_flight_ = 0;  // queued or being reduced
  bool stop_ = false;
  std::exception_ptr error_;
  std::thread worker_;
};

// True when MPI is not in use or was initialised with MPI_THREAD_SERIALIZED or better.
bool mpi_allows_worker_thread();

}  // namespace sf::sharding
