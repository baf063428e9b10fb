// Batch-invariant inference (`generate`): while a guard lives on a thread, the dense layers it runs
// (trainer/networks.h FullyConnectedLayer) compute each row as a product of its own (a batched
// matrix product of 1-row matrices, which gives the same values as a batch of one) instead of one
// matrix product of all rows, whose blocking, and so rounding, depends on the number of rows.
// An image then depends only on its inputs, not on the batch it was computed in. The convolutions
// of a synthesis network in eval mode are grouped per sample and need nothing.
// Torch-free; the flag is per thread.
#pragma once

namespace sf::trainer {

class BatchInvariantGuard {
 public:
  BatchInvariantGuard();
  ~BatchInvariantGuard();
  BatchInvariantGuard(const BatchInvariantGuard&) = delete;
  BatchInvariantGuard& operator=(const BatchInvariantGuard&) = delete;
  static bool active();

 private:
  bool prev_;
};

}  // namespace sf::trainer
