#include "data/tfrecord.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <regex>

#include "data/hash.h"

namespace fs = std::filesystem;

namespace sf::data {

TfRecordReader::TfRecordReader(const std::string& path) : path_(path), in_(path, std::ios::binary) {
  if (!in_) throw FormatError(path + ": cannot open");
  in_.seekg(0, std::ios::end);
  size_ = static_cast<uint64_t>(in_.tellg());
  in_.seekg(0, std::ios::beg);
}

namespace {
uint32_t le32(const uint8_t* p) { return uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24; }
uint64_t le64(const uint8_t* p) { return uint64_t(le32(p)) | uint64_t(le32(p + 4)) << 32; }
}  // namespace

bool TfRecordReader::next(std::string& out) {
  const std::string where = path_ + ": record " + std::to_string(index_);
  uint8_t head[12];
  in_.read(reinterpret_cast<char*>(head), 12);
  std::streamsize got = in_.gcount();
  if (got == 0) return false;
  if (got < 12) throw FormatError(where + ": truncated record header (" + std::to_string(got) + " of 12 bytes)");
  uint64_t len = le64(head);
  if (masked_crc32c(head, 8) != le32(head + 8)) throw FormatError(where + ": CRC mismatch in the length field");
  const uint64_t left = size_ - std::min<uint64_t>(size_, static_cast<uint64_t>(in_.tellg()));
  if (len > left) throw FormatError(where + ": record length " + std::to_string(len) + " exceeds the " + std::to_string(left) +
                                    " bytes left in the file (truncated or damaged)");
  out.resize(static_cast<size_t>(len));
  in_.read(out.data(), static_cast<std::streamsize>(len));
  if (static_cast<uint64_t>(in_.gcount()) < len)
    throw FormatError(where + ": truncated record (" + std::to_string(in_.gcount()) + " of " + std::to_string(len) +
                      " data bytes)");
  uint8_t crc[4];
  in_.read(reinterpret_cast<char*>(crc), 4);
  if (in_.gcount() < 4) throw FormatError(where + ": truncated record (data CRC missing)");
  if (masked_crc32c(out.data(), out.size()) != le32(crc)) throw FormatError(where + ": CRC mismatch in the data");
  ++index_;
  return true;
}

namespace {

// Minimal protobuf wire-format cursor.
struct Pb {
  const uint8_t* p;
  const uint8_t* end;
  const std::string* where_;
  const std::string& where_str() const { return *where_; }

  bool done() const { return p >= end; }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p >= end) throw FormatError(*where_ + ": malformed tf.train.Example (truncated varint)");
      uint8_t b = *p++;
      v |= uint64_t(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    throw FormatError(*where_ + ": malformed tf.train.Example (varint too long)");
  }
  Pb sub() {
    uint64_t n = varint();
    if (n > static_cast<uint64_t>(end - p)) throw FormatError(*where_ + ": malformed tf.train.Example (field overruns)");
    Pb s{p, p + n, where_};
    p += n;
    return s;
  }
  void skip(int wire) {
    switch (wire) {
      case 0: varint(); break;
      case 1: advance(8); break;
      case 2: sub(); break;
      case 5: advance(4); break;
      default: throw FormatError(*where_ + ": malformed tf.train.Example (wire type " + std::to_string(wire) + ")");
    }
  }
  void advance(size_t n) {
    if (n > static_cast<size_t>(end - p)) throw FormatError(*where_ + ": malformed tf.train.Example (truncated)");
    p += n;
  }
};

}  // namespace

TfExampleImage parse_tf_example_image(const std::string& bytes, const std::string& where) {
  TfExampleImage img;
  bool have_shape = false, have_data = false;
  Pb ex{reinterpret_cast<const uint8_t*>(bytes.data()), reinterpret_cast<const uint8_t*>(bytes.data()) + bytes.size(),
        &where};
  while (!ex.done()) {
    uint64_t key = ex.varint();
    if (key != ((1 << 3) | 2)) { ex.skip(static_cast<int>(key & 7)); continue; }
    Pb features = ex.sub();  // Features
    while (!features.done()) {
      uint64_t fk = features.varint();
      if (fk != ((1 << 3) | 2)) { features.skip(static_cast<int>(fk & 7)); continue; }
      Pb entry = features.sub();  // map<string, Feature> entry
      std::string name;
      Pb value{nullptr, nullptr, &where};
      bool have_value = false;
      while (!entry.done()) {
        uint64_t ek = entry.varint();
        if (ek == ((1 << 3) | 2)) {
          Pb s = entry.sub();
          name.assign(reinterpret_cast<const char*>(s.p), static_cast<size_t>(s.end - s.p));
        } else if (ek == ((2 << 3) | 2)) {
          value = entry.sub();
          have_value = true;
        } else {
          entry.skip(static_cast<int>(ek & 7));
        }
      }
      if (!have_value || (name != "shape" && name != "data")) continue;
      while (!value.done()) {  // Feature: oneof bytes_list=1, float_list=2, int64_list=3
        uint64_t vk = value.varint();
        int field = static_cast<int>(vk >> 3);
        if ((vk & 7) != 2) { value.skip(static_cast<int>(vk & 7)); continue; }
        Pb list = value.sub();
        if (name == "data" && field == 1) {
          while (!list.done()) {
            uint64_t lk = list.varint();
            if (lk == ((1 << 3) | 2)) {
              Pb s = list.sub();
              img.data.assign(reinterpret_cast<const char*>(s.p), static_cast<size_t>(s.end - s.p));
              have_data = true;
            } else {
              list.skip(static_cast<int>(lk & 7));
            }
          }
        } else if (name == "shape" && field == 3) {
          img.shape.clear();
          while (!list.done()) {
            uint64_t lk = list.varint();
            if (lk == ((1 << 3) | 2)) {  // packed
              Pb s = list.sub();
              while (!s.done()) img.shape.push_back(static_cast<int64_t>(s.varint()));
            } else if (lk == ((1 << 3) | 0)) {
              img.shape.push_back(static_cast<int64_t>(list.varint()));
            } else {
              list.skip(static_cast<int>(lk & 7));
            }
          }
          have_shape = true;
        }
      }
    }
  }
  if (!have_shape) throw FormatError(where + ": tf.train.Example has no int64 feature 'shape'");
  if (!have_data) throw FormatError(where + ": tf.train.Example has no bytes feature 'data'");
  if (img.shape.size() != 3) throw FormatError(where + ": feature 'shape' has " + std::to_string(img.shape.size()) +
                                               " entries, expected [C, H, W]");
  int64_t n = 1;
  for (int64_t d : img.shape) {
    if (d <= 0 || d > 65536) throw FormatError(where + ": invalid shape entry " + std::to_string(d));
    n *= d;
  }
  if (static_cast<int64_t>(img.data.size()) != n)
    throw FormatError(where + ": feature 'data' has " + std::to_string(img.data.size()) + " bytes, shape needs " +
                      std::to_string(n));
  return img;
}

bool NpyArray::is_integer() const {
  return dtype.size() >= 2 && (dtype[1] == 'i' || dtype[1] == 'u' || dtype[1] == 'b');
}

NpyArray read_npy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw FormatError(path + ": cannot open");
  char magic[8];
  f.read(magic, 8);
  if (f.gcount() < 8 || std::memcmp(magic, "\x93NUMPY", 6) != 0) throw FormatError(path + ": not a numpy .npy file");
  uint32_t hlen;
  if (magic[6] == 1) {
    uint8_t b[2];
    f.read(reinterpret_cast<char*>(b), 2);
    hlen = b[0] | (b[1] << 8);
  } else {
    uint8_t b[4];
    f.read(reinterpret_cast<char*>(b), 4);
    hlen = le32(b);
  }
  if (f.gcount() <= 0 || hlen > (1u << 20)) throw FormatError(path + ": truncated or implausible .npy header (" + std::to_string(hlen) + " bytes)");
  std::string header(hlen, '\0');
  f.read(header.data(), hlen);
  if (static_cast<uint32_t>(f.gcount()) != hlen) throw FormatError(path + ": truncated .npy header");
  const std::streamoff data_at = f.tellg();
  f.seekg(0, std::ios::end);
  const uint64_t data_left = static_cast<uint64_t>(f.tellg() - data_at);
  f.seekg(data_at);
  NpyArray a;
  std::smatch m;
  if (!std::regex_search(header, m, std::regex("'descr'\\s*:\\s*'([^']*)'"))) throw FormatError(path + ": .npy header has no descr");
  a.dtype = m[1];
  if (std::regex_search(header, m, std::regex("'fortran_order'\\s*:\\s*True")))
    throw FormatError(path + ": Fortran-order .npy arrays are not supported");
  if (!std::regex_search(header, m, std::regex("'shape'\\s*:\\s*\\(([^)]*)\\)"))) throw FormatError(path + ": .npy header has no shape");
  std::string dims = m[1];
  std::regex num("\\d+");
  for (auto it = std::sregex_iterator(dims.begin(), dims.end(), num); it != std::sregex_iterator(); ++it) {
    if (it->str().size() > 12) throw FormatError(path + ": implausible .npy shape entry " + it->str());
    a.shape.push_back(std::stoll(it->str()));
  }
  if (a.dtype.size() < 3 || a.dtype.size() > 4 || a.dtype[0] == '>' ||
      a.dtype.find_first_not_of("0123456789", 2) != std::string::npos)
    throw FormatError(path + ": unsupported .npy dtype '" + a.dtype + "'");
  char kind = a.dtype[1];
  int size = std::stoi(a.dtype.substr(2));
  if (size < 1 || size > 16) throw FormatError(path + ": unsupported .npy dtype '" + a.dtype + "'");
  // Element count and bytes checked for overflow and against the bytes the file really holds.
  uint64_t n64 = 1, bytes = 0;
  for (int64_t d : a.shape)
    if (__builtin_mul_overflow(n64, static_cast<uint64_t>(d), &n64)) throw FormatError(path + ": .npy shape overflows");
  if (__builtin_mul_overflow(n64, static_cast<uint64_t>(size), &bytes) || bytes > data_left)
    throw FormatError(path + ": truncated .npy data (" + std::to_string(data_left) + " bytes for shape of " +
                      std::to_string(n64) + " elements of " + std::to_string(size) + " bytes)");
  const int64_t n = static_cast<int64_t>(n64);
  std::vector<uint8_t> raw(static_cast<size_t>(bytes));
  f.read(reinterpret_cast<char*>(raw.data()), static_cast<std::streamsize>(raw.size()));
  if (static_cast<size_t>(f.gcount()) != raw.size())
    throw FormatError(path + ": truncated .npy data (" + std::to_string(f.gcount()) + " of " + std::to_string(raw.size()) + " bytes)");
  a.values.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* p = raw.data() + i * size;
    double v;
    if (kind == 'f' && size == 4) { float x; std::memcpy(&x, p, 4); v = x; }
    else if (kind == 'f' && size == 8) { std::memcpy(&v, p, 8); }
    else if (kind == 'i' && size == 8) { int64_t x; std::memcpy(&x, p, 8); v = static_cast<double>(x); }
    else if (kind == 'i' && size == 4) { int32_t x; std::memcpy(&x, p, 4); v = x; }
    else if ((kind == 'u' || kind == 'b') && size == 1) { v = p[0]; }
    else if (kind == 'i' && size == 1) { v = static_cast<int8_t>(p[0]); }
    else throw FormatError(path + ": unsupported .npy dtype '" + a.dtype + "'");
    a.values[static_cast<size_t>(i)] = v;
  }
  return a;
}

TfDatasetFiles find_tf_dataset(const std::string& dir) {
  TfDatasetFiles out;
  std::regex level_re(".*-r(\\d\\d)\\.tfrecords");
  std::regex labels_re(".*-rxx\\.labels");
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file()) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  for (const auto& n : names) {
    std::smatch m;
    if (std::regex_match(n, m, level_re)) out.levels.emplace_back(std::stoi(m[1]), (fs::path(dir) / n).string());
    else if (std::regex_match(n, labels_re)) out.labels = (fs::path(dir) / n).string();
  }
  if (out.levels.empty()) throw FormatError(dir + ": no *-rNN.tfrecords files");
  std::sort(out.levels.begin(), out.levels.end());
  return out;
}

}  // namespace sf::data
