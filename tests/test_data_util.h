// Helpers shared by the data-layer tests: fixture location and scratch folders.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "data/bench.h"

namespace sf::test {

inline std::vector<uint8_t> file_bytes(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

inline void put_bytes(const std::string& p, const std::vector<uint8_t>& b) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// True when `s`, less trailing newlines, is a non-empty message on a single line.
inline bool one_line(std::string s) {
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return !s.empty() && s.find('\n') == std::string::npos;
}

// A NIfTI-1 single-file header: 348 bytes plus 4 extension bytes (352 in all), voxel sizes 1,
// the given dims (dim[0] = dims.size()), data type, bits per voxel, vox_offset and 4-byte magic.
inline std::vector<uint8_t> nifti1_header(const std::vector<int16_t>& dims, int16_t datatype, int16_t bitpix,
                                          float vox_offset, const char* magic = "n+1") {
  std::vector<uint8_t> b(352, 0);
  int32_t hs = 348;
  std::memcpy(&b[0], &hs, 4);
  int16_t dim[8] = {static_cast<int16_t>(dims.size()), 1, 1, 1, 1, 1, 1, 1};
  for (size_t i = 0; i < dims.size(); ++i) dim[i + 1] = dims[i];
  std::memcpy(&b[40], dim, 16);
  std::memcpy(&b[70], &datatype, 2);
  std::memcpy(&b[72], &bitpix, 2);
  float pix[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  std::memcpy(&b[76], pix, 32);
  std::memcpy(&b[108], &vox_offset, 4);
  std::memcpy(&b[344], magic, 4);
  return b;
}

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
