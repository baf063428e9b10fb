// Helpers of the robustness tests: a risky call run in a forked child with an alarm and an optional
// address-space limit, so that a crash or a hang is reported as such instead of ending the test
// run; a small tmpfs to fill up.
#pragma once

#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <string>
#include <system_error>
#include <vector>

namespace sf::test {

// What a forked child did: exit code, or the signal that ended it; its message (one write).
struct Child {
  bool exited = false;
  int code = -1;
  int signal = 0;
  std::string msg;
  std::string describe() const {
    return exited ? "exit " + std::to_string(code) + " (" + msg + ")"
                  : "signal " + std::to_string(signal) + (signal == SIGALRM ? " (hang) " : " (crash) ") + msg;
  }
};

struct ChildLimits {
  unsigned seconds = 30;
  uint64_t mem_limit = 0;  // bytes on top of what the process already maps; 0: none
  bool use_exit = false;   // leave with std::exit so that at-exit handlers (libhdf5's) run too
};

// Runs fn in a child process; fn returns the exit code and may set `msg` (sent back through a
// pipe). The child leaves with _exit unless `use_exit`.
inline Child in_child(const std::function<int(std::string&)>& fn, ChildLimits lim = {}) {
  int p[2];
  if (pipe(p) != 0) return {};
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    alarm(lim.seconds);
    if (lim.mem_limit) {
      // On top of what the process already maps (LibTorch/CUDA builds map gigabytes up front).
      uint64_t pages = 0;
      if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
        if (std::fscanf(f, "%lu", &pages) != 1) pages = 0;
        std::fclose(f);
      }
      const uint64_t as = pages * static_cast<uint64_t>(sysconf(_SC_PAGESIZE)) + lim.mem_limit;
      rlimit rl{as, as};
      setrlimit(RLIMIT_AS, &rl);
    }
    std::string msg;
    int rc = 99;
    try {
      rc = fn(msg);
    } catch (const std::exception& e) {
      msg = std::string("uncaught: ") + e.what();
      rc = 98;
    }
    ssize_t w = write(p[1], msg.data(), msg.size());
    (void)w;
    close(p[1]);
    if (lim.use_exit) std::exit(rc);
    _exit(rc);
  }
  close(p[1]);
  Child c;
  char buf[4096];
  ssize_t n;
  while ((n = read(p[0], buf, sizeof buf)) > 0) c.msg.append(buf, static_cast<size_t>(n));
  close(p[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  c.exited = WIFEXITED(status);
  c.code = c.exited ? WEXITSTATUS(status) : -1;
  c.signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
  return c;
}

// A tmpfs of `size` mounted on a fresh folder for this test (unmounted at the end).
struct Tmpfs {
  std::string dir;
  bool mounted = false;
  std::string why;
  Tmpfs(const std::string& tag, const std::string& size) {
    dir = (std::filesystem::temp_directory_path() / ("sf_tmpfs_" + tag + "_" + std::to_string(getpid()))).string();
    std::filesystem::create_directories(dir);
    if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, ("size=" + size).c_str()) == 0) mounted = true;
    else why = std::strerror(errno);
  }
  ~Tmpfs() {
    if (mounted) ::umount2(dir.c_str(), MNT_DETACH);
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  // What a test that needs the mount reports when it skips.
  std::string skip_message() const {
    return "SKIPPED (not counted as a pass): cannot mount a tmpfs here (" + why + ")";
  }
  std::vector<std::string> files() const {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(dir)) out.push_back(e.path().filename().string());
    return out;
  }
};

}  // namespace sf::test
