// `styleforge selftest`: recompute reference fixtures and compare (torch-free header).
//
// Walks a folder for *.h5 files, reads each file's `kind`, `config` and `notes` attributes,
// rebuilds what they describe, loads `params/`, recomputes every dataset under `outputs/` and
// `grads/`, and prints one line per file with the largest relative error ‖ours − ref‖ / ‖ref‖ and
// where it occurred. Files of kinds it does not know are listed as not checked.
#pragma once

#include <string>
#include <vector>

namespace sf::trainer {

struct SelftestOptions {
  std::string fixtures_dir;
  double tolerance = 1e-5;
  int threads = 0;               // 0: leave LibTorch's default
  std::vector<std::string> kinds;  // empty: all known kinds
  bool verbose = false;          // one line per compared dataset
  bool strict = false;           // no allowance for ill-conditioned results (see selftest.cpp)
  bool float64 = false;          // recompute in float64 instead of the reference's float32
};

// Returns 0 when every file of a known kind was handled and within tolerance, 1 otherwise.
int run_selftest(const SelftestOptions& opts);

// Kinds run_selftest can check.
std::vector<std::string> selftest_kinds();

}  // namespace sf::trainer
