// Helpers shared by the data-layer tests: fixture location and scratch folders.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>

#include "data/bench.h"

namespace sf::test {

// The fixtures folder: $STYLEFORGE_FIXTURES, else ../shared/fixtures next to the source tree.
inline std::string fixtures_dir() {
  if (const char* e = std::getenv("STYLEFORGE_FIXTURES")) return e;
  return (std::filesystem::path(STYLEFORGE_SOURCE_DIR) / ".." / "shared" / "fixtures").lexically_normal().string();
}
inline std::string fixture(const std::string& rel) { return fixtures_dir() + "/" + rel; }

// A fresh scratch folder removed when the object goes out of scope.
struct ScratchDir {
  std::filesystem::path path;
  explicit ScratchDir(const std::string& tag) {
    path = std::filesystem::temp_directory_path() / ("sf_data_" + tag + "_" + std::to_string(::getpid()));
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

// A small synthetic pack (24 gray 16x16 images with labels, contents drawn from `seed`), written
// once per test process and seed and removed when the process exits.
inline const std::string& tiny_pack(uint32_t seed) {
  struct Packs {
    std::map<uint32_t, std::string> paths;
    pid_t owner = ::getpid();  // forked children that leave with exit() must not remove them
    ~Packs() {
      if (::getpid() != owner) return;
      std::error_code ec;
      for (const auto& [s, p] : paths) std::filesystem::remove(p, ec);
    }
  };
  static Packs packs;
  auto it = packs.paths.find(seed);
  if (it == packs.paths.end()) {
    const std::string p = (std::filesystem::temp_directory_path() /
                           ("sf_tiny_pack_" + std::to_string(::getpid()) + "_" + std::to_string(seed) + ".h5"))
                              .string();
    data::make_synthetic_pack(p, 24, 16, 1, seed, true);
    it = packs.paths.emplace(seed, p).first;
  }
  return it->second;
}

// Runs a shell command; returns its exit code (-1 if it did not exit) and stdout + stderr.
struct CliResult {
  int rc;
  std::string out;
};
inline CliResult run_shell(const std::string& cmd) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  std::string out;
  char buf[4096];
  while (p && fgets(buf, sizeof buf, p)) out += buf;
  const int status = p ? pclose(p) : -1;
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

#ifdef STYLEFORGE_BINARY
// Runs `styleforge ARGS` (the binary of this build; defined in full builds only).
inline CliResult run_styleforge(const std::string& args) { return run_shell(std::string(STYLEFORGE_BINARY) + " " + args); }
#endif

}  // namespace sf::test
