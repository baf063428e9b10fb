#include "data/dicom.h"

#include <gdcmDataSet.h>
#include <gdcmDicts.h>
#include <gdcmGlobal.h>
#include <gdcmImage.h>
#include <gdcmImageReader.h>
#include <gdcmReader.h>
#include <gdcmScanner.h>
#include <gdcmSequenceOfItems.h>
#include <gdcmTrace.h>
#include <gdcmUIDs.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <functional>
#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>

#include "data/tfrecord.h"

namespace sf::data {

namespace fs = std::filesystem;

namespace {

// GDCM reports problems on stderr besides its return values; ours are the exceptions.
void quiet_gdcm() {
  static std::once_flag once;
  std::call_once(once, [] {
    gdcm::Trace::SetDebug(false);
    gdcm::Trace::SetWarning(false);
    gdcm::Trace::SetError(false);
  });
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  size_t i = 0;
  while (i < s.size() && s[i] == ' ') ++i;
  return s.substr(i);
}

// The value of a string element (DS, IS, CS, UI, ...), trimmed; "" when absent or empty.
std::string tag_string(const gdcm::DataSet& ds, uint16_t g, uint16_t e) {
  const gdcm::Tag t(g, e);
  if (!ds.FindDataElement(t)) return "";
  const gdcm::ByteValue* bv = ds.GetDataElement(t).GetByteValue();
  if (!bv || bv->GetLength() == 0 || !bv->GetPointer()) return "";
  return trim(std::string(bv->GetPointer(), bv->GetLength()));
}

// The numbers of a DS/IS element (backslash-separated); empty when absent or when one is not a
// finite number.
std::vector<double> tag_numbers(const gdcm::DataSet& ds, uint16_t g, uint16_t e) {
  const std::string s = tag_string(ds, g, e);
  std::vector<double> out;
  if (s.empty()) return out;
  size_t a = 0;
  while (true) {
    const size_t b = s.find('\\', a);
    const std::string part = trim(s.substr(a, b == std::string::npos ? std::string::npos : b - a));
    char* end = nullptr;
    const double v = std::strtod(part.c_str(), &end);
    if (part.empty() || end != part.c_str() + part.size() || !std::isfinite(v)) return {};
    out.push_back(v);
    if (b == std::string::npos) break;
    a = b + 1;
  }
  return out;
}

// Item `index` (0-based) of sequence (g,e) of ds, or nullptr.
const gdcm::DataSet* item(const gdcm::DataSet* ds, uint16_t g, uint16_t e, size_t index = 0) {
  if (!ds) return nullptr;
  const gdcm::Tag t(g, e);
  if (!ds->FindDataElement(t)) return nullptr;
  gdcm::SmartPointer<gdcm::SequenceOfItems> sq = ds->GetDataElement(t).GetValueAsSQ();
  if (!sq || index >= sq->GetNumberOfItems()) return nullptr;
  return &sq->GetItem(index + 1).GetNestedDataSet();
}

// A functional group's macro of an enhanced multi-frame file: the per-frame item's, else the
// shared one's.
const gdcm::DataSet* group(const gdcm::DataSet* per_frame, const gdcm::DataSet* shared, uint16_t g, uint16_t e) {
  if (const gdcm::DataSet* d = item(per_frame, g, e)) return d;
  return item(shared, g, e);
}

std::vector<double> numbers(const gdcm::DataSet* ds, uint16_t g, uint16_t e) {
  return ds ? tag_numbers(*ds, g, e) : std::vector<double>{};
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool has_dicom_suffix(const std::string& path) {
  const std::string ext = lower(fs::path(path).extension().string());
  return ext == ".dcm" || ext == ".dicom";
}

// A short name for descriptions; GDCM's (up to the first ':') for the rarer ones.
std::string ts_name(const std::string& uid) {
  static const std::map<std::string, const char*> kShort = {
      {"1.2.840.10008.1.2", "Implicit VR Little Endian"},
      {"1.2.840.10008.1.2.1", "Explicit VR Little Endian"},
      {"1.2.840.10008.1.2.2", "Explicit VR Big Endian"},
      {"1.2.840.10008.1.2.1.99", "Deflated Explicit VR Little Endian"},
      {"1.2.840.10008.1.2.5", "RLE Lossless"},
      {"1.2.840.10008.1.2.4.50", "JPEG Baseline"},
      {"1.2.840.10008.1.2.4.51", "JPEG Extended"},
      {"1.2.840.10008.1.2.4.57", "JPEG Lossless"},
      {"1.2.840.10008.1.2.4.70", "JPEG Lossless SV1"},
      {"1.2.840.10008.1.2.4.80", "JPEG-LS Lossless"},
      {"1.2.840.10008.1.2.4.81", "JPEG-LS Near-Lossless"},
      {"1.2.840.10008.1.2.4.90", "JPEG 2000 Lossless"},
      {"1.2.840.10008.1.2.4.91", "JPEG 2000"},
  };
  if (auto it = kShort.find(uid); it != kShort.end()) return it->second;
  gdcm::UIDs u;
  if (!uid.empty() && u.SetFromUID(uid.c_str()) && u.GetName()) {
    std::string n = u.GetName();
    return n.substr(0, n.find(':'));
  }
  return uid.empty() ? "unknown transfer syntax" : uid;
}

// Reads the geometry, rescale, window and ordering tags (classic and enhanced multi-frame).
void read_attributes(const gdcm::DataSet& ds, DicomImage& img) {
  img.modality = tag_string(ds, 0x0008, 0x0060);
  img.series_uid = tag_string(ds, 0x0020, 0x000E);
  if (auto n = tag_numbers(ds, 0x0020, 0x0013); !n.empty() && std::fabs(n[0]) < 2e9) img.instance_number = static_cast<int>(n[0]);

  const gdcm::DataSet* shared = item(&ds, 0x5200, 0x9229);
  const gdcm::DataSet* frame0 = item(&ds, 0x5200, 0x9230);
  auto pick = [&](const gdcm::DataSet* per_frame, uint16_t sg, uint16_t se, uint16_t g, uint16_t e) {
    auto v = numbers(group(per_frame, shared, sg, se), g, e);
    return v.empty() ? tag_numbers(ds, g, e) : v;
  };
  if (auto p = pick(frame0, 0x0020, 0x9113, 0x0020, 0x0032); p.size() == 3) {
    img.has_position = true;
    img.position = {p[0], p[1], p[2]};
    img.slice_position = p[2];
  }
  if (auto o = pick(frame0, 0x0020, 0x9116, 0x0020, 0x0037); o.size() == 6) {
    img.has_orientation = true;
    std::copy(o.begin(), o.end(), img.orientation.begin());
  }
  if (auto s = pick(frame0, 0x0028, 0x9110, 0x0028, 0x0030); s.size() == 2 && s[0] > 0 && s[1] > 0) {
    img.has_pixel_spacing = true;
    img.pixel_spacing = {s[0], s[1]};
  }
  auto between = pick(frame0, 0x0028, 0x9110, 0x0018, 0x0088);
  auto thickness = pick(frame0, 0x0028, 0x9110, 0x0018, 0x0050);
  if (!between.empty() && between[0] > 0) img.slice_spacing = between[0];
  else if (!thickness.empty() && thickness[0] > 0) img.slice_spacing = thickness[0];

  auto intercept = pick(frame0, 0x0028, 0x9145, 0x0028, 0x1052);
  auto slope = pick(frame0, 0x0028, 0x9145, 0x0028, 0x1053);
  if (!intercept.empty()) img.rescale_intercept = intercept[0], img.has_rescale = true;
  if (!slope.empty()) img.rescale_slope = slope[0], img.has_rescale = true;
  auto center = pick(frame0, 0x0028, 0x9132, 0x0028, 0x1050);
  auto width = pick(frame0, 0x0028, 0x9132, 0x0028, 0x1051);
  if (!center.empty() && !width.empty()) {
    img.has_window = true;
    img.window_center = center[0];
    img.window_width = width[0];
  }

  // Enhanced multi-frame: one position (and rescale) per frame when every frame has one.
  if (frame0 && img.frames > 1) {
    std::vector<std::array<double, 3>> pos;
    std::vector<double> slopes, intercepts;
    bool all_pos = true, all_rescale = true;
    for (int f = 0; f < img.frames; ++f) {
      const gdcm::DataSet* pf = item(&ds, 0x5200, 0x9230, static_cast<size_t>(f));
      if (!pf) { all_pos = all_rescale = false; break; }
      auto p = numbers(item(pf, 0x0020, 0x9113), 0x0020, 0x0032);
      if (p.size() == 3) pos.push_back({p[0], p[1], p[2]});
      else all_pos = false;
      auto s = pick(pf, 0x0028, 0x9145, 0x0028, 0x1053);
      auto i = pick(pf, 0x0028, 0x9145, 0x0028, 0x1052);
      slopes.push_back(s.empty() ? 1.0 : s[0]);
      intercepts.push_back(i.empty() ? 0.0 : i[0]);
    }
    if (all_pos) img.frame_positions = std::move(pos);
    if (all_rescale) img.frame_slopes = std::move(slopes), img.frame_intercepts = std::move(intercepts);
  }
}

// GDCM parses nested sequences recursively, so a small file of deeply nested sequences would
// overflow the stack. This walk reads element headers only (tag, VR, length), iteratively, and
// throws when sequences nest deeper than kMaxNesting; on anything it does not follow (a damaged
// header, deflated data) it stops and leaves the verdict to GDCM.
constexpr int kMaxNesting = 64;
void check_nesting(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return;
  f.seekg(0, std::ios::end);
  const uint64_t size = static_cast<uint64_t>(std::max<std::streamoff>(0, f.tellg()));
  uint64_t pos = 0;
  auto get = [&](uint64_t at, uint8_t* out, size_t n) {
    if (at + n > size) return false;
    f.clear();
    f.seekg(static_cast<std::streamoff>(at));
    f.read(reinterpret_cast<char*>(out), static_cast<std::streamsize>(n));
    return static_cast<size_t>(f.gcount()) == n;
  };
  bool big = false, implicit_vr = false;
  auto u16 = [&](const uint8_t* b, bool be) { return static_cast<uint16_t>(be ? b[0] << 8 | b[1] : b[0] | b[1] << 8); };
  auto u32 = [&](const uint8_t* b, bool be) {
    return be ? uint32_t(u16(b, true)) << 16 | u16(b + 2, true) : uint32_t(u16(b, false)) | uint32_t(u16(b + 2, false)) << 16;
  };
  auto long_vr = [](const std::string& vr) {
    static const char* kLong[] = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"};
    return std::any_of(std::begin(kLong), std::end(kLong), [&](const char* l) { return vr == l; });
  };
  // GDCM allocates an element's declared length before reading it: a length past the end of the
  // file (a truncated or damaged file) is refused here instead.
  auto past_end = [&](uint16_t g, uint16_t e, uint64_t len) {
    if (len == 0xFFFFFFFFu || pos + len <= size) return;
    char tag[16];
    std::snprintf(tag, sizeof tag, "(%04X,%04X)", g, e);
    throw FormatError(path + ": truncated or damaged: element " + tag + " at byte " + std::to_string(pos) + " declares " +
                      std::to_string(len) + " bytes, the file holds " + std::to_string(size - pos) + " more");
  };
  uint8_t h[12];
  if (get(128, h, 4) && std::memcmp(h, "DICM", 4) == 0) {
    pos = 132;
    std::string ts;
    while (get(pos, h, 8) && u16(h, false) == 0x0002) {  // meta group: explicit VR little-endian
      uint64_t len = u16(h + 6, false), hdr = 8;
      if (long_vr(std::string(reinterpret_cast<const char*>(h + 4), 2))) {
        if (!get(pos, h, 12)) return;
        len = u32(h + 8, false), hdr = 12;
      }
      pos += hdr;
      past_end(0x0002, u16(h + 2, false), len);
      pos -= hdr;
      if (u16(h + 2, false) == 0x0010 && len < 128) {
        std::string v(len, '\0');
        if (!get(pos + hdr, reinterpret_cast<uint8_t*>(&v[0]), len)) return;
        ts = trim(v);
      }
      pos += hdr + len;
    }
    if (ts == "1.2.840.10008.1.2.1.99") return;  // deflated: GDCM inflates it first
    implicit_vr = ts == "1.2.840.10008.1.2";
    big = ts == "1.2.840.10008.1.2.2";
  } else if (get(0, h, 6)) {
    implicit_vr = !(std::isupper(h[4]) && std::isupper(h[5]));
  }
  constexpr uint64_t kUndefined = ~uint64_t{0};
  struct Level {
    uint64_t end;    // kUndefined: ends with a delimiter
    bool fragments;  // encapsulated pixel data: items are skipped, not entered
    bool implicit_vr;
  };
  std::vector<Level> stack;
  const gdcm::Dicts& dicts = gdcm::Global::GetInstance().GetDicts();
  while (pos + 8 <= size) {
    while (!stack.empty() && stack.back().end != kUndefined && pos >= stack.back().end) stack.pop_back();
    if (static_cast<int>(stack.size()) > 2 * kMaxNesting)
      throw FormatError(path + ": sequences nested deeper than " + std::to_string(kMaxNesting) + " levels");
    const bool imp = stack.empty() ? implicit_vr : stack.back().implicit_vr;
    if (!get(pos, h, 8)) return;
    const uint16_t g = u16(h, big), e = u16(h + 2, big);
    if (g == 0xFFFE) {  // item or delimiter: no VR
      const uint32_t len = u32(h + 4, big);
      pos += 8;
      if (e == 0xE000) {
        past_end(g, e, len);
        if (!stack.empty() && stack.back().fragments) {
          if (len == 0xFFFFFFFFu) return;
          pos += len;
        } else {
          stack.push_back({len == 0xFFFFFFFFu ? kUndefined : pos + len, false, imp});
        }
      } else if (e == 0xE00D || e == 0xE0DD) {
        if (!stack.empty() && stack.back().end == kUndefined) stack.pop_back();
      } else {
        return;
      }
      continue;
    }
    uint64_t len, hdr = 8;
    std::string vr;
    // An explicit-VR element without a VR is read as implicit, as GDCM's fallback does.
    if (imp || !std::isupper(h[4]) || !std::isupper(h[5])) {
      len = u32(h + 4, big);
      const char* dict_vr = gdcm::VR::GetVRString(dicts.GetDictEntry(gdcm::Tag(g, e)).GetVR());
      vr = dict_vr ? dict_vr : "";
    } else {
      vr.assign(reinterpret_cast<const char*>(h + 4), 2);
      if (long_vr(vr)) {
        if (!get(pos, h, 12)) return;
        len = u32(h + 8, big), hdr = 12;
      } else {
        len = u16(h + 6, big);
      }
    }
    pos += hdr;
    past_end(g, e, len);
    if (len == 0xFFFFFFFFu) {  // sequence, UN read as a sequence, or encapsulated pixel data
      stack.push_back({kUndefined, g == 0x7FE0 && e == 0x0010, imp || vr == "UN"});
    } else if (vr == "SQ") {
      stack.push_back({pos + len, false, imp});
    } else {
      pos += len;
    }
  }
}

float to_float(double d) {
  // Out-of-range doubles become +-inf (a plain cast would be undefined behaviour).
  return std::isfinite(d) && std::fabs(d) > 3.4e38 ? (d > 0 ? HUGE_VALF : -HUGE_VALF) : static_cast<float>(d);
}

}  // namespace

bool looks_like_dicom(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char head[132];
  f.read(head, 132);
  if (f.gcount() == 132 && std::memcmp(head + 128, "DICM", 4) == 0) return true;
  return has_dicom_suffix(path);
}

std::vector<float> DicomImage::frame_values(int f) const {
  if (f < 0 || f >= frames) throw FormatError(path + ": frame " + std::to_string(f) + " of " + std::to_string(frames));
  const size_t plane = static_cast<size_t>(rows) * cols;
  if (pixels.size() < (static_cast<size_t>(f) + 1) * plane) throw FormatError(path + ": pixels not decoded");
  const bool per_frame = frame_slopes.size() == static_cast<size_t>(frames);
  const double slope = per_frame ? frame_slopes[static_cast<size_t>(f)] : rescale_slope;
  const double intercept = per_frame ? frame_intercepts[static_cast<size_t>(f)] : rescale_intercept;
  std::vector<float> out(plane);
  const int32_t* p = pixels.data() + static_cast<size_t>(f) * plane;
  for (size_t i = 0; i < plane; ++i) out[i] = to_float(slope * p[i] + intercept);
  return out;
}

namespace {

// The GDCM part of read_dicom (runs in the isolated child).
DicomImage read_dicom_here(const std::string& path) {
  quiet_gdcm();
  std::error_code ec;
  gdcm::ImageReader reader;
  reader.SetFileName(path.c_str());
  bool ok = false;
  try {
    ok = reader.Read();
  } catch (const std::exception& e) {
    throw FormatError(path + ": GDCM cannot read it as a DICOM image (" + trim(std::string(e.what()).substr(0, 200)) + ")");
  }
  if (!ok) throw FormatError(path + ": GDCM cannot read it as a DICOM image (not DICOM, damaged or truncated, or without pixel data)");
  const gdcm::Image& im = reader.GetImage();
  const gdcm::DataSet& ds = reader.GetFile().GetDataSet();

  DicomImage img;
  img.path = path;
  img.transfer_syntax = trim(im.GetTransferSyntax().GetString() ? im.GetTransferSyntax().GetString() : "");
  img.transfer_syntax_name = ts_name(img.transfer_syntax);
  const gdcm::PixelFormat& pf = im.GetPixelFormat();
  const unsigned ndim = im.GetNumberOfDimensions();
  img.cols = static_cast<int>(im.GetDimension(0));
  img.rows = static_cast<int>(im.GetDimension(1));
  img.frames = ndim > 2 ? static_cast<int>(im.GetDimension(2)) : 1;
  img.samples_per_pixel = pf.GetSamplesPerPixel();
  img.bits_allocated = pf.GetBitsAllocated();
  img.bits_stored = pf.GetBitsStored();
  img.is_signed = pf.GetPixelRepresentation() == 1;
  const gdcm::PhotometricInterpretation pi = im.GetPhotometricInterpretation();
  img.photometric = trim(gdcm::PhotometricInterpretation::GetPIString(pi) ? gdcm::PhotometricInterpretation::GetPIString(pi) : "");

  if (img.rows <= 0 || img.cols <= 0 || img.frames <= 0 || ndim < 2 || ndim > 3)
    throw FormatError(path + ": image has no rows, columns or frames");
  if (img.bits_allocated != 8 && img.bits_allocated != 16 && img.bits_allocated != 32)
    throw FormatError(path + ": unsupported BitsAllocated " + std::to_string(img.bits_allocated));
  if (img.bits_stored <= 0 || img.bits_stored > img.bits_allocated)
    throw FormatError(path + ": BitsStored " + std::to_string(img.bits_stored) + " with BitsAllocated " + std::to_string(img.bits_allocated));
  const int spp = img.samples_per_pixel;
  using PI = gdcm::PhotometricInterpretation;
  const bool mono = spp == 1 && (pi == PI::MONOCHROME1 || pi == PI::MONOCHROME2);
  const bool rgb = spp == 3 && (pi == PI::RGB || pi == PI::YBR_RCT || pi == PI::YBR_ICT);
  const bool ybr = spp == 3 && (pi == PI::YBR_FULL || pi == PI::YBR_FULL_422 || pi == PI::YBR_PARTIAL_422 || pi == PI::YBR_PARTIAL_420);
  if (!mono && !rgb && !ybr)
    throw FormatError(path + ": photometric interpretation " + (img.photometric.empty() ? std::string("?") : img.photometric) + " with " +
                      std::to_string(spp) + " samples per pixel is not supported (MONOCHROME1/2, RGB or YBR only)");

  // Size checked before anything is allocated: every product, the cap, and (uncompressed) the
  // bytes the file really holds.
  const uint64_t bytes_per = static_cast<uint64_t>(img.bits_allocated / 8);
  uint64_t plane = 0, samples = 0, need = 0;
  if (__builtin_mul_overflow(static_cast<uint64_t>(img.rows), static_cast<uint64_t>(img.cols), &plane) ||
      __builtin_mul_overflow(plane, static_cast<uint64_t>(img.frames) * static_cast<uint64_t>(spp), &samples) ||
      __builtin_mul_overflow(samples, bytes_per, &need) || need > kMaxDicomImageBytes)
    throw FormatError(path + ": image of " + std::to_string(img.rows) + "x" + std::to_string(img.cols) + "x" + std::to_string(img.frames) +
                      " frames x" + std::to_string(spp) + " samples of " + std::to_string(bytes_per) + " bytes exceeds the " +
                      std::to_string(kMaxDicomImageBytes >> 30) + " GiB limit");
  const gdcm::Tag pixel_tag(0x7FE0, 0x0010);
  if (!ds.FindDataElement(pixel_tag)) throw FormatError(path + ": no pixel data (7FE0,0010)");
  if (!im.GetTransferSyntax().IsEncapsulated()) {
    const gdcm::ByteValue* bv = ds.GetDataElement(pixel_tag).GetByteValue();
    const uint64_t have = bv ? static_cast<uint64_t>(static_cast<uint32_t>(bv->GetLength())) : 0;
    if (have < need)
      throw FormatError(path + ": pixel data has " + std::to_string(have) + " bytes, too few for " + std::to_string(img.rows) + "x" +
                        std::to_string(img.cols) + "x" + std::to_string(img.frames) + " frames x" + std::to_string(spp) + " samples of " +
                        std::to_string(bytes_per) + " bytes");
  }
  // GDCM reads an element cut short by the end of the file as if it were whole: the pixel data
  // (uncompressed, not deflated) must fit in the file after the elements before it.
  if (!im.GetTransferSyntax().IsEncapsulated() && im.GetTransferSyntax() != gdcm::TransferSyntax::DeflatedExplicitVRLittleEndian) {
    gdcm::Reader head;
    head.SetFileName(path.c_str());
    bool read_head = false;
    try {
      read_head = head.ReadUpToTag(pixel_tag, {pixel_tag});  // stops where the pixel values start
    } catch (const std::exception&) {
    }
    const uint64_t file_size = fs::file_size(path, ec);
    const uint64_t start = read_head ? head.GetStreamCurrentPosition() : 0;
    if (!read_head || ec || start > file_size || need > file_size - start)
      throw FormatError(path + ": truncated: the pixel data needs " + std::to_string(need) + " bytes, the file holds " +
                        std::to_string(file_size > start ? file_size - start : 0) + " after its start");
  }
  if (im.GetBufferLength() != need)
    throw FormatError(path + ": GDCM reports " + std::to_string(im.GetBufferLength()) + " pixel bytes, " + std::to_string(need) + " expected");
  std::vector<char> buf(static_cast<size_t>(need));
  bool decoded = false;
  try {
    decoded = im.GetBuffer(buf.data());
  } catch (const std::exception& e) {
    throw FormatError(path + ": cannot decode the pixel data (" + img.transfer_syntax_name + "): " + trim(std::string(e.what()).substr(0, 200)));
  }
  if (!decoded) throw FormatError(path + ": cannot decode the pixel data (" + img.transfer_syntax_name + "; damaged or truncated)");

  // Stored values: BitsStored applied (GDCM's buffer holds whole BitsAllocated words).
  const int bs = img.bits_stored;
  const uint32_t mask = bs >= 32 ? 0xFFFFFFFFu : (uint32_t(1) << bs) - 1;
  auto sample = [&](size_t idx) -> int32_t {
    uint32_t v;
    if (bytes_per == 1) v = static_cast<uint8_t>(buf[idx]);
    else if (bytes_per == 2) { uint16_t w; std::memcpy(&w, &buf[idx * 2], 2); v = w; }
    else std::memcpy(&v, &buf[idx * 4], 4);
    v &= mask;
    if (img.is_signed && bs < 32 && ((v >> (bs - 1)) & 1)) v |= ~mask;
    return static_cast<int32_t>(v);
  };
  const size_t nplane = static_cast<size_t>(plane);
  img.pixels.resize(nplane * static_cast<size_t>(img.frames));
  if (spp == 1) {
    for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = sample(i);
  } else {
    const bool planar = im.GetPlanarConfiguration() == 1;
    for (size_t f = 0; f < static_cast<size_t>(img.frames); ++f)
      for (size_t p = 0; p < nplane; ++p) {
        auto s = [&](size_t c) { return planar ? sample((f * 3 + c) * nplane + p) : sample((f * nplane + p) * 3 + c); };
        img.pixels[f * nplane + p] =
            rgb ? static_cast<int32_t>(std::lround(0.299 * s(0) + 0.587 * s(1) + 0.114 * s(2))) : s(0);
      }
  }

  read_attributes(ds, img);
  if (pi == PI::MONOCHROME1) {
    // (min + max) of the BitsStored range: 2^bs - 1 unsigned, -1 signed.
    const int64_t sum = img.is_signed ? -1 : static_cast<int64_t>(mask);
    for (auto& v : img.pixels) v = static_cast<int32_t>(sum - v);
    if (img.has_window) img.window_center = img.rescale_slope * static_cast<double>(sum) + 2 * img.rescale_intercept - img.window_center;
  }
  return img;
}

// ---- isolation: GDCM runs in a forked child ----
// Debian's libgdcm keeps its assert()s, and some damaged files reach them (a fuzzed file with a
// garbled RescaleIntercept aborts in ImageHelper). GDCM therefore parses in a child process that
// sends its result back through a pipe; a child that dies is a FormatError naming the file.

struct Out {
  std::string b;
  template <typename T> void put(const T& v) { b.append(reinterpret_cast<const char*>(&v), sizeof v); }
  void str(const std::string& s) { put(static_cast<uint64_t>(s.size())); b += s; }
  template <typename T> void vec(const std::vector<T>& v) {
    put(static_cast<uint64_t>(v.size()));
    if (!v.empty()) b.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
  }
};
struct In {
  const std::string& b;
  size_t pos = 0;
  void need(uint64_t n) {
    if (n > b.size() - pos) throw std::length_error("short message");
  }
  template <typename T> void get(T& v) { need(sizeof v); std::memcpy(&v, b.data() + pos, sizeof v); pos += sizeof v; }
  void str(std::string& s) { uint64_t n; get(n); need(n); s.assign(b, pos, n); pos += n; }
  template <typename T> void vec(std::vector<T>& v) {
    uint64_t n; get(n);
    if (n > (b.size() - pos) / sizeof(T)) throw std::length_error("short message");
    v.resize(n);
    if (n) std::memcpy(v.data(), b.data() + pos, n * sizeof(T));
    pos += n * sizeof(T);
  }
};

// Both directions of DicomImage through Out / In (the same field order).
template <typename S, typename Img> void fields(S& s, Img& d) {
  s.str(d.path), s.str(d.transfer_syntax), s.str(d.transfer_syntax_name), s.str(d.modality), s.str(d.series_uid), s.str(d.photometric);
  for (auto* v : {&d.rows, &d.cols, &d.frames, &d.samples_per_pixel, &d.bits_allocated, &d.bits_stored, &d.instance_number}) s.template io<int>(*v);
  for (auto* v : {&d.is_signed, &d.has_rescale, &d.has_window, &d.has_position, &d.has_orientation, &d.has_pixel_spacing}) s.template io<bool>(*v);
  for (auto* v : {&d.rescale_slope, &d.rescale_intercept, &d.window_center, &d.window_width, &d.slice_position, &d.slice_spacing})
    s.template io<double>(*v);
  s.template io<std::array<double, 3>>(d.position);
  s.template io<std::array<double, 6>>(d.orientation);
  s.template io<std::array<double, 2>>(d.pixel_spacing);
  s.vec(d.frame_positions), s.vec(d.frame_slopes), s.vec(d.frame_intercepts), s.vec(d.pixels);
}
struct Writer : Out {
  template <typename T> void io(const T& v) { put(v); }
};
struct Reader : In {
  template <typename T> void io(T& v) { get(v); }
};

// Runs fn in a child process and returns what it produced; an exception in the child is rethrown
// here as a FormatError with its message, a child that dies (signal, abort) is a FormatError
// naming `what`.
std::string isolated(const std::string& what, const std::function<std::string()>& fn) {
  int fd[2];
  if (::pipe(fd) != 0) throw FormatError(what + ": cannot create a pipe for the DICOM reader (" + std::strerror(errno) + ")");
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fd[0]), ::close(fd[1]);
    throw FormatError(what + ": cannot start the DICOM reader process (" + std::strerror(errno) + ")");
  }
  if (pid == 0) {
    ::close(fd[0]);
    const int null_fd = ::open("/dev/null", O_WRONLY);  // GDCM's assert messages; ours go through the pipe
    if (null_fd >= 0) ::dup2(null_fd, 2);
    for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL}) ::signal(sig, SIG_DFL);  // die; the parent reports it
    std::string msg;
    try {
      msg = "O" + fn();
    } catch (const std::exception& e) {
      msg = std::string("E") + e.what();
    }
    for (size_t off = 0; off < msg.size();) {
      const ssize_t n = ::write(fd[1], msg.data() + off, std::min<size_t>(msg.size() - off, 1 << 20));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) ::_exit(3);
      off += static_cast<size_t>(n);
    }
    ::_exit(0);
  }
  ::close(fd[1]);
  std::string msg;
  std::vector<char> buf(1 << 20);
  while (true) {
    const ssize_t n = ::read(fd[0], buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    msg.append(buf.data(), static_cast<size_t>(n));
  }
  ::close(fd[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(status))
    throw FormatError(what + ": the DICOM reader (GDCM) stopped with signal " + std::to_string(WTERMSIG(status)) +
                      " on it: damaged or unsupported file");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || msg.empty())
    throw FormatError(what + ": the DICOM reader (GDCM) failed on it" +
                      (WIFEXITED(status) && WEXITSTATUS(status) != 0 ? " (exit " + std::to_string(WEXITSTATUS(status)) + ")" : std::string()));
  if (msg[0] == 'E') {
    std::string e = msg.substr(1);
    std::replace(e.begin(), e.end(), '\n', ' ');  // one line, whatever GDCM's exceptions said
    throw FormatError(e);
  }
  return msg.substr(1);
}

}  // namespace

DicomImage read_dicom(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw FormatError(path + ": cannot open (not a regular file)");
  check_nesting(path);
  const std::string bytes = isolated(path, [&] {
    DicomImage d = read_dicom_here(path);
    Writer w;
    fields(w, d);
    return std::move(w.b);
  });
  DicomImage d;
  Reader r{{bytes}};
  try {
    fields(r, d);
  } catch (const std::exception&) {
    throw FormatError(path + ": the DICOM reader process sent a short result");
  }
  return d;
}

std::vector<DicomSeries> find_dicom_series(const std::string& source) {
  quiet_gdcm();
  std::error_code ec;
  std::vector<std::string> files;  // absolute-or-as-given paths
  std::string root;
  const bool folder = fs::is_directory(source, ec);
  if (folder) {
    root = source;
    for (auto it = fs::recursive_directory_iterator(source, ec); !ec && it != fs::recursive_directory_iterator(); it.increment(ec))
      if (it->is_regular_file(ec) && looks_like_dicom(it->path().string())) files.push_back(it->path().string());
    if (ec) throw FormatError(source + ": cannot list the folder (" + ec.message() + ")");
    std::sort(files.begin(), files.end());
  } else {
    if (!fs::is_regular_file(source, ec)) throw FormatError(source + ": no such file or folder");
    root = fs::path(source).parent_path().string();
    files.push_back(source);
  }
  for (const auto& f : files) check_nesting(f);
  // SeriesInstanceUID of each file ("" when absent), read by GDCM's scanner in a child process;
  // a file it cannot read is named.
  std::vector<std::string> uids;
  if (!files.empty()) {
    const std::string bytes = isolated(source, [&] {
      quiet_gdcm();
      const gdcm::Tag series_tag(0x0020, 0x000E);
      gdcm::Scanner scanner;
      scanner.AddTag(series_tag);
      bool scanned = false;
      try {
        scanned = scanner.Scan(files);
      } catch (const std::exception& e) {
        throw FormatError(source + ": GDCM cannot scan the DICOM files (" + trim(std::string(e.what()).substr(0, 200)) + ")");
      }
      if (!scanned) throw FormatError(source + ": GDCM cannot scan the DICOM files");
      Out o;
      for (const auto& f : files) {
        if (!scanner.IsKey(f.c_str()))
          throw FormatError(f + ": looks like DICOM but GDCM cannot read it (damaged, truncated or not DICOM)");
        const char* uid = scanner.GetValue(f.c_str(), series_tag);
        o.str(uid ? trim(uid) : "");
      }
      return std::move(o.b);
    });
    In in{bytes};
    uids.resize(files.size());
    try {
      for (auto& u : uids) in.str(u);
    } catch (const std::exception&) {
      throw FormatError(source + ": the DICOM scanner process sent a short result");
    }
  }
  // (folder, uid) -> files
  std::map<std::pair<std::string, std::string>, std::vector<std::string>> groups;
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string& f = files[i];
    const std::string& uid = uids[i];
    const std::string rel = folder ? fs::relative(f, source).generic_string() : fs::path(f).filename().string();
    const std::string dir = folder ? fs::path(rel).parent_path().generic_string() : rel;
    groups[{dir.empty() ? "." : dir, uid}].push_back(rel);
  }
  // A series spread over several folders is one series (named by its first folder); files
  // without a UID form one series per folder.
  std::map<std::string, DicomSeries> by_uid;
  std::vector<DicomSeries> out;
  std::map<std::string, int> per_dir;
  for (const auto& [key, rels] : groups) {
    if (key.second.empty()) {
      DicomSeries s;
      s.root = root;
      s.name = key.first;
      s.files = rels;
      out.push_back(std::move(s));
      ++per_dir[key.first];
      continue;
    }
    auto [it, fresh] = by_uid.try_emplace(key.second);
    DicomSeries& s = it->second;
    if (fresh) {
      s.uid = key.second;
      s.root = root;
      s.name = key.first;
      ++per_dir[key.first];
    }
    s.files.insert(s.files.end(), rels.begin(), rels.end());
  }
  for (auto& [uid, s] : by_uid) out.push_back(std::move(s));
  for (auto& s : out) {
    std::sort(s.files.begin(), s.files.end());
    if (per_dir[s.name] > 1) s.name += "#" + s.uid;
  }
  std::sort(out.begin(), out.end(), [](const DicomSeries& a, const DicomSeries& b) { return a.name < b.name; });
  return out;
}

Volume read_dicom_series(const DicomSeries& series) {
  const std::string label = (fs::path(series.root) / series.name).generic_string();
  if (series.files.empty()) throw FormatError(label + ": no DICOM files in the series");
  struct File {
    DicomImage img;  // pixels released once converted
    std::string rel;
    std::vector<std::vector<float>> frames;
  };
  std::vector<File> files;
  files.reserve(series.files.size());
  for (const auto& rel : series.files) {
    File f;
    f.rel = rel;
    f.img = read_dicom((fs::path(series.root) / rel).string());
    const DicomImage& a = f.img;
    if (!files.empty()) {
      const DicomImage& first = files.front().img;
      if (a.cols != first.cols || a.rows != first.rows)
        throw FormatError(a.path + ": image is " + std::to_string(a.cols) + "x" + std::to_string(a.rows) + ", " + files.front().rel +
                          " of series " + label + " is " + std::to_string(first.cols) + "x" + std::to_string(first.rows));
    }
    for (int k = 0; k < a.frames; ++k) f.frames.push_back(a.frame_values(k));
    f.img.pixels.clear();
    f.img.pixels.shrink_to_fit();
    files.push_back(std::move(f));
  }

  // One slice per frame, with its position when the series has geometry.
  struct Slice {
    size_t file;
    int frame;
    std::array<double, 3> pos;
    double key;
  };
  const DicomImage& ref = files.front().img;
  bool geometry = true;
  for (const auto& f : files) {
    const DicomImage& a = f.img;
    geometry = geometry && a.has_position && a.has_orientation &&
               (a.frames == 1 || a.frame_positions.size() == static_cast<size_t>(a.frames) || a.slice_spacing > 0);
  }
  std::array<double, 3> r{}, c{}, n{};
  if (geometry) {
    for (const auto& f : files)
      for (int q = 0; q < 6; ++q)
        if (std::fabs(f.img.orientation[q] - ref.orientation[q]) > 1e-4)
          throw FormatError(label + ": " + f.rel + " and " + files.front().rel + " have different ImageOrientationPatient");
    r = {ref.orientation[0], ref.orientation[1], ref.orientation[2]};
    c = {ref.orientation[3], ref.orientation[4], ref.orientation[5]};
    n = {r[1] * c[2] - r[2] * c[1], r[2] * c[0] - r[0] * c[2], r[0] * c[1] - r[1] * c[0]};
    const double len = std::sqrt(n[0] * n[0] + n[1] * n[1] + n[2] * n[2]);
    if (!(len > 0.5)) geometry = false;  // degenerate cosines: treat as no geometry
    else for (auto& x : n) x /= len;
  }
  std::vector<Slice> slices;
  for (size_t i = 0; i < files.size(); ++i) {
    const DicomImage& a = files[i].img;
    for (int k = 0; k < a.frames; ++k) {
      Slice s{i, k, a.position, 0};
      if (geometry) {
        if (a.frame_positions.size() == static_cast<size_t>(a.frames)) s.pos = a.frame_positions[static_cast<size_t>(k)];
        else for (int d = 0; d < 3; ++d) s.pos[d] = a.position[d] + k * a.slice_spacing * n[d];
        s.key = s.pos[0] * n[0] + s.pos[1] * n[1] + s.pos[2] * n[2];
      }
      slices.push_back(s);
    }
  }
  auto slice_name = [&](const Slice& s) {
    return files[s.file].rel + (files[s.file].img.frames > 1 ? " (frame " + std::to_string(s.frame) + ")" : "");
  };
  std::stable_sort(slices.begin(), slices.end(), [&](const Slice& a, const Slice& b) {
    if (geometry && a.key != b.key) return a.key < b.key;
    const int ia = files[a.file].img.instance_number, ib = files[b.file].img.instance_number;
    if (ia != ib) return ia < ib;
    if (a.file != b.file) return files[a.file].rel < files[b.file].rel;
    return a.frame < b.frame;
  });

  double dz = ref.slice_spacing > 0 ? ref.slice_spacing : 1.0;
  if (geometry && slices.size() > 1) {
    std::vector<double> steps;
    for (size_t i = 1; i < slices.size(); ++i) {
      const double d = slices[i].key - slices[i - 1].key;
      if (d < 1e-3)
        throw FormatError(label + ": " + slice_name(slices[i - 1]) + " and " + slice_name(slices[i]) +
                          " are at the same slice position (" + std::to_string(slices[i].key) + " mm along the normal)");
      steps.push_back(d);
    }
    std::vector<double> sorted = steps;
    std::sort(sorted.begin(), sorted.end());
    const size_t m = sorted.size();
    const double median = m % 2 ? sorted[m / 2] : 0.5 * (sorted[m / 2 - 1] + sorted[m / 2]);
    for (size_t i = 0; i < steps.size(); ++i)
      if (steps[i] > 1.5 * median)
        throw FormatError(label + ": slice gap of " + std::to_string(steps[i]) + " mm between " + slice_name(slices[i]) + " and " +
                          slice_name(slices[i + 1]) + " (median spacing " + std::to_string(median) + " mm): a slice is missing");
    dz = median;
  }

  Volume v;
  v.path = label;
  v.nx = ref.cols;
  v.ny = ref.rows;
  v.nz = static_cast<int64_t>(slices.size());
  const DicomImage& first = files[slices.front().file].img;
  v.has_window = first.has_window;
  v.window_center = first.window_center;
  v.window_width = first.window_width;
  const std::string kind = ref.modality.empty() ? std::string("DICOM") : "DICOM " + ref.modality;
  v.description = kind + " series " + (series.uid.empty() ? std::string("(no UID)") : series.uid) + ", " + std::to_string(v.nz) +
                  (v.nz == 1 ? " slice, " : " slices, ") + ref.transfer_syntax_name +
                  (geometry ? "" : ", no patient geometry (ordered by InstanceNumber)");
  v.has_orientation = geometry;
  const double sr = ref.pixel_spacing[0], sc = ref.pixel_spacing[1];  // between rows, between columns
  Affine a = identity_affine();
  if (geometry) {
    const auto& o = slices.front().pos;
    for (int d = 0; d < 3; ++d) {
      a[d][0] = r[d] * sc;
      a[d][1] = c[d] * sr;
      a[d][2] = n[d] * dz;
      a[d][3] = o[d];
    }
    for (int d = 0; d < 2; ++d)  // LPS -> RAS
      for (int q = 0; q < 4; ++q) a[d][q] = -a[d][q];
  } else {
    a[0][0] = sc;
    a[1][1] = sr;
    a[2][2] = dz;
  }
  v.affine = a;
  const size_t plane = static_cast<size_t>(v.nx) * static_cast<size_t>(v.ny);
  v.data.resize(plane * slices.size());
  for (size_t k = 0; k < slices.size(); ++k) {
    auto& fr = files[slices[k].file].frames[static_cast<size_t>(slices[k].frame)];
    std::copy(fr.begin(), fr.end(), v.data.begin() + static_cast<std::ptrdiff_t>(k * plane));
    std::vector<float>().swap(fr);
  }
  return v;
}

}  // namespace sf::data
