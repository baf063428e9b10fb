#include "data/zip.h"

#include <zlib.h>

#include <cstring>
#include <fstream>
#include <iterator>

#include "data/tfrecord.h"

namespace sf::data {

namespace {
uint16_t le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | p[1] << 8); }
uint32_t le32(const uint8_t* p) { return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24; }

bool unsafe_name(const std::string& n) {
  if (n.empty() || n[0] == '/' || n[0] == '\\') return true;
  if (n.size() >= 2 && n[1] == ':') return true;  // drive letter
  size_t start = 0;
  while (start <= n.size()) {
    size_t end = n.find_first_of("/\\", start);
    if (end == std::string::npos) end = n.size();
    if (n.compare(start, end - start, "..") == 0 && end - start == 2) return true;
    start = end + 1;
  }
  return false;
}
}  // namespace

ZipReader::ZipReader(const std::string& path) : path_(path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw FormatError(path + ": cannot open");
  bytes_.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  const size_t n = bytes_.size();
  if (n < 22) throw FormatError(path + ": not a zip archive (too short)");
  size_t eocd = std::string::npos;
  for (size_t i = n - 22 + 1; i-- > 0 && n - i <= 22 + 65535;) {
    if (le32(&bytes_[i]) == 0x06054b50) { eocd = i; break; }
  }
  if (eocd == std::string::npos) throw FormatError(path + ": not a zip archive (no end of central directory)");
  uint16_t count = le16(&bytes_[eocd + 10]);
  uint32_t cd_size = le32(&bytes_[eocd + 12]);
  uint32_t cd_off = le32(&bytes_[eocd + 16]);
  if (cd_off == 0xFFFFFFFFu || count == 0xFFFF) throw FormatError(path + ": zip64 archives are not supported");
  if (static_cast<size_t>(cd_off) + cd_size > n) throw FormatError(path + ": truncated zip archive (central directory)");
  size_t p = cd_off;
  for (uint16_t i = 0; i < count; ++i) {
    if (p + 46 > n || le32(&bytes_[p]) != 0x02014b50) throw FormatError(path + ": corrupt zip central directory (entry " + std::to_string(i) + ")");
    Entry e;
    e.method = le16(&bytes_[p + 10]);
    e.crc = le32(&bytes_[p + 16]);
    e.csize = le32(&bytes_[p + 20]);
    e.usize = le32(&bytes_[p + 24]);
    uint16_t nlen = le16(&bytes_[p + 28]), xlen = le16(&bytes_[p + 30]), clen = le16(&bytes_[p + 32]);
    e.local_offset = le32(&bytes_[p + 42]);
    if (p + 46 + nlen > n) throw FormatError(path + ": corrupt zip central directory (entry " + std::to_string(i) + ")");
    e.name.assign(reinterpret_cast<const char*>(&bytes_[p + 46]), nlen);
    p += 46 + nlen + xlen + clen;
    if (unsafe_name(e.name))
      throw FormatError(path + ": entry '" + e.name + "' has an absolute path or '..' component (refused)");
    if (!e.name.empty() && e.name.back() == '/') continue;
    names_.push_back(e.name);
    entries_.push_back(std::move(e));
  }
}

bool ZipReader::contains(const std::string& name) const {
  for (const auto& e : entries_)
    if (e.name == name) return true;
  return false;
}

std::vector<uint8_t> ZipReader::read(const std::string& name) const {
  for (const auto& e : entries_) {
    if (e.name != name) continue;
    const std::string where = path_ + ": entry '" + name + "'";
    size_t p = e.local_offset;
    if (p + 30 > bytes_.size() || le32(&bytes_[p]) != 0x04034b50) throw FormatError(where + ": corrupt local header");
    size_t data = p + 30 + le16(&bytes_[p + 26]) + le16(&bytes_[p + 28]);
    if (data + e.csize > bytes_.size()) throw FormatError(where + ": truncated");
    // The declared size is bounded by what the entry can really hold: stored entries are their
    // bytes, deflate expands at most ~1032x.
    const uint64_t max_usize = e.method == 0 ? uint64_t(e.csize) : uint64_t(e.csize) * 1032 + 64;
    if (e.usize > max_usize)
      throw FormatError(where + ": declares " + std::to_string(e.usize) + " bytes from " + std::to_string(e.csize) +
                        " compressed (damaged archive)");
    std::vector<uint8_t> out(e.usize);
    if (e.method == 0) {
      if (e.csize != e.usize) throw FormatError(where + ": stored entry with different sizes");
      if (e.usize) std::memcpy(out.data(), bytes_.data() + data, e.usize);
    } else if (e.method == 8) {
      z_stream zs{};
      inflateInit2(&zs, -MAX_WBITS);
      zs.next_in = const_cast<Bytef*>(bytes_.data() + data);
      zs.avail_in = e.csize;
      zs.next_out = out.data();
      zs.avail_out = e.usize;
      int rc = inflate(&zs, Z_FINISH);
      inflateEnd(&zs);
      if (rc != Z_STREAM_END || zs.total_out != e.usize) throw FormatError(where + ": corrupt deflate data");
    } else {
      throw FormatError(where + ": unsupported compression method " + std::to_string(e.method));
    }
    uint32_t crc = static_cast<uint32_t>(::crc32(0L, out.data(), static_cast<uInt>(out.size())));
    if (crc != e.crc) throw FormatError(where + ": CRC mismatch");
    return out;
  }
  throw FormatError(path_ + ": no entry '" + name + "'");
}

void write_zip_stored(const std::string& path, const std::vector<std::pair<std::string, std::vector<uint8_t>>>& files) {
  std::vector<uint8_t> out, cd;
  auto put16 = [](std::vector<uint8_t>& v, uint16_t x) { v.push_back(x & 0xFF); v.push_back(x >> 8); };
  auto put32 = [&](std::vector<uint8_t>& v, uint32_t x) { put16(v, x & 0xFFFF); put16(v, x >> 16); };
  for (const auto& [name, data] : files) {
    uint32_t crc = static_cast<uint32_t>(::crc32(0L, data.data(), static_cast<uInt>(data.size())));
    uint32_t off = static_cast<uint32_t>(out.size());
    put32(out, 0x04034b50); put16(out, 20); put16(out, 0); put16(out, 0); put16(out, 0); put16(out, 0);
    put32(out, crc); put32(out, static_cast<uint32_t>(data.size())); put32(out, static_cast<uint32_t>(data.size()));
    put16(out, static_cast<uint16_t>(name.size())); put16(out, 0);
    out.insert(out.end(), name.begin(), name.end());
    out.insert(out.end(), data.begin(), data.end());
    put32(cd, 0x02014b50); put16(cd, 20); put16(cd, 20); put16(cd, 0); put16(cd, 0); put16(cd, 0); put16(cd, 0);
    put32(cd, crc); put32(cd, static_cast<uint32_t>(data.size())); put32(cd, static_cast<uint32_t>(data.size()));
    put16(cd, static_cast<uint16_t>(name.size())); put16(cd, 0); put16(cd, 0); put16(cd, 0); put16(cd, 0);
    put32(cd, 0); put32(cd, off);
    cd.insert(cd.end(), name.begin(), name.end());
  }
  uint32_t cd_off = static_cast<uint32_t>(out.size());
  out.insert(out.end(), cd.begin(), cd.end());
  put32(out, 0x06054b50); put16(out, 0); put16(out, 0);
  put16(out, static_cast<uint16_t>(files.size())); put16(out, static_cast<uint16_t>(files.size()));
  put32(out, static_cast<uint32_t>(cd.size())); put32(out, cd_off); put16(out, 0);
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(out.data()), static_cast<std::streamsize>(out.size()));
  if (!f) throw FormatError(path + ": cannot write");
}

}  // namespace sf::data
