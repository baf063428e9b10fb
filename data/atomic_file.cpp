#include "data/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

namespace fs = std::filesystem;

namespace sf::data {

namespace {

std::string host_name() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof buf - 1) != 0 || !buf[0]) return "localhost";
  std::string h = buf;
  for (auto& c : h)
    if (c == '/' || c == '@') c = '_';
  return h;
}

bool all_digits(const std::string& s) {
  if (s.empty() || s.size() > 10) return false;
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return true;
}

// True unless we know the process is gone (kill(pid, 0) says ESRCH).
bool process_alive(long pid) {
  if (pid <= 0) return true;
  if (::kill(static_cast<pid_t>(pid), 0) == 0) return true;
  return errno != ESRCH;
}

}  // namespace

std::string temp_name_for(const std::string& dest) {
  return dest + ".tmp-" + std::to_string(::getpid()) + "@" + host_name();
}

int remove_stale_temporaries(const std::string& dir, std::ostream* log) {
  const std::string host = host_name();
  const long self = static_cast<long>(::getpid());
  int removed = 0;
  std::error_code ec;
  fs::directory_iterator it(dir.empty() ? "." : dir, ec), end;
  if (ec) return 0;
  for (; it != end; it.increment(ec)) {
    if (ec) break;
    const std::string name = it->path().filename().string();
    size_t pos = name.rfind(".tmp-");
    if (pos == std::string::npos || pos < 3 || name.compare(pos - 3, 3, ".h5") != 0) continue;
    std::string tail = name.substr(pos + 5);
    std::string pid_s = tail, file_host;
    size_t at = tail.find('@');
    if (at != std::string::npos) {
      pid_s = tail.substr(0, at);
      file_host = tail.substr(at + 1);
      if (file_host != host) continue;  // another host's process: cannot tell, keep it
    }
    if (!all_digits(pid_s)) continue;
    long pid = std::stol(pid_s);
    if (pid == self || process_alive(pid)) continue;
    std::error_code rm;
    if (fs::remove(it->path(), rm) && !rm) {
      ++removed;
      if (log) *log << "removed stale temporary file " << it->path().string() << " (process " << pid << " is gone)\n";
    }
  }
  return removed;
}

void fsync_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error(path + ": cannot open for fsync (" + std::strerror(errno) + ")");
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) throw std::runtime_error(path + ": fsync failed (" + std::strerror(err) + ")");
}

void fsync_dir(const std::string& dir) {
  int fd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);  // some file systems refuse fsync on folders (EINVAL): the rename itself is done
  ::close(fd);
}

void commit_file(const std::string& tmp, const std::string& dest) {
  try {
    fsync_file(tmp);
  } catch (const std::exception& e) {
    throw std::runtime_error(dest + ": not written: " + e.what());
  }
  if (::rename(tmp.c_str(), dest.c_str()) != 0)
    throw std::runtime_error(dest + ": cannot rename the finished file into place (" + std::strerror(errno) + ")");
  fs::path parent = fs::path(dest).parent_path();
  fsync_dir(parent.empty() ? "." : parent.string());
}

}  // namespace sf::data
