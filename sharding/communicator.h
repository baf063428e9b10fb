// The communicator interface: every cross-rank operation of training goes through it.
//
// Training code never calls MPI or NCCL directly; it holds a Communicator over the group of
// trainer ranks and issues the same collectives in the same order on every rank. Buffers are
// raw host or device pointers (the tensor edge lives in trainer/), so this header is torch-free.
// LocalCommunicator is the one-rank group: every collective is the identity (a sum over one
// rank), which is what a single-process run uses. MPI and NCCL implementations plug in here.
//
// Thread-safety: a communicator is used from one thread at a time (the training thread).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace sf::sharding {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // In-place sums over all ranks.
  virtual void allreduce_sum(float* data, size_t count) = 0;
  virtual void allreduce_sum(double* data, size_t count) = 0;
  // Several in-place sums issued together (buckets); the default runs them one by one.
  virtual void allreduce_sum_many(const std::vector<std::pair<float*, size_t>>& buffers) {
    for (const auto& [p, n] : buffers) allreduce_sum(p, n);
  }
  // In-place means over all ranks: the sum divided by size() in float32, as gradient sync needs
  // (each implementation places the division where it is cheapest).
  virtual void allreduce_mean_many(const std::vector<std::pair<float*, size_t>>& buffers) = 0;
  // Copies `bytes` bytes from `root` to every rank.
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  virtual void barrier() = 0;
  // A short description for logs ("local", "mpi x4", "nccl x8").
  virtual std::string describe() const = 0;
};

class LocalCommunicator final : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  void allreduce_sum(float*, size_t) override {}
  void allreduce_sum(double*, size_t) override {}
  void allreduce_sum_many(const std::vector<std::pair<float*, size_t>>&) override {}
  void allreduce_mean_many(const std::vector<std::pair<float*, size_t>>&) override {}
  void broadcast(void*, size_t, int) override {}
  void barrier() override {}
  std::string describe() const override { return "local"; }
};

}  // namespace sf::sharding
