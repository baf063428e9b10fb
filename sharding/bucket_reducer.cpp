#include "sharding/bucket_reducer.h"

#include <mpi.h>

#include <chrono>

namespace sf::sharding {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

void DeferredReducer::launch(float* data, size_t count) { pending_.emplace_back(data, count); }

void DeferredReducer::finish() {
  const auto t0 = std::chrono::steady_clock::now();
  if (!pending_.empty()) comm_.allreduce_mean_many(pending_);
  pending_.clear();
  exposed_s_ += seconds_since(t0);
}

ThreadedReducer::ThreadedReducer(Communicator& comm) : comm_(comm), worker_([this] { run(); }) {}

ThreadedReducer::~ThreadedReducer() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  worker_.join();
}

void ThreadedReducer::launch(float* data, size_t count) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.emplace_back(data, count);
    ++in_flight_;
  }
  cv_.notify_one();
}

void ThreadedReducer::finish() {
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(mu_);
  done_cv_.wait(lock, [this] { return in_flight_ == 0; });
  exposed_s_ += seconds_since(t0);
  if (error_) {
    std::exception_ptr e = error_;
    error_ = nullptr;
    std::rethrow_exception(e);
  }
}

void ThreadedReducer::run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
    if (queue_.empty()) return;  // stop_ and nothing left
    const auto bucket = queue_.front();
    queue_.pop_front();
    const bool skip = error_ != nullptr;  // after an error the remaining buckets are dropped
    lock.unlock();
    std::exception_ptr err;
    if (!skip) {
      try {
        comm_.allreduce_mean_many({bucket});
      } catch (...) {
        err = std::current_exception();
      }
    }
    lock.lock();
    if (err && !error_) error_ = err;
    if (--in_flight_ == 0) done_cv_.notify_all();
  }
}

bool mpi_allows_worker_thread() {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  if (!init || fin) return true;
  int level = MPI_THREAD_SINGLE;
  MPI_Query_thread(&level);
  return level >= MPI_THREAD_SERIALIZED;
}

}  // namespace sf::sharding
