// `styleforge bench-ops`: each fused op against the ATen formulation it replaces, on the same
// inputs, device and threads, alternating the two paths; prints the median time of each and the
// ratio fused/ATen per case. This is what decides which path is a device's default
// (trainer/ops.h, trainer/optim.h). Torch-free header.
#pragma once

#include <ostream>
#include <string>

namespace sf::trainer {

struct BenchOpsOptions {
  std::string device = "cpu";  // cpu | cuda | cuda:N
  int threads = 1;             // LibTorch intra-op threads
  int iters = 9;               // timed repetitions per path (median reported)
  std::string shapes = "auto"; // auto: the CPU bench's sizes on the CPU, 256x256 --cfg auto's on CUDA
  std::string only;            // a substring of the case names, empty: all
};

// Prints one line per case; returns 0.
int run_bench_ops(const BenchOpsOptions& o, std::ostream& out);

}  // namespace sf::trainer
