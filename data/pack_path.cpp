#include "data/pack_path.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <vector>

#include "data/pack.h"

namespace fs = std::filesystem;

namespace sf::data {
namespace {

std::string pack_hash(const std::string& path) {
  try {
    PackReader r(path);
    return r.info().content_hash;
  } catch (const std::exception&) {
    return "";  // not a readable pack: not a candidate
  }
}

std::string trimmed(const std::string& source) {
  std::string s = source;
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

}  // namespace

bool is_hdf5_file(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  std::ifstream in(path, std::ios::binary);
  char sig[8] = {0};
  if (!in.read(sig, 8)) return false;
  return std::memcmp(sig, "\x89HDF\r\n\x1a\n", 8) == 0;
}

std::string resolve_stored_pack(const std::string& stored, const std::string& checkpoint,
                                const std::string& expected_hash) {
  std::error_code ec;
  const fs::path p(stored);
  if (p.is_absolute() || fs::exists(p, ec)) return stored;  // as before: the user's folder decides
  fs::path run_dir = fs::absolute(fs::path(checkpoint), ec).parent_path().lexically_normal();
  std::vector<fs::path> candidates;
  for (fs::path a = run_dir;; a = a.parent_path()) {
    candidates.push_back(a / p);
    if (a == a.parent_path() || a.empty()) break;
  }
  candidates.push_back(run_dir / p.filename());
  candidates.push_back(run_dir.parent_path() / p.filename());
  std::string other;
  for (const auto& c : candidates) {
    if (!fs::is_regular_file(c, ec)) continue;
    if (expected_hash.empty()) return c.lexically_normal().string();
    const std::string h = pack_hash(c.string());
    if (h == expected_hash) return c.lexically_normal().string();
    if (other.empty()) other = "; " + c.lexically_normal().string() + " has other content";
  }
  throw std::runtime_error(checkpoint + ": its dataset pack " + stored + " is not found from " +
                           fs::current_path(ec).string() + " nor relative to " + run_dir.string() +
                           " or the folders above it" + other + ": name the pack with --data");
}

std::string suggested_pack_name(const std::string& source) {
  fs::path s(trimmed(source));
  if (s.extension() == ".zip") s.replace_extension();
  return s.string() + ".h5";
}

std::string not_a_pack_error(const std::string& source) {
  std::error_code ec;
  const std::string kind = fs::is_directory(source, ec)                         ? "a folder"
                           : fs::path(source).extension() == ".zip" && fs::exists(source, ec) ? "a zip archive"
                           : fs::is_regular_file(source, ec) && !is_hdf5_file(source) &&
                                     fs::path(source).extension() != ".h5"
                               ? "not an HDF5 dataset pack"
                                                                                 : "";
  if (kind.empty()) return "";
  return "--data " + source + ": " + kind + ", not a dataset pack: run `styleforge pack --source " + trimmed(source) +
         " --dest " + suggested_pack_name(source) + "` and train on that (or add --pack-if-needed)";
}

std::string pack_if_needed_path(const std::string& source, const std::string& dir) {
  return (fs::path(dir) / fs::path(suggested_pack_name(source)).filename()).string();
}

bool pack_is_current(const std::string& source, const std::string& pack) {
  std::error_code ec;
  if (!is_hdf5_file(pack)) return false;
  const auto pack_time = fs::last_write_time(pack, ec);
  if (ec) return false;
  auto newer = [&](const fs::path& f) {
    std::error_code e;
    const auto t = fs::last_write_time(f, e);
    return e || t > pack_time;
  };
  if (newer(source)) return false;
  if (fs::is_directory(source, ec)) {
    for (auto it = fs::recursive_directory_iterator(source, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec))
      if (newer(it->path())) return false;
    if (ec) return false;
  }
  return true;
}

}  // namespace sf::data
