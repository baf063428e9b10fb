// Shared by the libFuzzer harnesses: the readers take file paths, so each input is written to an
// in-memory file (memfd) and read through /proc/self/fd/N. Expected failures (the readers'
// one-line errors) are caught; anything else (a crash, a sanitizer report, an uncaught exception
// type, a hang, an allocation beyond -rss_limit_mb) is a finding.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace sf::fuzz {

// One memfd per process, rewritten for every input.
inline std::string as_file(const uint8_t* data, size_t size, const char* suffix = "") {
  static int fd = -1;
  static std::string base;
  if (fd < 0) {
    fd = memfd_create("sf_fuzz", 0);
    if (fd < 0) std::abort();
    base = "/proc/self/fd/" + std::to_string(fd);
  }
  if (ftruncate(fd, 0) != 0) std::abort();
  size_t done = 0;
  while (done < size) {
    ssize_t n = pwrite(fd, data + done, size - done, static_cast<off_t>(done));
    if (n <= 0) std::abort();
    done += static_cast<size_t>(n);
  }
  (void)suffix;
  return base;
}

// A real file (for readers that pick behaviour from the name, e.g. ".nii").
inline std::string as_named_file(const uint8_t* data, size_t size, const std::string& name) {
  static std::string dir;
  if (dir.empty()) {
    const char* shm = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    dir = std::string(shm) + "/sf_fuzz_" + std::to_string(getpid());
    std::string cmd = "mkdir -p " + dir;
    if (std::system(cmd.c_str()) != 0) std::abort();
  }
  std::string path = dir + "/" + name;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  return path;
}

}  // namespace sf::fuzz
