#include "data/nifti.h"

#include <nifti2_io.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <memory>
#include <mutex>
#include <system_error>
#include <type_traits>

#include "data/tfrecord.h"

namespace sf::data {

int64_t NiftiVolume::nt() const {
  int64_t n = 1;
  for (size_t d = 3; d < dims.size(); ++d) n *= dims[d];
  return n;
}

bool is_nifti_name(const std::string& name) {
  auto ends = [&](const std::string& s) {
    if (name.size() < s.size()) return false;
    for (size_t i = 0; i < s.size(); ++i)
      if (std::tolower(static_cast<unsigned char>(name[name.size() - s.size() + i])) != s[i]) return false;
    return true;
  };
  return ends(".nii") || ends(".nii.gz");
}

namespace {

// Largest voxel data read (decompressed): an absurd header stops here with an error.
constexpr uint64_t kMaxVolumeBytes = 8ull << 30;
// Deflate expands at most 1032:1; a .nii.gz of n bytes cannot hold more than this.
constexpr uint64_t kMaxDeflateRatio = 1032;
// Largest side of a slice and largest number of slices one volume may give.
constexpr int64_t kMaxSide = 1 << 15;
constexpr int64_t kMaxSlices = 1 << 20;

void quiet_nifticlib() {
  static std::once_flag once;
  std::call_once(once, [] { nifti_set_debug_level(0); });
}

struct ImageFree {
  void operator()(nifti_image* p) const { nifti_image_free(p); }
};
using ImagePtr = std::unique_ptr<nifti_image, ImageFree>;

// The header fields the checks and the caller need, in host byte order.
struct Header {
  int version = 1;
  bool swapped = false;
  std::vector<int64_t> dims;
  int datatype = 0;
  double vox_offset = 0;
};

// Reads the first bytes of the file (decompressed for .gz names, as nifticlib does).
std::vector<uint8_t> read_head(const std::string& path, bool gz) {
  znzFile f = znzopen(path.c_str(), "rb", gz ? 1 : 0);
  if (znz_isnull(f)) throw FormatError(path + ": cannot open");
  std::vector<uint8_t> buf(sizeof(nifti_2_header));
  const size_t n = znzread(buf.data(), 1, buf.size(), f);
  znzclose(f);
  if (n > buf.size()) throw FormatError(path + ": corrupt or truncated gzip data in the header");  // a read error
  buf.resize(n);
  return buf;
}

const char* dtype_name(int datatype, int* esize) {
  switch (datatype) {
    case DT_UINT8: *esize = 1; return "uint8";
    case DT_INT16: *esize = 2; return "int16";
    case DT_INT32: *esize = 4; return "int32";
    case DT_FLOAT32: *esize = 4; return "float32";
    case DT_FLOAT64: *esize = 8; return "float64";
    case DT_INT8: *esize = 1; return "int8";
    case DT_UINT16: *esize = 2; return "uint16";
    case DT_UINT32: *esize = 4; return "uint32";
    case DT_INT64: *esize = 8; return "int64";
    case DT_UINT64: *esize = 8; return "uint64";
    default: *esize = 0; return nullptr;
  }
}

// Checks the raw header (nifticlib accepts a negative or NaN vox_offset and prints its own
// errors for some others) and bounds the voxel data by what the file can hold.
Header check_header(const std::string& path) {
  const bool gz = nifti_is_gzfile(path.c_str()) != 0;
  std::error_code ec;
  const uint64_t file_size = std::filesystem::file_size(path, ec);
  if (ec) throw FormatError(path + ": cannot open (" + ec.message() + ")");
  const std::vector<uint8_t> raw = read_head(path, gz);
  if (raw.size() < sizeof(nifti_1_header))
    throw FormatError(path + ": too short for a NIfTI header (" + std::to_string(raw.size()) + " bytes)");
  int32_t hs;
  std::memcpy(&hs, raw.data(), 4);
  const int32_t hs_swapped = static_cast<int32_t>(__builtin_bswap32(static_cast<uint32_t>(hs)));
  Header h;
  if (hs == 348 || hs == 540) h.version = hs == 348 ? 1 : 2;
  else if (hs_swapped == 348 || hs_swapped == 540) h.version = hs_swapped == 348 ? 1 : 2, h.swapped = true;
  else throw FormatError(path + ": not a NIfTI file (sizeof_hdr " + std::to_string(hs) + ")");
  int64_t dim[8];
  int64_t header_bytes;
  if (h.version == 1) {
    nifti_1_header n1;
    std::memcpy(&n1, raw.data(), sizeof n1);
    if (h.swapped) nifti_swap_as_nifti1(&n1);
    if (std::memcmp(n1.magic, "ni1", 4) == 0)
      throw FormatError(path + ": two-file NIfTI (.hdr/.img) is not supported; convert to .nii");
    if (std::memcmp(n1.magic, "n+1", 4) != 0) throw FormatError(path + ": bad NIfTI-1 magic (Analyze 7.5 is not supported)");
    for (int i = 0; i < 8; ++i) dim[i] = n1.dim[i];
    h.datatype = n1.datatype;
    h.vox_offset = n1.vox_offset;
    header_bytes = 348;
  } else {
    if (raw.size() < sizeof(nifti_2_header))
      throw FormatError(path + ": too short for a NIfTI-2 header (" + std::to_string(raw.size()) + " bytes)");
    nifti_2_header n2;
    std::memcpy(&n2, raw.data(), sizeof n2);
    if (h.swapped) nifti_swap_as_nifti2(&n2);
    if (std::memcmp(n2.magic, "ni2", 4) == 0)
      throw FormatError(path + ": two-file NIfTI (.hdr/.img) is not supported; convert to .nii");
    if (std::memcmp(n2.magic, "n+2", 4) != 0) throw FormatError(path + ": bad NIfTI-2 magic");
    for (int i = 0; i < 8; ++i) dim[i] = n2.dim[i];
    h.datatype = n2.datatype;
    h.vox_offset = static_cast<double>(n2.vox_offset);
    header_bytes = 540;
  }
  const int64_t nd = dim[0];
  if (nd < 1 || nd > 7) throw FormatError(path + ": invalid dim[0] = " + std::to_string(nd));
  // Every product is checked: no wrap-around can make a small count from huge dimensions.
  uint64_t count = 1;
  for (int64_t i = 1; i <= nd; ++i) {
    const int64_t d = dim[i];
    if (d < 1 || (i <= 3 && d > kMaxSide) || d > (int64_t(1) << 40))
      throw FormatError(path + ": invalid dim[" + std::to_string(i) + "] = " + std::to_string(d));
    h.dims.push_back(d);
    if (__builtin_mul_overflow(count, static_cast<uint64_t>(d), &count) || count > (uint64_t(1) << 40))
      throw FormatError(path + ": dimensions overflow (damaged header)");
  }
  {
    uint64_t nt = 1;
    for (size_t a = 3; a < h.dims.size(); ++a) nt *= static_cast<uint64_t>(h.dims[a]);
    const int64_t side = std::max({h.dims[0], h.dims.size() > 1 ? h.dims[1] : 1, h.dims.size() > 2 ? h.dims[2] : 1});
    const uint64_t slices = nt * static_cast<uint64_t>(side);
    if (slices > static_cast<uint64_t>(kMaxSlices))
      throw FormatError(path + ": " + std::to_string(slices) + " slices (more than " + std::to_string(kMaxSlices) +
                        "; damaged header?)");
  }
  int esize = 0;
  if (!dtype_name(h.datatype, &esize))
    throw FormatError(path + ": unsupported NIfTI datatype " + std::to_string(h.datatype) + " (complex/RGB/unknown)");
  if (!std::isfinite(h.vox_offset)) throw FormatError(path + ": invalid vox_offset (not finite)");
  const double max_offset = gz ? static_cast<double>(std::min<uint64_t>(kMaxVolumeBytes, file_size * kMaxDeflateRatio))
                               : static_cast<double>(file_size);
  if (h.vox_offset < static_cast<double>(header_bytes) || h.vox_offset > max_offset || h.vox_offset > 2147483647.0)
    throw FormatError(path + ": invalid vox_offset " + std::to_string(h.vox_offset) + " (must lie between the header size " +
                      std::to_string(header_bytes) + " and the file size " + std::to_string(file_size) + ")");
  const uint64_t off = static_cast<uint64_t>(h.vox_offset);
  uint64_t need = 0;
  const bool overflow = __builtin_mul_overflow(count, static_cast<uint64_t>(esize), &need);
  if (gz) {
    const uint64_t cap = std::min<uint64_t>(kMaxVolumeBytes, file_size * kMaxDeflateRatio + 4096);
    if (overflow || need > cap - std::min(cap, off))
      throw FormatError(path + ": header declares " + std::to_string(count) + " voxels of " + std::to_string(esize) +
                        " bytes, more than a gzip file of " + std::to_string(file_size) + " bytes can hold (refused)");
  } else if (overflow || need > file_size - off) {
    throw FormatError(path + ": truncated voxel data (" + std::to_string(file_size - off) + " bytes for " +
                      std::to_string(count) + " voxels of " + std::to_string(esize) + " bytes)");
  }
  return h;
}

// double -> float without undefined behaviour: out-of-range values become +-inf.
inline float to_f32(double d) {
  if (std::isfinite(d) && std::fabs(d) > static_cast<double>(std::numeric_limits<float>::max()))
    return d > 0 ? std::numeric_limits<float>::infinity() : -std::numeric_limits<float>::infinity();
  return static_cast<float>(d);
}

template <typename T>
void convert(const void* src, size_t count, std::vector<float>& out) {
  out.resize(count);
  const T* p = static_cast<const T*>(src);
  for (size_t i = 0; i < count; ++i) {
    if constexpr (std::is_same_v<T, double>) out[i] = to_f32(p[i]);
    else out[i] = static_cast<float>(p[i]);
  }
}

Affine to_affine(const nifti_dmat44& m) {
  Affine a{};
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) a[r][c] = m.m[r][c];
  return a;
}

}  // namespace

NiftiVolume read_nifti(const std::string& path) {
  if (!is_nifti_name(path)) throw FormatError(path + ": a NIfTI file name must end in .nii or .nii.gz");
  quiet_nifticlib();
  const Header h = check_header(path);
  ImagePtr nim(nifti_image_read(path.c_str(), 0));
  if (!nim) throw FormatError(path + ": nifticlib cannot read the header");
  int esize = 0;
  const char* dtype = dtype_name(nim->datatype, &esize);
  uint64_t count = 1;
  for (int64_t d : h.dims) count *= static_cast<uint64_t>(d);
  // The header nifticlib read is the one checked above.
  if (!dtype || nim->datatype != h.datatype || nim->nbyper != esize || nim->ndim != static_cast<int64_t>(h.dims.size()) ||
      static_cast<uint64_t>(nim->nvox) != count)
    throw FormatError(path + ": inconsistent NIfTI header");
  if (nifti_image_load(nim.get()) < 0 || !nim->data)
    throw FormatError(path + ": truncated or unreadable voxel data (" + std::to_string(count) + " voxels of " +
                      std::to_string(esize) + " bytes expected)");
  NiftiVolume vol;
  vol.path = path;
  vol.version = h.version;
  vol.dims = h.dims;
  vol.dtype = dtype;
  vol.big_endian = h.swapped;  // hosts are little-endian
  vol.scl_slope = nim->scl_slope;
  vol.scl_inter = nim->scl_inter;
  for (int a = 0; a < 3; ++a) vol.pixdim[static_cast<size_t>(a)] = nim->pixdim[a + 1];
  const size_t n = static_cast<size_t>(count);
  switch (nim->datatype) {
    case DT_UINT8: convert<uint8_t>(nim->data, n, vol.data); break;
    case DT_INT16: convert<int16_t>(nim->data, n, vol.data); break;
    case DT_INT32: convert<int32_t>(nim->data, n, vol.data); break;
    case DT_FLOAT32: convert<float>(nim->data, n, vol.data); break;
    case DT_FLOAT64: convert<double>(nim->data, n, vol.data); break;
    case DT_INT8: convert<int8_t>(nim->data, n, vol.data); break;
    case DT_UINT16: convert<uint16_t>(nim->data, n, vol.data); break;
    case DT_UINT32: convert<uint32_t>(nim->data, n, vol.data); break;
    case DT_INT64: convert<int64_t>(nim->data, n, vol.data); break;
    case DT_UINT64: convert<uint64_t>(nim->data, n, vol.data); break;
  }
  if (vol.scl_slope != 0 && std::isfinite(vol.scl_slope) && std::isfinite(vol.scl_inter) &&
      !(vol.scl_slope == 1 && vol.scl_inter == 0)) {
    for (auto& v : vol.data) v = to_f32(static_cast<double>(v) * vol.scl_slope + vol.scl_inter);
  }
  // nibabel's get_best_affine.
  if (nim->sform_code > 0) {
    vol.affine = to_affine(nim->sto_xyz);
    vol.affine_source = "sform";
  } else if (nim->qform_code > 0) {
    vol.affine = to_affine(nim->qto_xyz);
    vol.affine_source = "qform";
  } else {
    // nibabel's shape_zoom_affine(shape, zooms, x_flip=True): the grid's centre at the origin.
    vol.affine = identity_affine();
    for (int a = 0; a < 3; ++a) {
      const bool present = a < static_cast<int>(h.dims.size());
      const double n_a = present ? static_cast<double>(h.dims[static_cast<size_t>(a)]) : 1.0;
      double zoom = present ? nim->pixdim[a + 1] : 1.0;
      if (a == 0) zoom = -zoom;
      vol.affine[a][a] = zoom;
      vol.affine[a][3] = -(n_a - 1) / 2.0 * zoom;
    }
    vol.affine_source = "base";
  }
  for (const auto& row : vol.affine)
    for (double x : row)
      if (!std::isfinite(x)) throw FormatError(path + ": the " + vol.affine_source + " affine holds a non-finite value");
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
  v.description = "NIfTI-" + std::to_string(n.version) + " " + n.dtype + ", affine from " + n.affine_source;
  v.nx = n.nx(), v.ny = n.ny(), v.nz = n.nz(), v.nt = n.nt();
  v.data = std::move(n.data);
  v.affine = n.affine;
  return v;
}

}  // namespace sf::data
