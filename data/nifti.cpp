#include "data/nifti.h"

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <type_traits>

#include "data/tfrecord.h"

namespace sf::data {

int64_t NiftiVolume::nt() const {
  int64_t n = 1;
  for (size_t d = 3; d < dims.size(); ++d) n *= dims[d];
  return n;
}

bool is_nifti_name(const std::string& name) {
  auto ends = [&](const std::string& s) { return name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0; };
  return ends(".nii") || ends(".nii.gz") || ends(".NII") || ends(".NII.GZ");
}

namespace {

// Largest volume read (decompressed): a gzip bomb or absurd header stops here with an error.
constexpr uint64_t kMaxVolumeBytes = 8ull << 30;
// Largest side of a slice and largest number of slices one volume may give.
constexpr int64_t kMaxSide = 1 << 15;
constexpr int64_t kMaxSlices = 1 << 20;

std::vector<uint8_t> read_maybe_gz(const std::string& path) {
  gzFile gz = gzopen(path.c_str(), "rb");  // reads plain files transparently
  if (!gz) throw FormatError(path + ": cannot open");
  std::vector<uint8_t> out;
  uint8_t buf[1 << 16];
  while (true) {
    int n = gzread(gz, buf, sizeof buf);
    if (n < 0) {
      int err = 0;
      std::string msg = gzerror(gz, &err);
      gzclose(gz);
      throw FormatError(path + ": corrupt gzip stream (" + msg + ")");
    }
    if (n == 0) break;
    if (out.size() + static_cast<size_t>(n) > kMaxVolumeBytes) {
      gzclose(gz);
      throw FormatError(path + ": volume larger than " + std::to_string(kMaxVolumeBytes >> 30) + " GiB decompressed (refused)");
    }
    out.insert(out.end(), buf, buf + n);
  }
  gzclose(gz);
  return out;
}

struct Bytes {
  const uint8_t* p;
  size_t n;
  bool swap;
  const std::string& path;
  template <typename T>
  T get(size_t off) const {
    if (off + sizeof(T) > n) throw FormatError(path + ": truncated NIfTI header");
    T v;
    uint8_t b[sizeof(T)];
    std::memcpy(b, p + off, sizeof(T));
    if (swap) std::reverse(b, b + sizeof(T));
    std::memcpy(&v, b, sizeof(T));
    return v;
  }
};

// double -> float without undefined behaviour: out-of-range values become +-inf.
inline float to_f32(double d) {
  if (std::isfinite(d) && std::fabs(d) > static_cast<double>(std::numeric_limits<float>::max()))
    return d > 0 ? std::numeric_limits<float>::infinity() : -std::numeric_limits<float>::infinity();
  return static_cast<float>(d);
}

template <typename T>
void convert(const uint8_t* src, size_t count, bool swap, std::vector<float>& out) {
  out.resize(count);
  for (size_t i = 0; i < count; ++i) {
    uint8_t b[sizeof(T)];
    std::memcpy(b, src + i * sizeof(T), sizeof(T));
    if (swap) std::reverse(b, b + sizeof(T));
    T v;
    std::memcpy(&v, b, sizeof(T));
    if constexpr (std::is_same_v<T, double>) out[i] = to_f32(v);
    else out[i] = static_cast<float>(v);
  }
}

}  // namespace

NiftiVolume read_nifti(const std::string& path) {
  std::vector<uint8_t> raw = read_maybe_gz(path);
  NiftiVolume vol;
  vol.path = path;
  if (raw.size() < 348) throw FormatError(path + ": too short for a NIfTI header (" + std::to_string(raw.size()) + " bytes)");
  int32_t hs_le;
  std::memcpy(&hs_le, raw.data(), 4);
  int32_t hs_be = static_cast<int32_t>(__builtin_bswap32(static_cast<uint32_t>(hs_le)));
  bool swap;
  if (hs_le == 348 || hs_le == 540) { swap = false; vol.version = hs_le == 348 ? 1 : 2; }
  else if (hs_be == 348 || hs_be == 540) { swap = true; vol.version = hs_be == 348 ? 1 : 2; }
  else throw FormatError(path + ": not a NIfTI file (sizeof_hdr " + std::to_string(hs_le) + ")");
  vol.big_endian = swap;  // hosts are little-endian
  Bytes h{raw.data(), raw.size(), swap, path};
  int16_t datatype;
  double vox_offset;
  std::vector<int64_t> dim(8);
  if (vol.version == 1) {
    if (std::memcmp(raw.data() + 344, "n+1", 4) != 0 && std::memcmp(raw.data() + 344, "ni1", 4) != 0)
      throw FormatError(path + ": bad NIfTI-1 magic");
    if (std::memcmp(raw.data() + 344, "ni1", 4) == 0)
      throw FormatError(path + ": two-file NIfTI (.hdr/.img) is not supported; convert to .nii");
    for (int i = 0; i < 8; ++i) dim[static_cast<size_t>(i)] = h.get<int16_t>(40 + 2 * i);
    datatype = h.get<int16_t>(70);
    for (int i = 0; i < 3; ++i) vol.pixdim[static_cast<size_t>(i)] = h.get<float>(80 + 4 * (i + 1));
    vox_offset = h.get<float>(108);
    if (!std::isfinite(vox_offset)) throw FormatError(path + ": invalid vox_offset (not finite)");
    vol.scl_slope = h.get<float>(112);
    vol.scl_inter = h.get<float>(116);
  } else {
    if (std::memcmp(raw.data() + 4, "n+2", 4) != 0) throw FormatError(path + ": bad NIfTI-2 magic");
    datatype = h.get<int16_t>(12);
    for (int i = 0; i < 8; ++i) dim[static_cast<size_t>(i)] = h.get<int64_t>(16 + 8 * i);
    for (int i = 0; i < 3; ++i) vol.pixdim[static_cast<size_t>(i)] = h.get<double>(104 + 8 * (i + 1));
    vox_offset = static_cast<double>(h.get<int64_t>(168));
    vol.scl_slope = h.get<double>(176);
    vol.scl_inter = h.get<double>(184);
  }
  int64_t nd = dim[0];
  if (nd < 1 || nd > 7) throw FormatError(path + ": invalid dim[0] = " + std::to_string(nd));
  // Every product is checked: the voxel count is bounded by the bytes the file really holds.
  uint64_t count = 1;
  for (int64_t i = 1; i <= nd; ++i) {
    const int64_t d = dim[static_cast<size_t>(i)];
    if (d < 1 || (i <= 3 && d > kMaxSide) || d > (int64_t(1) << 40))
      throw FormatError(path + ": invalid dim[" + std::to_string(i) + "] = " + std::to_string(d));
    vol.dims.push_back(d);
    if (__builtin_mul_overflow(count, static_cast<uint64_t>(d), &count) || count > (uint64_t(1) << 40))
      throw FormatError(path + ": dimensions " + std::to_string(vol.nx()) + "x... overflow (damaged header)");
  }
  {
    // Slices this volume gives along any axis, over all time points: bounded.
    uint64_t slices = static_cast<uint64_t>(vol.nt()) * static_cast<uint64_t>(std::max({vol.nx(), vol.ny(), vol.nz()}));
    if (slices > static_cast<uint64_t>(kMaxSlices))
      throw FormatError(path + ": " + std::to_string(slices) + " slices (more than " + std::to_string(kMaxSlices) + "; damaged header?)");
  }
  size_t esize;
  switch (datatype) {
    case 2: vol.dtype = "uint8"; esize = 1; break;
    case 4: vol.dtype = "int16"; esize = 2; break;
    case 8: vol.dtype = "int32"; esize = 4; break;
    case 16: vol.dtype = "float32"; esize = 4; break;
    case 64: vol.dtype = "float64"; esize = 8; break;
    case 256: vol.dtype = "int8"; esize = 1; break;
    case 512: vol.dtype = "uint16"; esize = 2; break;
    case 768: vol.dtype = "uint32"; esize = 4; break;
    case 1024: vol.dtype = "int64"; esize = 8; break;
    case 1280: vol.dtype = "uint64"; esize = 8; break;
    default: throw FormatError(path + ": unsupported NIfTI datatype " + std::to_string(datatype) + " (complex/RGB)");
  }
  const uint64_t header_bytes = vol.version == 1 ? 348 : 540;
  if (vox_offset < static_cast<double>(header_bytes) || vox_offset > static_cast<double>(raw.size()))
    throw FormatError(path + ": invalid vox_offset " + std::to_string(vox_offset) +
                      " (must lie between the header size " + std::to_string(header_bytes) + " and the file size " +
                      std::to_string(raw.size()) + ")");
  size_t off = static_cast<size_t>(vox_offset);
  uint64_t need64 = 0;
  if (__builtin_mul_overflow(count, static_cast<uint64_t>(esize), &need64) || need64 > raw.size() - off)
    throw FormatError(path + ": truncated voxel data (" + std::to_string(raw.size() - off) + " bytes for " +
                      std::to_string(count) + " voxels of " + std::to_string(esize) + " bytes)");
  size_t need = static_cast<size_t>(need64);
  if (off + need > raw.size())
    throw FormatError(path + ": truncated voxel data (" + std::to_string(raw.size() > off ? raw.size() - off : 0) +
                      " of " + std::to_string(need) + " bytes)");
  const uint8_t* src = raw.data() + off;
  size_t n = static_cast<size_t>(count);
  switch (datatype) {
    case 2: convert<uint8_t>(src, n, swap, vol.data); break;
    case 4: convert<int16_t>(src, n, swap, vol.data); break;
    case 8: convert<int32_t>(src, n, swap, vol.data); break;
    case 16: convert<float>(src, n, swap, vol.data); break;
    case 64: convert<double>(src, n, swap, vol.data); break;
    case 256: convert<int8_t>(src, n, swap, vol.data); break;
    case 512: convert<uint16_t>(src, n, swap, vol.data); break;
    case 768: convert<uint32_t>(src, n, swap, vol.data); break;
    case 1024: convert<int64_t>(src, n, swap, vol.data); break;
    case 1280: convert<uint64_t>(src, n, swap, vol.data); break;
  }
  if (vol.scl_slope != 0 && std::isfinite(vol.scl_slope) && std::isfinite(vol.scl_inter) &&
      !(vol.scl_slope == 1 && vol.scl_inter == 0)) {
    for (auto& v : vol.data) v = to_f32(static_cast<double>(v) * vol.scl_slope + vol.scl_inter);
  }
  return vol;
}

std::pair<double, double> intensity_range(const std::vector<float>& values, const IntensityScaling& s) {
  if (s.mode == IntensityScaling::Window) return {s.center - s.width / 2, s.center + s.width / 2};
  if (values.empty()) return {0, 1};
  if (s.mode == IntensityScaling::MinMax) {
    auto [mn, mx] = std::minmax_element(values.begin(), values.end());
    return {*mn, *mx};
  }
  std::vector<float> v(values);
  auto pct = [&](double p) {  // linear interpolation, as numpy.percentile
    double pos = p / 100.0 * static_cast<double>(v.size() - 1);
    size_t lo = static_cast<size_t>(std::floor(pos));
    size_t hi = std::min(lo + 1, v.size() - 1);
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(lo), v.end());
    double a = v[lo];
    double b = a;
    if (hi != lo) b = *std::min_element(v.begin() + static_cast<std::ptrdiff_t>(lo) + 1, v.end());
    return a + (b - a) * (pos - static_cast<double>(lo));
  };
  double lo = pct(s.lo_pct), hi = pct(s.hi_pct);
  return {lo, hi};
}

uint8_t to_u8(float v, double lo, double hi) {
  if (!(hi > lo)) return 0;
  double x = (static_cast<double>(v) - lo) / (hi - lo) * 255.0;
  if (!(x > 0)) return 0;  // also NaN
  if (x >= 255) return 255;
  return static_cast<uint8_t>(std::lround(x));
}

Image nifti_slice(const NiftiVolume& vol, int axis, int64_t index, int64_t t, double lo, double hi) {
  int64_t n[3] = {vol.nx(), vol.ny(), vol.nz()};
  if (axis < 0 || axis > 2) throw FormatError(vol.path + ": axis " + std::to_string(axis) + " not in 0..2");
  if (index < 0 || index >= n[axis])
    throw FormatError(vol.path + ": slice " + std::to_string(index) + " out of range [0, " + std::to_string(n[axis]) + ") along axis " + std::to_string(axis));
  int ca = axis == 0 ? 1 : 0;  // column axis
  int ra = axis == 2 ? 1 : 2;  // row axis
  Image img;
  img.width = static_cast<int>(n[ca]);
  img.height = static_cast<int>(n[ra]);
  img.channels = 1;
  img.pixels.resize(static_cast<size_t>(img.width) * img.height);
  const int64_t stride[3] = {1, n[0], n[0] * n[1]};
  const int64_t base = t * n[0] * n[1] * n[2] + index * stride[axis];
  for (int r = 0; r < img.height; ++r)
    for (int c = 0; c < img.width; ++c)
      img.pixels[static_cast<size_t>(r) * img.width + c] =
          to_u8(vol.data[static_cast<size_t>(base + r * stride[ra] + c * stride[ca])], lo, hi);
  return img;
}

Volume read_nifti_volume(const std::string& path) {
  NiftiVolume n = read_nifti(path);
  Volume v;
  v.path = n.path;
  v.description = "NIfTI-" + std::to_string(n.version) + " " + n.dtype;
  v.nx = n.nx(), v.ny = n.ny(), v.nz = n.nz(), v.nt = n.nt();
  v.data = std::move(n.data);
  for (int a = 0; a < 3; ++a) v.affine[a][a] = n.pixdim[static_cast<size_t>(a)] > 0 ? n.pixdim[static_cast<size_t>(a)] : 1.0;
  return v;
}

}  // namespace sf::data
