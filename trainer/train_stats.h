// Training statistics and the ADA controller.
//
// StatsCollector follows the reference's training_stats: report(name, values) adds the count, sum
// and sum of squares of the values to a float64 accumulator that stays on the values' device;
// nothing is read back until finish(), which sums every accumulator over the trainer ranks in one
// collective (names in sorted order, so every rank issues the same reduction) and returns
// {name: {num, mean, std}} as stats.jsonl writes it, then starts over. report0() counts a value
// on rank 0 only (the reference's report0), so its reduced num is 1.
//
// AdaController is the reference's adaptive augmentation rule: every `interval` iterations,
// p += sign(mean(sign(D(real))) - target) * batch * interval / (ada_kimg * 1000), never below 0.
// The sign sums are accumulated on the device (AdaSignal) and reduced over all ranks at the
// update, so p is identical on every rank.
// Neither class is thread-safe.
#pragma once

#include <ATen/core/Tensor.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "sharding/communicator.h"

namespace sf::trainer {

class StatsCollector {
 public:
  explicit StatsCollector(int rank = 0) : rank_(rank) {}
  void report(const std::string& name, const at::Tensor& values);
  void report0(const std::string& name, double value);
  // Reduces over `comm`, returns {name: {"num", "mean", "std"}} for names with num > 0, resets.
  nlohmann::json finish(sharding::Communicator& comm);

 private:
  int rank_;
  std::map<std::string, at::Tensor> acc_;  // name -> float64 [count, sum, sum of squares]
};

class AdaSignal {
 public:
  void add(const at::Tensor& real_logits);  // accumulates sum(sign(logits)) and the count
  // Reduces over `comm` and resets; returns {sum, count} over all ranks.
  std::pair<double, double> take(sharding::Communicator& comm);
  // Local accumulators as two doubles (for checkpoints) and back.
  std::pair<double, double> local() const;
  void set_local(double sum, double count);

 private:
  at::Tensor acc_;  // float64 [sum, count]
};

struct AdaController {
  double target = 0.6;
  int interval = 4;
  double ada_kimg = 500;
  int batch_size = 0;  // global batch
  // The new p from the current one and the reduced sign sum and count (count 0: unchanged).
  double next_p(double p, double sign_sum, double count) const {
    if (count <= 0) return p;
    const double mean = sign_sum / count;
    const double sign = mean > target ? 1.0 : (mean < target ? -1.0 : 0.0);
    const double adjust = sign * (static_cast<double>(batch_size) * interval) / (ada_kimg * 1000);
    const double np = p + adjust;
    return np > 0 ? np : 0.0;
  }
};

}  // namespace sf::trainer
