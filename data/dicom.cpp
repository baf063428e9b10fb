#include "data/dicom.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <iterator>

#include "data/tfrecord.h"

namespace sf::data {

namespace {

constexpr uint32_t kUndefined = 0xFFFFFFFFu;

bool long_vr(const char* vr) {
  static const char* kLong[] = {"OB", "OD", "OF", "OL", "OW", "SQ", "UC", "UR", "UT", "UN", "OV", "SV", "UV"};
  for (const char* l : kLong)
    if (vr[0] == l[0] && vr[1] == l[1]) return true;
  return false;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  size_t i = 0;
  while (i < s.size() && s[i] == ' ') ++i;
  return s.substr(i);
}

double first_number(const std::string& s, double fallback) {
  std::string t = trim(s.substr(0, s.find('\\')));
  if (t.empty()) return fallback;
  try { return std::stod(t); } catch (...) { return fallback; }
}

struct Parser {
  const std::vector<uint8_t>& b;
  const std::string& path;
  size_t pos;
  bool explicit_vr = true;
  bool big = false;
  DicomImage& img;
  bool got_pixels = false;
  size_t pixel_off = 0, pixel_len = 0;

  [[noreturn]] void fail(const std::string& what) {
    throw FormatError(path + ": " + what + " at byte " + std::to_string(pos));
  }
  void need(size_t n) {
    if (pos + n > b.size()) fail("truncated DICOM data");
  }
  uint16_t u16(size_t at, bool be) const {
    return be ? static_cast<uint16_t>(b[at] << 8 | b[at + 1]) : static_cast<uint16_t>(b[at] | b[at + 1] << 8);
  }
  uint32_t u32(size_t at, bool be) const {
    return be ? (uint32_t(u16(at, true)) << 16 | u16(at + 2, true)) : (u32le(at));
  }
  uint32_t u32le(size_t at) const { return uint32_t(b[at]) | uint32_t(b[at + 1]) << 8 | uint32_t(b[at + 2]) << 16 | uint32_t(b[at + 3]) << 24; }

  // Reads one element header; returns false at end of data.
  bool header(uint16_t& group, uint16_t& elem, std::string& vr, uint32_t& len, bool meta) {
    if (pos >= b.size()) return false;
    need(8);
    bool be = big && !meta;
    group = u16(pos, be);
    elem = u16(pos + 2, be);
    bool expl = meta || explicit_vr;
    if (group == 0xFFFE) {  // item / delimiters: never have a VR
      len = u32(pos + 4, be);
      vr = "";
      pos += 8;
      return true;
    }
    if (expl) {
      vr.assign(reinterpret_cast<const char*>(&b[pos + 4]), 2);
      if (long_vr(vr.c_str())) {
        need(12);
        len = u32(pos + 8, be);
        pos += 12;
      } else {
        len = u16(pos + 6, be);
        pos += 8;
      }
    } else {
      vr = "";
      len = u32(pos + 4, be);
      pos += 8;
    }
    return true;
  }

  // Skips the contents of an undefined-length sequence or encapsulated pixel data. Nesting is
  // bounded (a file of nested sequences must not overflow the stack).
  static constexpr int kMaxDepth = 64;
  void skip_undefined(int depth = 0) {
    if (depth > kMaxDepth) fail("sequences nested deeper than " + std::to_string(kMaxDepth));
    while (true) {
      uint16_t g, e;
      std::string vr;
      uint32_t len;
      if (!header(g, e, vr, len, false)) fail("unterminated sequence");
      if (g == 0xFFFE && e == 0xE0DD) return;         // sequence delimiter
      if (g == 0xFFFE && e == 0xE000) {               // item
        if (len == kUndefined) skip_item_elements(depth + 1);
        else { need(len); pos += len; }
        continue;
      }
      fail("unexpected element in a sequence");
    }
  }
  void skip_item_elements(int depth) {
    if (depth > kMaxDepth) fail("sequences nested deeper than " + std::to_string(kMaxDepth));
    while (true) {
      uint16_t g, e;
      std::string vr;
      uint32_t len;
      if (!header(g, e, vr, len, false)) fail("unterminated item");
      if (g == 0xFFFE && e == 0xE00D) return;  // item delimiter
      if (len == kUndefined) skip_undefined(depth + 1);
      else { need(len); pos += len; }
    }
  }

  // A US (unsigned short) element's value; short elements are an error, not a read past them.
  uint16_t us(uint32_t len, bool be) {
    if (len < 2) fail("US element shorter than 2 bytes");
    return u16(pos, be);
  }
  std::string str(uint32_t len) { need(len); return trim(std::string(reinterpret_cast<const char*>(&b[pos]), len)); }

  void run(bool meta_only) {
    while (pos < b.size()) {
      size_t start = pos;
      uint16_t g, e;
      std::string vr;
      uint32_t len;
      bool meta = meta_only;
      if (meta_only) {
        need(2);
        if (u16(pos, false) != 0x0002) return;
      }
      if (!header(g, e, vr, len, meta)) return;
      if (len == kUndefined) {
        if (g == 0x7FE0 && e == 0x0010) fail("encapsulated (compressed) pixel data is not supported");
        skip_undefined();
        continue;
      }
      need(len);
      uint32_t tag = uint32_t(g) << 16 | e;
      bool be = big && !meta;
      switch (tag) {
        case 0x00020010: img.transfer_syntax = str(len); break;
        case 0x00080060: img.modality = str(len); break;
        case 0x00200013: {
          double v = first_number(str(len), 0);
          img.instance_number = std::isfinite(v) && std::fabs(v) < 2e9 ? static_cast<int>(v) : 0;
          break;
        }
        case 0x00200032: {
          std::string s = str(len);
          size_t a = s.find('\\'), c = a == std::string::npos ? a : s.find('\\', a + 1);
          if (c != std::string::npos) img.slice_position = first_number(s.substr(c + 1), 0);
          break;
        }
        case 0x00280002: img.samples_per_pixel = us(len, be); break;
        case 0x00280008: {
          double fr = first_number(str(len), 1);
          img.frames = fr >= 1 && fr <= 1e6 ? static_cast<int>(fr) : (fr > 1e6 ? 1000000 : 1);
          break;
        }
        case 0x00280010: img.rows = us(len, be); break;
        case 0x00280011: img.cols = us(len, be); break;
        case 0x00280100: img.bits_allocated = us(len, be); break;
        case 0x00280101: img.bits_stored = us(len, be); break;
        case 0x00280103: img.is_signed = us(len, be) == 1; break;
        case 0x00281050: img.window_center = first_number(str(len), 0); img.has_window = true; break;
        case 0x00281051: img.window_width = first_number(str(len), 0); break;
        case 0x00281052: img.rescale_intercept = first_number(str(len), 0); img.has_rescale = true; break;
        case 0x00281053: img.rescale_slope = first_number(str(len), 1); img.has_rescale = true; break;
        case 0x7FE00010: got_pixels = true; pixel_off = pos; pixel_len = len; break;
        default: break;
      }
      (void)start;
      pos += len;
    }
  }
};

}  // namespace

bool looks_like_dicom(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char head[132];
  f.read(head, 132);
  if (f.gcount() == 132 && std::memcmp(head + 128, "DICM", 4) == 0) return true;
  auto dot = path.rfind('.');
  std::string ext = dot == std::string::npos ? "" : path.substr(dot + 1);
  for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext == "dcm" || ext == "dicom";
}

std::vector<float> DicomImage::frame_values(int f) const {
  size_t plane = static_cast<size_t>(rows) * cols;
  std::vector<float> out(plane);
  const int32_t* p = pixels.data() + static_cast<size_t>(f) * plane * samples_per_pixel;
  for (size_t i = 0; i < plane; ++i)
  {
    const double d = rescale_slope * p[i * samples_per_pixel] + rescale_intercept;
    // Out-of-range doubles become +-inf (a plain cast would be undefined behaviour).
    out[i] = std::isfinite(d) && std::fabs(d) > 3.4e38 ? (d > 0 ? HUGE_VALF : -HUGE_VALF) : static_cast<float>(d);
  }
  return out;
}

DicomImage read_dicom(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw FormatError(path + ": cannot open");
  std::vector<uint8_t> b((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  DicomImage img;
  img.path = path;
  Parser p{b, path, 0, true, false, img};
  if (b.size() >= 132 && std::memcmp(&b[128], "DICM", 4) == 0) {
    p.pos = 132;
    p.run(true);  // file meta group, always explicit VR little-endian
  }
  const std::string& ts = img.transfer_syntax;
  if (ts.empty() || ts == "1.2.840.10008.1.2") {
    p.explicit_vr = false;
  } else if (ts == "1.2.840.10008.1.2.1") {
    p.explicit_vr = true;
  } else if (ts == "1.2.840.10008.1.2.2") {
    p.explicit_vr = true;
    p.big = true;
  } else {
    throw FormatError(path + ": DICOM transfer syntax " + ts + " (compressed) is not supported; decompress it first (e.g. gdcmconv --raw)");
  }
  if (ts.empty() && b.size() >= 6 && std::isupper(b[4]) && std::isupper(b[5])) p.explicit_vr = true;  // guess
  p.run(false);
  if (!p.got_pixels) throw FormatError(path + ": no pixel data (7FE0,0010)");
  if (img.rows <= 0 || img.cols <= 0) throw FormatError(path + ": missing or zero Rows/Columns");
  if (img.bits_allocated != 8 && img.bits_allocated != 16 && img.bits_allocated != 32)
    throw FormatError(path + ": unsupported BitsAllocated " + std::to_string(img.bits_allocated));
  if (img.bits_stored <= 0) img.bits_stored = img.bits_allocated;
  if (img.bits_stored > img.bits_allocated)
    throw FormatError(path + ": BitsStored " + std::to_string(img.bits_stored) + " > BitsAllocated " + std::to_string(img.bits_allocated));
  if (img.samples_per_pixel != 1 && img.samples_per_pixel != 3)
    throw FormatError(path + ": unsupported SamplesPerPixel " + std::to_string(img.samples_per_pixel));
  if (img.frames < 1) img.frames = 1;
  size_t bytes_per = static_cast<size_t>(img.bits_allocated / 8);
  // Every product checked, and bounded by the pixel bytes the file really holds.
  uint64_t count64 = 0, need = 0;
  if (__builtin_mul_overflow(static_cast<uint64_t>(img.rows) * static_cast<uint64_t>(img.cols),
                             static_cast<uint64_t>(img.frames) * static_cast<uint64_t>(img.samples_per_pixel), &count64) ||
      __builtin_mul_overflow(count64, static_cast<uint64_t>(bytes_per), &need) || need > p.pixel_len)
    throw FormatError(path + ": pixel data has " + std::to_string(p.pixel_len) + " bytes, too few for " + std::to_string(img.rows) +
                      "x" + std::to_string(img.cols) + "x" + std::to_string(img.frames) + " frames x" +
                      std::to_string(img.samples_per_pixel) + " samples of " + std::to_string(bytes_per) + " bytes");
  size_t count = static_cast<size_t>(count64);
  if (p.pixel_len < count * bytes_per)
    throw FormatError(path + ": pixel data has " + std::to_string(p.pixel_len) + " bytes, " + std::to_string(count * bytes_per) +
                      " expected for " + std::to_string(img.rows) + "x" + std::to_string(img.cols) + "x" + std::to_string(img.frames));
  img.pixels.resize(count);
  const uint8_t* src = b.data() + p.pixel_off;
  for (size_t i = 0; i < count; ++i) {
    uint32_t v;
    if (bytes_per == 1) v = src[i];
    else if (bytes_per == 2) v = p.u16(p.pixel_off + 2 * i, p.big);
    else v = p.u32(p.pixel_off + 4 * i, p.big);
    int shift = img.bits_stored;
    if (shift < 32) v &= (uint32_t(1) << shift) - 1;
    int32_t s;
    if (img.is_signed && shift < 32 && (v >> (shift - 1)) & 1) s = static_cast<int32_t>(v | ~((uint32_t(1) << shift) - 1));
    else s = static_cast<int32_t>(v);
    img.pixels[i] = s;
  }
  (void)src;
  return img;
}

std::vector<DicomSeries> find_dicom_series(const std::string& source) {
  namespace fs = std::filesystem;
  std::map<std::string, DicomSeries> by_dir;
  if (fs::is_directory(source)) {
    for (const auto& e : fs::recursive_directory_iterator(source))
      if (e.is_regular_file() && looks_like_dicom(e.path().string())) {
        std::string dir = fs::relative(e.path().parent_path(), source).generic_string();
        DicomSeries& s = by_dir[dir];
        s.root = source;
        s.name = dir;
        s.files.push_back(fs::relative(e.path(), source).generic_string());
      }
  } else {
    DicomSeries& s = by_dir[""];
    s.root = fs::path(source).parent_path().string();
    s.name = fs::path(source).filename().string();
    s.files.push_back(s.name);
  }
  std::vector<DicomSeries> out;
  for (auto& [dir, s] : by_dir) out.push_back(std::move(s));
  return out;
}

Volume read_dicom_series(const DicomSeries& series) {
  namespace fs = std::filesystem;
  std::vector<DicomImage> imgs;
  for (const auto& rel : series.files) {
    imgs.push_back(read_dicom((fs::path(series.root) / rel).string()));
    imgs.back().path = rel;
  }
  std::stable_sort(imgs.begin(), imgs.end(), [](const DicomImage& a, const DicomImage& b) {
    if (a.instance_number != b.instance_number) return a.instance_number < b.instance_number;
    if (a.slice_position != b.slice_position) return a.slice_position < b.slice_position;
    return a.path < b.path;
  });
  Volume v;
  v.path = (fs::path(series.root) / series.name).string();
  v.description = "DICOM series";
  v.has_orientation = false;
  if (imgs.empty()) throw FormatError(v.path + ": no DICOM files");
  v.nx = imgs[0].cols, v.ny = imgs[0].rows, v.nz = 0;
  v.has_window = imgs[0].has_window, v.window_center = imgs[0].window_center, v.window_width = imgs[0].window_width;
  for (const auto& d : imgs) {
    if (d.cols != v.nx || d.rows != v.ny)
      throw FormatError(series.root + "/" + d.path + ": image is " + std::to_string(d.cols) + "x" + std::to_string(d.rows) +
                        ", earlier images of the series are " + std::to_string(v.nx) + "x" + std::to_string(v.ny));
    for (int f = 0; f < d.frames; ++f) {
      auto fr = d.frame_values(f);
      v.data.insert(v.data.end(), fr.begin(), fr.end());
      ++v.nz;
    }
  }
  return v;
}

}  // namespace sf::data
