// A read-only zip archive reader (stored and deflate entries, via zlib) for image datasets packed
// as zip files. Entry names are checked when the archive opens: an absolute path or a `..`
// component is rejected with an error naming the entry, so nothing can refer outside the archive.
//
// ZipReader owns its file contents (the archive is read into memory); it is not thread-safe.
// Errors throw FormatError (data/tfrecord.h) naming the archive and the entry.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sf::data {

class ZipReader {
 public:
  explicit ZipReader(const std::string& path);
  // Names of the file entries (folders left out), in archive order.
  const std::vector<std::string>& names() const { return names_; }
  bool contains(const std::string& name) const;
  std::vector<uint8_t> read(const std::string& name) const;

 private:
  struct Entry {
    std::string name;
    uint16_t method;
    uint32_t crc, csize, usize, local_offset;
  };
  std::string path_;
  std::vector<uint8_t> bytes_;
  std::vector<Entry> entries_;
  std::vector<std::string> names_;
};

// Writes a zip (stored entries) of the given name/content pairs: for tests and benchmarks.
void write_zip_stored(const std::string& path, const std::vector<std::pair<std::string, std::vector<uint8_t>>>& files);

}  // namespace sf::data
