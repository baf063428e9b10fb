#include "data/h5.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace sf::h5 {

std::recursive_mutex& global_mutex() {
  static std::recursive_mutex m;
  return m;
}

namespace {

// libhdf5 closes files still open at exit (H5_term_library); after a failed write (disk full)
// that flush crashes. Every file we write is closed explicitly and checked, so the at-exit pass
// has nothing useful left to do: turn it off before the library initialises.
const bool kNoAtExit = [] {
  H5dont_atexit();
  return true;
}();

// Links and attributes stay in their object header (checksummed) however many there are:
// HDF5's "dense" storage would put them in a fractal heap whose direct blocks carry no checksum,
// and libhdf5 1.10 crashes on some damaged ones (found by tests/test_robust.cpp).
constexpr unsigned kMaxCompact = 65535, kMinDense = 65534;

void set_compact_storage(hid_t ocpl, bool links) {
  if (links && H5Pset_link_phase_change(ocpl, kMaxCompact, kMinDense) < 0) throw Error("cannot set link storage");
  if (H5Pset_attr_phase_change(ocpl, kMaxCompact, kMinDense) < 0) throw Error("cannot set attribute storage");
}

// Datasets up to this size are stored compact (inside their checksummed object header).
constexpr uint64_t kCompactBytes = 16 << 10;
// Largest chunk of a checksummed dataset (HDF5 chunks must stay below 4 GiB).
constexpr uint64_t kMaxChunkBytes = 256ull << 20;
// Largest string attribute or string element read (a damaged type cannot ask for more).
constexpr size_t kMaxStringBytes = 64u << 20;

void quiet_hdf5() {
  (void)kNoAtExit;
  static std::once_flag once;
  std::call_once(once, [] { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); });
}


std::string join(const Handle& loc, const std::string& name) {
  const std::string& w = loc.where();
  if (!w.empty() && w.back() == '/') return w + name;
  return w + "/" + name;
}

[[noreturn]] void fail(const std::string& what, const std::string& where) {
  throw Error(where + ": " + what);
}

Handle check(hid_t id, const std::string& what, const std::string& where) {
  if (id < 0) fail(what, where);
  return Handle(id, where);
}

// Closes plain hid_t's (types, spaces, property lists) when leaving scope.
struct Tmp {
  hid_t id;
  herr_t (*close)(hid_t);
  ~Tmp() {
    if (id >= 0) close(id);
  }
};

// Bytes per element as stored (what the storage check compares against).
uint64_t element_bytes(const Handle& ds) {
  hid_t t = H5Dget_type(ds.id());
  if (t < 0) fail("cannot read the datatype", ds.where());
  size_t sz = H5Tget_size(t);
  H5Tclose(t);
  return sz;
}

template <typename T>
std::vector<T> read_as(const Handle& loc, const std::string& name, hid_t mem_type, std::vector<int64_t>* shape_out) {
  std::vector<int64_t> shape = dataset_shape(loc, name);
  Handle ds = check(H5Dopen2(loc.id(), name.c_str(), H5P_DEFAULT), "cannot open dataset", join(loc, name));
  const int64_t n = numel(shape);
  if (n < 0) fail("invalid shape " + shape_str(shape), ds.where());
  check_storage(ds, static_cast<uint64_t>(n) * element_bytes(ds));
  std::vector<T> out(static_cast<size_t>(n));
  if (!out.empty() && H5Dread(ds.id(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()) < 0)
    fail("cannot read dataset (wrong type or corrupt file)", ds.where());
  if (shape_out) *shape_out = shape;
  return out;
}

// Creation properties of a checksummed dataset: compact when small (the object header's checksum
// covers the data), else chunked (rows along the first dimension, chunks <= kMaxChunkBytes) with
// Fletcher32.
hid_t dataset_layout(const std::vector<int64_t>& shape, size_t elem) {
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (dcpl < 0) throw Error("cannot create dataset properties");
  set_compact_storage(dcpl, false);
  const int64_t n = numel(shape);
  if (shape.empty() || n == 0 || static_cast<uint64_t>(n) * elem <= kCompactBytes) {
    if (n > 0 || shape.empty()) H5Pset_layout(dcpl, H5D_COMPACT);
    return dcpl;
  }
  std::vector<hsize_t> chunk(shape.begin(), shape.end());
  uint64_t row = elem;
  for (size_t d = 1; d < shape.size(); ++d) row *= static_cast<uint64_t>(shape[d]);
  uint64_t rows = std::max<uint64_t>(1, kMaxChunkBytes / std::max<uint64_t>(row, 1));
  chunk[0] = static_cast<hsize_t>(std::min<uint64_t>(rows, static_cast<uint64_t>(shape[0])));
  for (size_t d = 1; d < chunk.size() && row > kMaxChunkBytes; ++d) chunk[d] = 1;  // huge rows: split further
  H5Pset_chunk(dcpl, static_cast<int>(chunk.size()), chunk.data());
  H5Pset_fletcher32(dcpl);
  return dcpl;
}

// Creates the groups above `name` ("a/b/c" -> a, a/b) with compact storage.
void make_parents(const Handle& loc, const std::string& name) {
  size_t slash = name.rfind('/');
  if (slash != std::string::npos && slash > 0) require_group(loc, name.substr(0, slash));
}

void write_as(const Handle& loc, const std::string& name, hid_t file_type, hid_t mem_type, const void* data,
              const std::vector<int64_t>& shape) {
  std::string where = join(loc, name);
  if (exists(loc, name)) fail("already exists", where);
  make_parents(loc, name);
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  Tmp space{shape.empty() ? H5Screate(H5S_SCALAR) : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr),
            H5Sclose};
  if (space.id < 0) fail("cannot create dataspace", where);
  Tmp lcpl{H5Pcreate(H5P_LINK_CREATE), H5Pclose};
  H5Pset_create_intermediate_group(lcpl.id, 1);
  Tmp dcpl{dataset_layout(shape, H5Tget_size(file_type)), H5Pclose};
  Handle ds = check(H5Dcreate2(loc.id(), name.c_str(), file_type, space.id, lcpl.id, dcpl.id, H5P_DEFAULT),
                    "cannot create dataset", where);
  if (numel(shape) > 0 && H5Dwrite(ds.id(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    fail("cannot write dataset", where);
  if (H5Dclose(ds.release()) < 0) fail("cannot write dataset (close failed)", where);
}

Handle open_attr(const Handle& obj, const std::string& name) {
  return check(H5Aopen(obj.id(), name.c_str(), H5P_DEFAULT), "no attribute '" + name + "'", obj.where());
}

template <typename T>
void write_scalar_attr(const Handle& obj, const std::string& name, hid_t file_type, hid_t mem_type, T value) {
  if (H5Aexists(obj.id(), name.c_str()) > 0) H5Adelete(obj.id(), name.c_str());
  Tmp space{H5Screate(H5S_SCALAR), H5Sclose};
  Handle a = check(H5Acreate2(obj.id(), name.c_str(), file_type, space.id, H5P_DEFAULT, H5P_DEFAULT),
                   "cannot create attribute '" + name + "'", obj.where());
  if (H5Awrite(a.id(), mem_type, &value) < 0) fail("cannot write attribute '" + name + "'", obj.where());
}

template <typename T>
T read_scalar_attr(const Handle& obj, const std::string& name, hid_t mem_type) {
  Handle a = open_attr(obj, name);
  T v{};
  if (H5Aread(a.id(), mem_type, &v) < 0) fail("cannot read attribute '" + name + "' as a number", obj.where());
  return v;
}

}  // namespace

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    Handle tmp(std::move(*this));
    id_ = o.id_;
    where_ = std::move(o.where_);
    o.id_ = -1;
  }
  return *this;
}

hid_t Handle::release() {
  hid_t id = id_;
  id_ = -1;
  return id;
}

Handle::~Handle() {
  if (id_ < 0) return;
  switch (H5Iget_type(id_)) {
    case H5I_FILE: H5Fclose(id_); break;
    case H5I_GROUP: H5Gclose(id_); break;
    case H5I_DATASET: H5Dclose(id_); break;
    case H5I_ATTR: H5Aclose(id_); break;
    case H5I_DATATYPE: H5Tclose(id_); break;
    case H5I_DATASPACE: H5Sclose(id_); break;
    default: H5Idec_ref(id_); break;
  }
}

// True when `path` exists and starts like an HDF5 file.
static bool is_hdf5(const std::string& path) {
#if H5_VERSION_GE(1, 12, 0)
  return H5Fis_accessible(path.c_str(), H5P_DEFAULT) > 0;
#else
  return H5Fis_hdf5(path.c_str()) > 0;
#endif
}

Handle open_file(const std::string& path, Mode mode) {
  quiet_hdf5();
  if (!is_hdf5(path)) fail("not a readable HDF5 file", path);
  hid_t id = H5Fopen(path.c_str(), mode == Mode::ReadOnly ? H5F_ACC_RDONLY : H5F_ACC_RDWR, H5P_DEFAULT);
  return check(id, "cannot open HDF5 file", path + ":/");
}

Handle create_file(const std::string& path, bool overwrite) {
  quiet_hdf5();
  Tmp fapl{H5Pcreate(H5P_FILE_ACCESS), H5Pclose};
  // Newest format: checksums on every metadata block (superblock, object headers, chunk indices).
  H5Pset_libver_bounds(fapl.id, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST);
  Tmp fcpl{H5Pcreate(H5P_FILE_CREATE), H5Pclose};
  set_compact_storage(fcpl.id, true);  // the root group's links and attributes
  hid_t id = H5Fcreate(path.c_str(), overwrite ? H5F_ACC_TRUNC : H5F_ACC_EXCL, fcpl.id, fapl.id);
  return check(id, overwrite ? "cannot create HDF5 file" : "cannot create HDF5 file (exists already?)", path + ":/");
}

void close_file(Handle& file) {
  if (!file.valid()) return;
  std::string where = file.where();
  hid_t id = file.release();
  herr_t flushed = H5Fflush(id, H5F_SCOPE_LOCAL);
  herr_t closed = H5Fclose(id);
  if (flushed < 0 || closed < 0) fail("cannot finish writing the file (disk full or I/O error)", where);
}

int superblock_version(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return -1;
  // The signature sits at offset 0, 512, 1024, ... (after a user block).
  static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
  int version = -1;
  unsigned char buf[9];
  for (long off = 0; off <= (1L << 20); off = off ? off * 2 : 512) {
    if (std::fseek(f, off, SEEK_SET) != 0 || std::fread(buf, 1, 9, f) != 9) break;
    if (std::memcmp(buf, sig, 8) == 0) {
      version = buf[8];
      break;
    }
  }
  std::fclose(f);
  return version;
}

Handle open_group(const Handle& loc, const std::string& name) {
  return check(H5Gopen2(loc.id(), name.c_str(), H5P_DEFAULT), "no such group", join(loc, name));
}

Handle require_group(const Handle& loc, const std::string& name) {
  if (exists(loc, name)) return open_group(loc, name);
  // One level at a time, each with compact link and attribute storage.
  Tmp gcpl{H5Pcreate(H5P_GROUP_CREATE), H5Pclose};
  set_compact_storage(gcpl.id, true);
  size_t pos = 0;
  while (true) {
    size_t next = name.find('/', pos);
    std::string prefix = name.substr(0, next);
    if (!prefix.empty() && !exists(loc, prefix)) {
      hid_t g = H5Gcreate2(loc.id(), prefix.c_str(), H5P_DEFAULT, gcpl.id, H5P_DEFAULT);
      if (g < 0) fail("cannot create group", join(loc, prefix));
      H5Gclose(g);
    }
    if (next == std::string::npos) break;
    pos = next + 1;
  }
  return open_group(loc, name);
}

bool exists(const Handle& loc, const std::string& name) {
  // Check each level so that a missing intermediate group is not an error.
  size_t pos = 0;
  while (true) {
    size_t next = name.find('/', pos);
    std::string prefix = name.substr(0, next);
    if (!prefix.empty() && H5Lexists(loc.id(), prefix.c_str(), H5P_DEFAULT) <= 0) return false;
    if (next == std::string::npos) return true;
    pos = next + 1;
  }
}

static H5O_type_t object_type(const Handle& loc, const std::string& name) {
  if (!exists(loc, name)) return H5O_TYPE_UNKNOWN;
  H5O_info_t info;
#if H5_VERSION_GE(1, 12, 0)
  if (H5Oget_info_by_name3(loc.id(), name.c_str(), &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0) return H5O_TYPE_UNKNOWN;
#else
  if (H5Oget_info_by_name2(loc.id(), name.c_str(), &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0) return H5O_TYPE_UNKNOWN;
#endif
  return info.type;
}

bool is_group(const Handle& loc, const std::string& name) { return object_type(loc, name) == H5O_TYPE_GROUP; }
bool is_dataset(const Handle& loc, const std::string& name) { return object_type(loc, name) == H5O_TYPE_DATASET; }

std::vector<std::string> members(const Handle& group) {
  std::vector<std::string> names;
  auto cb = [](hid_t, const char* name, const H5L_info_t*, void* op) -> herr_t {
    static_cast<std::vector<std::string>*>(op)->emplace_back(name);
    return 0;
  };
  hsize_t idx = 0;
  if (H5Literate(group.id(), H5_INDEX_NAME, H5_ITER_INC, &idx, cb, &names) < 0)
    fail("cannot list group", group.where());
  return names;
}

bool has_attr(const Handle& obj, const std::string& name) { return H5Aexists(obj.id(), name.c_str()) > 0; }

std::string read_string_attr(const Handle& obj, const std::string& name, bool allow_vlen) {
  Handle a = open_attr(obj, name);
  Tmp type{H5Aget_type(a.id()), H5Tclose};
  if (type.id < 0 || H5Tget_class(type.id) != H5T_STRING) fail("attribute '" + name + "' is not a string", obj.where());
  {
    Tmp space{H5Aget_space(a.id()), H5Sclose};
    if (space.id < 0 || H5Sget_simple_extent_npoints(space.id) != 1)
      fail("attribute '" + name + "' is not a single string", obj.where());
  }
  if (H5Tis_variable_str(type.id) > 0) {
    if (!allow_vlen)
      fail("attribute '" + name + "' is a variable-length string, which this format version never writes (damaged file?)",
           obj.where());
    Tmp mem{H5Tcopy(H5T_C_S1), H5Tclose};
    H5Tset_size(mem.id, H5T_VARIABLE);
    H5Tset_cset(mem.id, H5Tget_cset(type.id));
    char* s = nullptr;
    if (H5Aread(a.id(), mem.id, &s) < 0) fail("cannot read attribute '" + name + "'", obj.where());
    std::string out = s ? s : "";
    Tmp space{H5Aget_space(a.id()), H5Sclose};
    H5Dvlen_reclaim(mem.id, space.id, H5P_DEFAULT, &s);
    return out;
  }
  size_t n = H5Tget_size(type.id);
  if (n == 0 || n > kMaxStringBytes) fail("attribute '" + name + "' has an implausible size " + std::to_string(n), obj.where());
  std::string out(n, '\0');
  if (H5Aread(a.id(), type.id, out.data()) < 0) fail("cannot read attribute '" + name + "'", obj.where());
  while (!out.empty() && out.back() == '\0') out.pop_back();
  return out;
}

void write_string_attr(const Handle& obj, const std::string& name, const std::string& value) {
  if (H5Aexists(obj.id(), name.c_str()) > 0 && H5Adelete(obj.id(), name.c_str()) < 0)
    fail("cannot replace attribute '" + name + "'", obj.where());
  // Fixed-length (no variable-length types in our files): the value's bytes, NUL-padded.
  Tmp type{H5Tcopy(H5T_C_S1), H5Tclose};
  H5Tset_size(type.id, std::max<size_t>(value.size(), 1));
  H5Tset_strpad(type.id, H5T_STR_NULLPAD);
  H5Tset_cset(type.id, H5T_CSET_UTF8);
  Tmp space{H5Screate(H5S_SCALAR), H5Sclose};
  Handle a = check(H5Acreate2(obj.id(), name.c_str(), type.id, space.id, H5P_DEFAULT, H5P_DEFAULT),
                   "cannot create attribute '" + name + "'", obj.where());
  std::string buf = value.empty() ? std::string(1, '\0') : value;
  if (H5Awrite(a.id(), type.id, buf.data()) < 0) fail("cannot write attribute '" + name + "'", obj.where());
}

double read_double_attr(const Handle& obj, const std::string& name) {
  return read_scalar_attr<double>(obj, name, H5T_NATIVE_DOUBLE);
}
void write_double_attr(const Handle& obj, const std::string& name, double value) {
  write_scalar_attr(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, value);
}
int64_t read_int_attr(const Handle& obj, const std::string& name) {
  return read_scalar_attr<int64_t>(obj, name, H5T_NATIVE_INT64);
}
void write_int_attr(const Handle& obj, const std::string& name, int64_t value) {
  write_scalar_attr(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, value);
}

std::vector<int64_t> dataset_shape(const Handle& loc, const std::string& name) {
  Handle ds = check(H5Dopen2(loc.id(), name.c_str(), H5P_DEFAULT), "no such dataset", join(loc, name));
  Tmp space{H5Dget_space(ds.id()), H5Sclose};
  int nd = H5Sget_simple_extent_ndims(space.id);
  if (nd < 0) fail("cannot read dataspace", ds.where());
  std::vector<hsize_t> dims(static_cast<size_t>(nd));
  H5Sget_simple_extent_dims(space.id, dims.data(), nullptr);
  return std::vector<int64_t>(dims.begin(), dims.end());
}

int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::vector<float> read_f32(const Handle& loc, const std::string& name, std::vector<int64_t>* shape) {
  return read_as<float>(loc, name, H5T_NATIVE_FLOAT, shape);
}
std::vector<double> read_f64(const Handle& loc, const std::string& name, std::vector<int64_t>* shape) {
  return read_as<double>(loc, name, H5T_NATIVE_DOUBLE, shape);
}
std::vector<int64_t> read_i64(const Handle& loc, const std::string& name, std::vector<int64_t>* shape) {
  return read_as<int64_t>(loc, name, H5T_NATIVE_INT64, shape);
}
std::vector<uint8_t> read_u8(const Handle& loc, const std::string& name, std::vector<int64_t>* shape) {
  return read_as<uint8_t>(loc, name, H5T_NATIVE_UINT8, shape);
}

void write_f32(const Handle& loc, const std::string& name, const float* data, const std::vector<int64_t>& shape) {
  write_as(loc, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, data, shape);
}
void write_f64(const Handle& loc, const std::string& name, const double* data, const std::vector<int64_t>& shape) {
  write_as(loc, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, data, shape);
}
void write_i64(const Handle& loc, const std::string& name, const int64_t* data, const std::vector<int64_t>& shape) {
  write_as(loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, data, shape);
}
void write_u8(const Handle& loc, const std::string& name, const uint8_t* data, const std::vector<int64_t>& shape) {
  write_as(loc, name, H5T_STD_U8LE, H5T_NATIVE_UINT8, data, shape);
}

void flush(const Handle& obj) {
  if (H5Fflush(obj.id(), H5F_SCOPE_GLOBAL) < 0) fail("cannot flush", obj.where());
}

}  // namespace sf::h5

namespace sf::h5 {

Handle open_dataset(const Handle& loc, const std::string& name) {
  return check(H5Dopen2(loc.id(), name.c_str(), H5P_DEFAULT), "no such dataset", join(loc, name));
}

Handle create_rows(const Handle& loc, const std::string& name, hid_t file_type, const std::vector<int64_t>& item_shape,
                   int gzip_level) {
  std::string where = join(loc, name);
  if (exists(loc, name)) fail("already exists", where);
  make_parents(loc, name);
  std::vector<hsize_t> dims{0}, maxdims{H5S_UNLIMITED}, chunk{1};
  for (int64_t d : item_shape) {
    dims.push_back(static_cast<hsize_t>(d));
    maxdims.push_back(static_cast<hsize_t>(d));
    chunk.push_back(static_cast<hsize_t>(std::max<int64_t>(d, 1)));
  }
  Tmp space{H5Screate_simple(static_cast<int>(dims.size()), dims.data(), maxdims.data()), H5Sclose};
  Tmp dcpl{H5Pcreate(H5P_DATASET_CREATE), H5Pclose};
  set_compact_storage(dcpl.id, false);
  H5Pset_chunk(dcpl.id, static_cast<int>(chunk.size()), chunk.data());
  if (gzip_level > 0) H5Pset_deflate(dcpl.id, static_cast<unsigned>(gzip_level));
  H5Pset_fletcher32(dcpl.id);  // after deflate: the checksum covers the stored bytes
  H5Pset_fill_time(dcpl.id, H5D_FILL_TIME_NEVER);
  Tmp lcpl{H5Pcreate(H5P_LINK_CREATE), H5Pclose};
  H5Pset_create_intermediate_group(lcpl.id, 1);
  return check(H5Dcreate2(loc.id(), name.c_str(), file_type, space.id, lcpl.id, dcpl.id, H5P_DEFAULT),
               "cannot create chunked dataset", where);
}

namespace {
std::vector<hsize_t> extent(const Handle& ds) {
  Tmp space{H5Dget_space(ds.id()), H5Sclose};
  int nd = H5Sget_simple_extent_ndims(space.id);
  if (nd < 1) fail("not an array dataset", ds.where());
  std::vector<hsize_t> dims(static_cast<size_t>(nd));
  H5Sget_simple_extent_dims(space.id, dims.data(), nullptr);
  return dims;
}
}  // namespace

void append_rows(const Handle& ds, hid_t mem_type, const void* data, int64_t rows) {
  if (rows <= 0) return;
  std::vector<hsize_t> dims = extent(ds);
  hsize_t first = dims[0];
  dims[0] += static_cast<hsize_t>(rows);
  if (H5Dset_extent(ds.id(), dims.data()) < 0) fail("cannot extend dataset", ds.where());
  Tmp fspace{H5Dget_space(ds.id()), H5Sclose};
  std::vector<hsize_t> start(dims.size(), 0), count = dims;
  start[0] = first;
  count[0] = static_cast<hsize_t>(rows);
  H5Sselect_hyperslab(fspace.id, H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr);
  Tmp mspace{H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr), H5Sclose};
  if (H5Dwrite(ds.id(), mem_type, mspace.id, fspace.id, H5P_DEFAULT, data) < 0) fail("cannot write rows", ds.where());
}

void read_rows(const Handle& ds, hid_t mem_type, int64_t first, int64_t count_rows, void* out) {
  std::vector<hsize_t> dims = extent(ds);
  if (first < 0 || count_rows < 0 || static_cast<hsize_t>(first + count_rows) > dims[0])
    fail("rows [" + std::to_string(first) + ", " + std::to_string(first + count_rows) + ") out of range (" +
             std::to_string(dims[0]) + " rows)",
         ds.where());
  if (count_rows == 0) return;
  Tmp fspace{H5Dget_space(ds.id()), H5Sclose};
  std::vector<hsize_t> start(dims.size(), 0), count = dims;
  start[0] = static_cast<hsize_t>(first);
  count[0] = static_cast<hsize_t>(count_rows);
  H5Sselect_hyperslab(fspace.id, H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr);
  Tmp mspace{H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr), H5Sclose};
  if (H5Dread(ds.id(), mem_type, mspace.id, fspace.id, H5P_DEFAULT, out) < 0)
    fail("cannot read rows (corrupt file?)", ds.where());
}

void read_raw_chunk(const Handle& ds, int64_t row, void* out, size_t bytes) {
  std::vector<hsize_t> dims = extent(ds);
  if (row < 0 || static_cast<hsize_t>(row) >= dims[0])
    fail("row " + std::to_string(row) + " out of range (" + std::to_string(dims[0]) + " rows)", ds.where());
  std::vector<hsize_t> offset(dims.size(), 0);
  offset[0] = static_cast<hsize_t>(row);
  hsize_t stored = 0;
  const bool sum = has_filter(ds, H5Z_FILTER_FLETCHER32);
  const size_t want = bytes + (sum ? 4 : 0);
  if (H5Dget_chunk_storage_size(ds.id(), offset.data(), &stored) < 0 || stored != want)
    fail("chunk " + std::to_string(row) + " has " + std::to_string(stored) + " bytes, expected " +
             std::to_string(want) + " (corrupt file?)",
         ds.where());
  uint32_t filters = 0;
  std::vector<uint8_t> buf(sum ? want : 0);
  if (H5Dread_chunk(ds.id(), H5P_DEFAULT, offset.data(), &filters, sum ? buf.data() : out) < 0)
    fail("cannot read chunk " + std::to_string(row) + " (corrupt file?)", ds.where());
  if (sum) {
    uint32_t stored_sum = uint32_t(buf[bytes]) | uint32_t(buf[bytes + 1]) << 8 | uint32_t(buf[bytes + 2]) << 16 |
                          uint32_t(buf[bytes + 3]) << 24;
    if (stored_sum != fletcher32(buf.data(), bytes))
      fail("chunk " + std::to_string(row) + ": Fletcher32 checksum mismatch (damaged file)", ds.where());
    std::memcpy(out, buf.data(), bytes);
  }
}

bool chunk_location(const Handle& ds, int64_t row, uint64_t* offset, uint64_t* size) {
#if H5_VERSION_GE(1, 10, 5)
  Tmp space{H5Dget_space(ds.id()), H5Sclose};
  int nd = H5Sget_simple_extent_ndims(space.id);
  if (nd < 1) return false;
  std::vector<hsize_t> coord(static_cast<size_t>(nd), 0);
  coord[0] = static_cast<hsize_t>(row);
  unsigned mask = 0;
  haddr_t addr = HADDR_UNDEF;
  hsize_t stored = 0;
  if (H5Dget_chunk_info_by_coord(ds.id(), coord.data(), &mask, &addr, &stored) < 0 || addr == HADDR_UNDEF) return false;
  hid_t file = H5Iget_file_id(ds.id());
  hsize_t userblock = 0;
  if (file >= 0) {
    Tmp fcpl{H5Fget_create_plist(file), H5Pclose};
    H5Pget_userblock(fcpl.id, &userblock);
    H5Fclose(file);
  }
  *offset = static_cast<uint64_t>(addr) + userblock;
  *size = stored;
  return true;
#else
  (void)ds; (void)row; (void)offset; (void)size;
  return false;
#endif
}

int filter_count(const Handle& ds) {
  Tmp dcpl{H5Dget_create_plist(ds.id()), H5Pclose};
  return H5Pget_nfilters(dcpl.id);
}

bool has_filter(const Handle& ds, H5Z_filter_t filter) {
  Tmp dcpl{H5Dget_create_plist(ds.id()), H5Pclose};
  int n = H5Pget_nfilters(dcpl.id);
  for (int i = 0; i < n; ++i) {
    unsigned flags = 0, cd[8];
    size_t ncd = 8;
    char name[64];
    if (H5Pget_filter2(dcpl.id, static_cast<unsigned>(i), &flags, &ncd, cd, sizeof name, name, nullptr) == filter)
      return true;
  }
  return false;
}

uint32_t fletcher32(const uint8_t* data, size_t n) {
  // As H5_checksum_fletcher32 (H5checksum.c): big-endian 16-bit words, sums folded every 360.
  size_t len = n / 2;
  uint32_t sum1 = 0, sum2 = 0;
  while (len) {
    size_t tlen = len > 360 ? 360 : len;
    len -= tlen;
    do {
      sum1 += (uint32_t(data[0]) << 8) | uint32_t(data[1]);
      data += 2;
      sum2 += sum1;
    } while (--tlen);
    sum1 = (sum1 & 0xffff) + (sum1 >> 16);
    sum2 = (sum2 & 0xffff) + (sum2 >> 16);
  }
  if (n % 2) {
    sum1 += uint32_t(*data) << 8;
    sum2 += sum1;
    sum1 = (sum1 & 0xffff) + (sum1 >> 16);
    sum2 = (sum2 & 0xffff) + (sum2 >> 16);
  }
  sum1 = (sum1 & 0xffff) + (sum1 >> 16);
  sum2 = (sum2 & 0xffff) + (sum2 >> 16);
  return (sum2 << 16) | sum1;
}

void check_storage(const Handle& ds, uint64_t bytes) {
  if (bytes == 0) return;
  const uint64_t stored = H5Dget_storage_size(ds.id());
  // Compression can shrink data by at most ~1032x (deflate); without it, every byte is stored.
  const bool compressed = has_filter(ds, H5Z_FILTER_DEFLATE) || has_filter(ds, H5Z_FILTER_SZIP) ||
                          has_filter(ds, H5Z_FILTER_NBIT) || has_filter(ds, H5Z_FILTER_SCALEOFFSET);
  const uint64_t limit = compressed ? stored * 1100 + 4096 : stored;
  if (bytes > limit)
    fail("shape needs " + std::to_string(bytes) + " bytes but the file stores " + std::to_string(stored) +
             " (damaged or truncated file)",
         ds.where());
}

void write_strings(const Handle& loc, const std::string& name, const std::vector<std::string>& values) {
  std::string where = join(loc, name);
  if (exists(loc, name)) fail("already exists", where);
  make_parents(loc, name);
  // Fixed-length, NUL-padded UTF-8 of the longest value's size, chunked with Fletcher32.
  size_t width = 1;
  for (const auto& v : values) width = std::max(width, v.size());
  Tmp type{H5Tcopy(H5T_C_S1), H5Tclose};
  H5Tset_size(type.id, width);
  H5Tset_strpad(type.id, H5T_STR_NULLPAD);
  H5Tset_cset(type.id, H5T_CSET_UTF8);
  hsize_t n = values.size();
  Tmp space{H5Screate_simple(1, &n, nullptr), H5Sclose};
  Tmp dcpl{dataset_layout({static_cast<int64_t>(n)}, width), H5Pclose};
  Handle ds = check(H5Dcreate2(loc.id(), name.c_str(), type.id, space.id, H5P_DEFAULT, dcpl.id, H5P_DEFAULT),
                    "cannot create dataset", where);
  std::vector<char> buf(width * values.size(), '\0');
  for (size_t i = 0; i < values.size(); ++i) std::memcpy(buf.data() + i * width, values[i].data(), values[i].size());
  if (n > 0 && H5Dwrite(ds.id(), type.id, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()) < 0)
    fail("cannot write strings", where);
  if (H5Dclose(ds.release()) < 0) fail("cannot write strings (close failed)", where);
}

std::vector<std::string> read_strings(const Handle& loc, const std::string& name, bool allow_vlen) {
  Handle ds = open_dataset(loc, name);
  Tmp type{H5Dget_type(ds.id()), H5Tclose};
  if (type.id < 0 || H5Tget_class(type.id) != H5T_STRING) fail("not a string dataset", ds.where());
  Tmp space{H5Dget_space(ds.id()), H5Sclose};
  hssize_t n = H5Sget_simple_extent_npoints(space.id);
  std::vector<std::string> out;
  if (n <= 0) return out;
  if (H5Tis_variable_str(type.id) > 0) {
    if (!allow_vlen)
      fail("variable-length strings, which this format version never writes (damaged file?)", ds.where());
    Tmp mem{H5Tcopy(H5T_C_S1), H5Tclose};
    H5Tset_size(mem.id, H5T_VARIABLE);
    H5Tset_cset(mem.id, H5Tget_cset(type.id));
    std::vector<char*> ptrs(static_cast<size_t>(n), nullptr);
    if (H5Dread(ds.id(), mem.id, H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()) < 0) fail("cannot read strings", ds.where());
    for (char* p : ptrs) out.emplace_back(p ? p : "");
    H5Dvlen_reclaim(mem.id, space.id, H5P_DEFAULT, ptrs.data());
  } else {
    size_t sz = H5Tget_size(type.id);
    if (sz == 0 || sz > kMaxStringBytes) fail("implausible string size " + std::to_string(sz), ds.where());
    check_storage(ds, static_cast<uint64_t>(sz) * static_cast<uint64_t>(n));
    std::vector<char> buf(sz * static_cast<size_t>(n));
    if (H5Dread(ds.id(), type.id, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()) < 0) fail("cannot read strings", ds.where());
    for (hssize_t i = 0; i < n; ++i) {
      std::string s(buf.data() + static_cast<size_t>(i) * sz, sz);
      while (!s.empty() && s.back() == '\0') s.pop_back();
      out.push_back(std::move(s));
    }
  }
  return out;
}

Handle open_file_shared(const std::string& path, size_t chunk_cache_bytes) {
  // HDF5 reads HDF5_USE_FILE_LOCKING when the library initialises; set it before the first call
  // unless the user chose a value.
  static std::once_flag once;
  std::call_once(once, [] { setenv("HDF5_USE_FILE_LOCKING", "FALSE", 0); });
  quiet_hdf5();
  if (!is_hdf5(path)) fail("not a readable HDF5 file (missing, truncated or corrupt)", path);
  Tmp fapl{H5Pcreate(H5P_FILE_ACCESS), H5Pclose};
  H5Pset_cache(fapl.id, 0, 521, chunk_cache_bytes, 1.0);
#if H5_VERSION_GE(1, 10, 7)
  const char* env = std::getenv("HDF5_USE_FILE_LOCKING");
  bool lock = env && (std::string(env) == "TRUE" || std::string(env) == "1");
  H5Pset_file_locking(fapl.id, lock, true);
#endif
  hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.id);
  return check(id, "cannot open HDF5 file (corrupt?)", path + ":/");
}

}  // namespace sf::h5
