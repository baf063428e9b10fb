// `styleforge selftest`: recompute reference fixtures and compare (torch-free header).
//
// Walks a folder for *.h5 files, reads each file's `kind`, `config` and `notes` attributes,
// rebuilds what they describe, loads `params/`, recomputes every dataset under `outputs/` and
// `grads/`, and prints one line per file with the largest relative error ‖ours − ref‖ / ‖ref‖ and
// where it occurred. Files of kinds it does not know are listed as not checked.
#pragma once

#include <functional>
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
  std::string conv = "auto";     // CPU 3x3 convolutions: auto (as training), aten or winograd
};

// Returns 0 when every file of a known kind was handled and within tolerance, 1 otherwise.
int run_selftest(const SelftestOptions& opts);

// Kinds run_selftest can check (built-in and registered).
std::vector<std::string> selftest_kinds();

// Kinds checked outside trainer/ (metrics/ adds `fid_kid` and `detector`). The handler opens the
// fixture itself, recomputes what it describes and returns one entry per compared dataset; it
// throws std::exception for anything it cannot handle (reported as FAIL). run_selftest prints
// and judges the entries as it does its own kinds (no ±1 ulp allowance for these).
struct SelftestFile {
  std::string path;          // the fixture file
  std::string kind, notes;   // its attributes
  std::string config_json;   // its `config` attribute ("{}" when absent)
  bool float64 = false;      // --float64 was given
};
struct SelftestComparison {
  std::string name;          // e.g. "outputs/fid"
  double rel_err = 0;        // ‖ours − ref‖ / ‖ref‖
  double tolerance = 0;      // this dataset's tolerance; 0: the run's --tolerance
};
using SelftestKindHandler = std::function<std::vector<SelftestComparison>(const SelftestFile&)>;
// Adds (or replaces) a kind; built-in kinds cannot be replaced. Not thread-safe: register before
// run_selftest (explicitly: static-initialiser registration would be dropped by the linker).
void register_selftest_kind(const std::string& kind, SelftestKindHandler handler);

}  // namespace sf::trainer
