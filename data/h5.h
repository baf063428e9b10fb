// HDF5 access for styleforge: RAII handles and typed helpers over the HDF5 C API.
//
// Every styleforge file format (dataset packs, checkpoints, reference fixtures) is HDF5. This
// header wraps the C handles (hid_t) so that they close themselves, and offers the few typed
// reads and writes the project needs. Failures throw sf::h5::Error whose message names the file
// and the object. The HDF5 library's own error printing is switched off once per process.
//
// Files are created in the newest HDF5 file format (superblock v3, object headers v2, extensible
// array chunk indices): every metadata block carries a checksum, so a damaged byte in the
// file's structure is an error instead of garbage. Every dataset written here is checksummed too:
// small ones (<= 16 KiB) are stored compact, inside their checksummed object header; larger ones
// are chunked with HDF5's Fletcher32 filter, verified by HDF5 on every read (h5py and h5dump
// verify it as well). Strings are written fixed-length (no variable-length types, whose global
// heap libhdf5 reads unchecked); variable-length strings of older files are still read where the
// caller allows it. Reads allocate only what the dataset really stores (checked against its
// storage size), and the library is kept from running its at-exit cleanup (H5dont_atexit), which
// crashes on files whose writing failed (disk full).
//
// Thread-safety: Debian's serial HDF5 is not thread-safe; callers serialise access to a file.
// Ownership: Handle owns its hid_t; File, Group and Dataset are Handles.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace sf::h5 {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Debian's HDF5 is built without thread-safety: code that may call HDF5 while another thread does
// (the pack reader's prefetch thread next to checkpoint writing) holds this process-wide lock.
std::recursive_mutex& global_mutex();

// Owns one hid_t and closes it with the right H5*close for its type.
class Handle {
 public:
  Handle() = default;
  explicit Handle(hid_t id, std::string where) : id_(id), where_(std::move(where)) {}
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  Handle(Handle&& o) noexcept : id_(o.id_), where_(std::move(o.where_)) { o.id_ = -1; }
  Handle& operator=(Handle&& o) noexcept;
  ~Handle();
  hid_t id() const { return id_; }
  bool valid() const { return id_ >= 0; }
  // Gives up ownership (the caller closes the id) and returns it.
  hid_t release();
  // "file.h5:/group/name": used in error messages.
  const std::string& where() const { return where_; }

 private:
  hid_t id_ = -1;
  std::string where_;
};

enum class Mode { ReadOnly, ReadWrite };

// Opens an existing file. Error names the path when it is missing or not HDF5.
Handle open_file(const std::string& path, Mode mode = Mode::ReadOnly);
// Creates a file (newest format, see above), replacing an existing one only when `overwrite` is set.
Handle create_file(const std::string& path, bool overwrite);
// Closes a file handle and checks that everything was written (a failed flush, e.g. a full disk,
// throws naming the file). The handle is invalid afterwards, whatever happens.
void close_file(Handle& file);
// Superblock version of an HDF5 file (0..3) read from its first bytes, -1 when not HDF5. Version
// 2 and 3 superblocks (and what hangs below them) are checksummed.
int superblock_version(const std::string& path);

Handle open_group(const Handle& loc, const std::string& name);
// Opens `name` (may contain '/'), creating every missing level.
Handle require_group(const Handle& loc, const std::string& name);
bool exists(const Handle& loc, const std::string& name);
bool is_group(const Handle& loc, const std::string& name);
bool is_dataset(const Handle& loc, const std::string& name);
// Names of the direct members of a group, in HDF5's name order.
std::vector<std::string> members(const Handle& group);

bool has_attr(const Handle& obj, const std::string& name);
// Reads a string attribute (fixed-length; variable-length only when `allow_vlen`, for files of
// older format versions).
std::string read_string_attr(const Handle& obj, const std::string& name, bool allow_vlen = true);
void write_string_attr(const Handle& obj, const std::string& name, const std::string& value);
double read_double_attr(const Handle& obj, const std::string& name);
void write_double_attr(const Handle& obj, const std::string& name, double value);
int64_t read_int_attr(const Handle& obj, const std::string& name);
void write_int_attr(const Handle& obj, const std::string& name, int64_t value);

// Shape of a dataset; a scalar dataset has an empty shape.
std::vector<int64_t> dataset_shape(const Handle& loc, const std::string& name);
int64_t numel(const std::vector<int64_t>& shape);
std::string shape_str(const std::vector<int64_t>& shape);

// Reads a whole numeric dataset, converting from its stored type.
std::vector<float> read_f32(const Handle& loc, const std::string& name, std::vector<int64_t>* shape = nullptr);
std::vector<double> read_f64(const Handle& loc, const std::string& name, std::vector<int64_t>* shape = nullptr);
std::vector<int64_t> read_i64(const Handle& loc, const std::string& name, std::vector<int64_t>* shape = nullptr);
std::vector<uint8_t> read_u8(const Handle& loc, const std::string& name, std::vector<int64_t>* shape = nullptr);

// Writes a dataset (an empty shape writes a scalar): compact when small, else chunked with
// Fletcher32. Fails if `name` exists or anything cannot be written.
void write_f32(const Handle& loc, const std::string& name, const float* data, const std::vector<int64_t>& shape);
void write_f64(const Handle& loc, const std::string& name, const double* data, const std::vector<int64_t>& shape);
void write_i64(const Handle& loc, const std::string& name, const int64_t* data, const std::vector<int64_t>& shape);
void write_u8(const Handle& loc, const std::string& name, const uint8_t* data, const std::vector<int64_t>& shape);

// Flushes all buffers of the file that `obj` belongs to.
void flush(const Handle& obj);

// ---- Chunked datasets that grow along their first dimension (dataset packs) ----

Handle open_dataset(const Handle& loc, const std::string& name);
// Creates a dataset of `file_type` with shape [0, item_shape...], unlimited along the first
// dimension, chunked one item per chunk; gzip_level 1..9 adds deflate, 0 stores raw chunks.
Handle create_rows(const Handle& loc, const std::string& name, hid_t file_type, const std::vector<int64_t>& item_shape,
                   int gzip_level);
// Extends `ds` by `rows` items and writes them from `data` (memory type `mem_type`, C order).
void append_rows(const Handle& ds, hid_t mem_type, const void* data, int64_t rows);
// Reads items [first, first + count) into `out` (memory type `mem_type`, C order).
void read_rows(const Handle& ds, hid_t mem_type, int64_t first, int64_t count, void* out);
// Reads the raw bytes of chunk `row` of a dataset chunked one item per chunk and stored without
// filters (the fast path of the pack reader). `out` must hold one item.
void read_raw_chunk(const Handle& ds, int64_t row, void* out, size_t bytes);
// File offset and stored size of chunk `row` (one item per chunk), for direct positioned reads
// of unfiltered chunks; offsets include the user block. False when HDF5 cannot tell (< 1.10.5)
// or the chunk is not allocated.
bool chunk_location(const Handle& ds, int64_t row, uint64_t* offset, uint64_t* size);
// Number of filters (compression, checksum) on a dataset; 0 for raw chunks.
int filter_count(const Handle& ds);
// True when the dataset has the filter (H5Z_FILTER_DEFLATE, H5Z_FILTER_FLETCHER32, ...).
bool has_filter(const Handle& ds, H5Z_filter_t filter);
// HDF5's Fletcher32 checksum of a chunk (the value its filter appends, little-endian, to each
// chunk): lets a reader that fetches raw chunks itself verify them.
uint32_t fletcher32(const uint8_t* data, size_t n);
// Throws naming the dataset unless it stores at least what `bytes` of values need (so that a
// damaged shape cannot make a reader allocate more than the file holds).
void check_storage(const Handle& ds, uint64_t bytes);

// String arrays: written as fixed-length UTF-8 (chunked, Fletcher32); read from fixed-length
// strings, and from variable-length ones only when `allow_vlen` (older files).
void write_strings(const Handle& loc, const std::string& name, const std::vector<std::string>& values);
std::vector<std::string> read_strings(const Handle& loc, const std::string& name, bool allow_vlen = true);

// Opens a file read-only for many independent readers: HDF5 file locking is off unless the
// environment sets HDF5_USE_FILE_LOCKING (see data/README.md), and the raw chunk cache is sized
// to `chunk_cache_bytes` (0 disables it).
Handle open_file_shared(const std::string& path, size_t chunk_cache_bytes = 0);

}  // namespace sf::h5
