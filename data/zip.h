// Zip archives through libzip, for image datasets packed as zip files.
//
// ZipReader opens the archive with libzip's consistency checks (central directory against the
// local headers) and checks every entry name when it opens: an absolute path, a drive letter or
// a `..` component is refused with an error naming the entry, so nothing can refer outside the
// archive. read() refuses an entry whose declared size the archive cannot hold (larger than its
// compressed bytes allow, or beyond the file) before allocating, and libzip checks the CRC.
// read() may be called from several threads at once (reads are serialised). Errors throw
// FormatError (data/tfrecord.h) naming the archive and, where one is involved, the entry.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

struct zip;

namespace sf::data {

class ZipReader {
 public:
  explicit ZipReader(const std::string& path);
  ~ZipReader();
  ZipReader(const ZipReader&) = delete;
  ZipReader& operator=(const ZipReader&) = delete;
  // Names of the file entries (folders left out), in archive order.
  const std::vector<std::string>& names() const { return names_; }
  bool contains(const std::string& name) const;
  std::vector<uint8_t> read(const std::string& name) const;

 private:
  std::string path_;
  uint64_t file_size_ = 0;
  struct zip* za_ = nullptr;
  std::vector<std::string> names_;
  std::map<std::string, uint64_t> index_;  // name -> libzip entry index
  mutable std::mutex mu_;
};

// Writes a zip of the given name/content pairs, entries stored uncompressed, in the given order,
// with a fixed modification time: for tests and benchmarks.
void write_zip_stored(const std::string& path, const std::vector<std::pair<std::string, std::vector<uint8_t>>>& files);

}  // namespace sf::data
