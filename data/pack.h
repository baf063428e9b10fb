// The styleforge dataset pack: one HDF5 file holding a whole training set (see data/README.md).
//
//   /images  uint8 [N, C, R, R]   C = 1 (gray), 3 (RGB) or any 1..16 (modalities stacked as
//                                 channels), R a power of two; one image per chunk
//   /labels  int64 [N] (class indices) or float32 [N, D] (vectors); absent without labels
//   /names   UTF-8 strings [N]    source file of each image (and slice/record where it applies)
//   root attributes: format, format_version, styleforge_version, num_images, resolution, channels,
//   label_kind, label_dim, class_names (JSON), importer (JSON), compression, content_hash;
//   channel_names (JSON list, one name per channel, e.g. ["t1", "t1ce", "t2", "flair"]; [] when
//   the channels are plain gray/RGB) and class_counts (JSON list, images per class) when present
//
// PackWriter builds a pack in a temporary file next to the destination (`DEST.tmp-PID@HOST`),
// checks every HDF5 write and the close, fsyncs it and renames it over the destination on
// commit(); destroyed without commit() it removes the temporary, so an error (a full disk
// included) never leaves a partial pack and never replaces an existing one. Temporaries of killed
// processes in the destination folder are removed when a writer starts there.
//
// Format version 2 (written now): newest HDF5 file format (checksummed metadata), Fletcher32 on
// every chunk of /images, /labels and /names (HDF5, h5py and h5dump verify it), a CRC-32 of each
// image in /image_crc32 (verified by PackReader on every read: Fletcher32 cannot tell 0x00 from
// 0xFF byte pairs), names and JSON as fixed-length strings (no variable-length types).
// Version 1 packs (variable-length strings, no checksums) stay readable.
//
// PackReader opens a pack read-only (HDF5 file locking off, so that every rank can open the same
// file independently), validates its structure before reading data and gives random access to
// images and labels; every error is a one-line PackError naming the file.
//
// Thread-safety: neither class is thread-safe (serial HDF5); use one reader per thread or
// process. Both own their HDF5 handles. Errors throw PackError naming the file.
#pragma once

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "data/h5.h"
#include "data/hash.h"

namespace sf::data {

class PackError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline constexpr const char* kPackFormatName = "styleforge-pack";
inline constexpr int64_t kPackFormatVersion = 2;
// Smallest side a pack image may have (train's smallest network resolution).
inline constexpr int kMinPackResolution = 4;
// Largest side (bounds what a damaged header can make a reader allocate).
inline constexpr int kMaxPackResolution = 1 << 15;
// Most channels an image may have (modalities stacked as channels).
inline constexpr int kMaxPackChannels = 16;

enum class LabelKind { None, Class, Vector };
const char* label_kind_name(LabelKind k);

// The label of one image while importing.
struct Label {
  LabelKind kind = LabelKind::None;
  int64_t cls = 0;          // Class
  std::vector<float> vec;   // Vector
};

struct PackInfo {
  std::string path;
  int64_t format_version = 0;
  std::string styleforge_version;
  int64_t num_images = 0;
  int resolution = 0;
  int channels = 0;
  LabelKind label_kind = LabelKind::None;
  int label_dim = 0;  // number of classes (Class) or vector length (Vector); 0 without labels
  std::vector<std::string> class_names;
  std::vector<std::string> channel_names;  // empty: plain gray (1) or RGB (3) channels
  std::vector<int64_t> class_counts;       // Class packs: images per class index (label_dim entries)
  std::string importer_json;
  std::string compression;  // "none" or "gzip-N"
  std::string content_hash; // "sha256:<hex>"
  size_t image_bytes() const { return static_cast<size_t>(channels) * resolution * resolution; }
};

class PackWriter {
 public:
  struct Options {
    bool force = false;        // replace an existing destination
    int gzip_level = 0;        // 0: raw chunks (default); 1..9: deflate
    std::string importer_json = "{}";
    std::vector<std::string> class_names;  // written for Class labels when given
    std::vector<std::string> channel_names;  // one per channel when given (checked at the first image)
  };
  PackWriter(const std::string& dest, Options opts);
  ~PackWriter();
  PackWriter(const PackWriter&) = delete;
  PackWriter& operator=(const PackWriter&) = delete;

  // Appends one image [C, R, R]; the first image fixes C and R, later ones must match.
  void add(const uint8_t* chw, int channels, int resolution, const std::string& name, const Label& label);
  int64_t size() const { return n_; }
  // Writes labels, names and attributes, closes the file and renames it to the destination.
  PackInfo commit();

 private:
  void flush_images();
  std::string dest_, tmp_;
  Options opts_;
  h5::Handle file_, images_;
  int channels_ = 0, resolution_ = 0;
  int64_t n_ = 0;
  std::vector<uint8_t> pending_;
  int64_t pending_n_ = 0;
  LabelKind label_kind_ = LabelKind::None;
  size_t label_dim_ = 0;
  std::vector<int64_t> classes_;
  std::vector<float> vectors_;
  std::vector<std::string> names_;
  Sha256 image_hash_;
  std::vector<int64_t> crcs_;  // CRC-32 (zlib) of each image
  bool committed_ = false;
};

class PackReader {
 public:
  explicit PackReader(const std::string& path);
  ~PackReader();
  PackReader(const PackReader&) = delete;
  PackReader& operator=(const PackReader&) = delete;
  const PackInfo& info() const { return info_; }
  int64_t size() const { return info_.num_images; }
  // Verify each image's CRC-32 the first time this reader returns it (default; later reads of
  // the same image are not verified again, so an epoch after the first costs nothing extra).
  // Off only to measure the cost; `every_read` verifies every read.
  void set_verify_checksums(bool on, bool every_read = false) { verify_ = on, verify_every_ = every_read; }
  bool checksummed() const { return checksummed_; }
  // Copies image i ([C, R, R], info().image_bytes() bytes) into `out`.
  void read_image(int64_t i, uint8_t* out) const;
  // Copies images idx[0..n) into `out` back to back.
  void read_images(const int64_t* idx, size_t n, uint8_t* out) const;
  // Labels (loaded at open): class index for Class packs; vector of label_dim floats for Vector.
  int64_t class_label(int64_t i) const { return classes_.at(static_cast<size_t>(i)); }
  const float* vector_label(int64_t i) const { return vectors_.data() + static_cast<size_t>(i) * info_.label_dim; }
  // The label as the reference's Dataset.get_label gives it: one-hot for classes, the vector as
  // stored, nothing without labels. Writes info().label_dim floats.
  void label_as_float(int64_t i, float* out) const;
  std::vector<std::string> names() const;

 private:
  void open(const std::string& path);
  void verify_image(int64_t i, const uint8_t* img) const;
  PackInfo info_;
  h5::Handle file_, images_;
  bool raw_chunks_ = true;    // no compression: chunks read raw (pread or H5Dread_chunk)
  bool checksummed_ = false;  // chunks carry a Fletcher32 checksum (format 2)
  bool verify_ = true, verify_every_ = false;
  mutable std::vector<uint8_t> verified_;  // per image: CRC checked once already
  // Fast path for unfiltered packs: each image is one contiguous chunk, read with one pread()
  // at its file offset (looked up once per image through HDF5's chunk index).
  int fd_ = -1;
  mutable std::vector<uint64_t> chunk_offset_;  // 0: not looked up yet
  std::vector<int64_t> classes_;
  std::vector<float> vectors_;
  std::vector<int64_t> crcs_;  // format 2: CRC-32 of each image
};

// Recomputes the content hash of a pack from its datasets (for verification).
std::string compute_content_hash(const PackReader& pack);

}  // namespace sf::data
