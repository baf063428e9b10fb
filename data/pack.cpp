#include "data/pack.h"

#include "data/hash.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <zlib.h>

#include "data/atomic_file.h"

namespace fs = std::filesystem;

namespace sf::data {

const char* label_kind_name(LabelKind k) {
  switch (k) {
    case LabelKind::None: return "none";
    case LabelKind::Class: return "class";
    case LabelKind::Vector: return "vector";
  }
  return "none";
}

namespace {

constexpr int64_t kImagesPerWrite = 64;

bool is_pow2(int v) { return v > 0 && (v & (v - 1)) == 0; }

// Content hash: SHA-256 over a tag, the image bytes in pack order, the label kind and the label
// values as little-endian bytes (x86 and ARM hosts are little-endian).
std::string finish_hash(Sha256& images_part_done, LabelKind kind, const std::vector<int64_t>& classes,
                        const std::vector<float>& vectors) {
  Sha256& h = images_part_done;
  std::string k = label_kind_name(kind);
  h.update(k.data(), k.size());
  if (kind == LabelKind::Class) h.update(classes.data(), classes.size() * sizeof(int64_t));
  if (kind == LabelKind::Vector) h.update(vectors.data(), vectors.size() * sizeof(float));
  return "sha256:" + h.hex_digest();
}

void start_hash(Sha256& h) {
  const char tag[] = "styleforge-pack-v1";
  h.update(tag, sizeof tag - 1);
}

}  // namespace

PackWriter::PackWriter(const std::string& dest, Options opts) : dest_(dest), opts_(std::move(opts)) {
  if (fs::exists(dest_) && !opts_.force)
    throw PackError(dest_ + ": exists already (use --force to replace it)");
  fs::path d(dest_);
  if (d.has_parent_path() && !fs::exists(d.parent_path())) fs::create_directories(d.parent_path());
  remove_stale_temporaries(d.has_parent_path() ? d.parent_path().string() : ".");
  tmp_ = temp_name_for(dest_);
  file_ = h5::create_file(tmp_, true);
  start_hash(image_hash_);
}

PackWriter::~PackWriter() {
  if (!committed_) {
    images_ = h5::Handle();
    file_ = h5::Handle();
    std::error_code ec;
    fs::remove(tmp_, ec);
  }
}

void PackWriter::add(const uint8_t* chw, int channels, int resolution, const std::string& name, const Label& label) {
  if (n_ == 0) {
    if (channels < 1 || channels > kMaxPackChannels)
      throw PackError(name + ": has " + std::to_string(channels) + " channels; a pack holds 1.." +
                      std::to_string(kMaxPackChannels));
    if (!opts_.channel_names.empty() && static_cast<int>(opts_.channel_names.size()) != channels)
      throw PackError(name + ": has " + std::to_string(channels) + " channels but " +
                      std::to_string(opts_.channel_names.size()) + " channel names were given");
    if (!is_pow2(resolution))
      throw PackError(name + ": resolution " + std::to_string(resolution) + " is not a power of two");
    if (resolution < kMinPackResolution || resolution > kMaxPackResolution)
      throw PackError(name + ": resolution " + std::to_string(resolution) + "x" + std::to_string(resolution) +
                      " is outside " + std::to_string(kMinPackResolution) + ".." + std::to_string(kMaxPackResolution) +
                      " (train needs at least " + std::to_string(kMinPackResolution) + "x" +
                      std::to_string(kMinPackResolution) + "; use --resolution)");
    channels_ = channels;
    resolution_ = resolution;
    images_ = h5::create_rows(file_, "images", H5T_STD_U8LE, {channels, resolution, resolution}, opts_.gzip_level);
    label_kind_ = label.kind;
    label_dim_ = label.vec.size();
  } else {
    if (channels != channels_)
      throw PackError(name + ": has " + std::to_string(channels) + " channels, earlier images have " +
                      std::to_string(channels_) + " (mixed channel counts; use --channels)");
    if (resolution != resolution_)
      throw PackError(name + ": is " + std::to_string(resolution) + "x" + std::to_string(resolution) +
                      ", earlier images are " + std::to_string(resolution_) + "x" + std::to_string(resolution_));
    if (label.kind != label_kind_)
      throw PackError(name + ": label mismatch: this image has label kind '" + label_kind_name(label.kind) +
                      "', earlier images have '" + label_kind_name(label_kind_) + "' (every image needs a label, or none)");
    if (label.kind == LabelKind::Vector && label.vec.size() != label_dim_)
      throw PackError(name + ": label has " + std::to_string(label.vec.size()) + " values, earlier labels have " +
                      std::to_string(label_dim_));
  }
  if (label.kind == LabelKind::Class) {
    if (label.cls < 0) throw PackError(name + ": negative class label " + std::to_string(label.cls));
    classes_.push_back(label.cls);
  }
  if (label.kind == LabelKind::Vector) vectors_.insert(vectors_.end(), label.vec.begin(), label.vec.end());
  size_t bytes = static_cast<size_t>(channels) * resolution * resolution;
  image_hash_.update(chw, bytes);
  crcs_.push_back(static_cast<int64_t>(crc32_zlib(chw, bytes)));
  pending_.insert(pending_.end(), chw, chw + bytes);
  ++pending_n_;
  names_.push_back(name);
  ++n_;
  if (pending_n_ >= kImagesPerWrite) flush_images();
}

void PackWriter::flush_images() {
  if (pending_n_ == 0) return;
  h5::append_rows(images_, H5T_NATIVE_UINT8, pending_.data(), pending_n_);
  pending_.clear();
  pending_n_ = 0;
}

PackInfo PackWriter::commit() {
  if (n_ == 0) throw PackError(dest_ + ": no images to pack");
  flush_images();
  PackInfo info;
  info.path = dest_;
  info.format_version = kPackFormatVersion;
  info.styleforge_version = STYLEFORGE_VERSION;
  info.num_images = n_;
  info.resolution = resolution_;
  info.channels = channels_;
  info.label_kind = label_kind_;
  info.channel_names = opts_.channel_names;
  info.importer_json = opts_.importer_json;
  info.compression = opts_.gzip_level > 0 ? "gzip-" + std::to_string(opts_.gzip_level) : "none";
  if (label_kind_ == LabelKind::Class) {
    int64_t max_cls = 0;
    for (int64_t c : classes_) max_cls = std::max(max_cls, c);
    info.label_dim = static_cast<int>(max_cls + 1);
    info.class_names = opts_.class_names;
    if (!info.class_names.empty() && static_cast<int64_t>(info.class_names.size()) < max_cls + 1)
      throw PackError(dest_ + ": " + std::to_string(info.class_names.size()) + " class names for class indices up to " +
                      std::to_string(max_cls));
    if (!info.class_names.empty()) info.label_dim = static_cast<int>(info.class_names.size());
    info.class_counts.assign(static_cast<size_t>(info.label_dim), 0);
    for (int64_t c : classes_) ++info.class_counts[static_cast<size_t>(c)];
    h5::write_i64(file_, "labels", classes_.data(), {n_});
  } else if (label_kind_ == LabelKind::Vector) {
    info.label_dim = static_cast<int>(label_dim_);
    h5::write_f32(file_, "labels", vectors_.data(), {n_, static_cast<int64_t>(label_dim_)});
  }
  h5::write_strings(file_, "names", names_);
  h5::write_i64(file_, "image_crc32", crcs_.data(), {n_});
  info.content_hash = finish_hash(image_hash_, label_kind_, classes_, vectors_);

  h5::write_string_attr(file_, "format", kPackFormatName);
  h5::write_int_attr(file_, "format_version", info.format_version);
  h5::write_string_attr(file_, "styleforge_version", info.styleforge_version);
  h5::write_int_attr(file_, "num_images", info.num_images);
  h5::write_int_attr(file_, "resolution", info.resolution);
  h5::write_int_attr(file_, "channels", info.channels);
  h5::write_string_attr(file_, "label_kind", label_kind_name(info.label_kind));
  h5::write_int_attr(file_, "label_dim", info.label_dim);
  h5::write_string_attr(file_, "class_names", nlohmann::json(info.class_names).dump());
  h5::write_string_attr(file_, "channel_names", nlohmann::json(info.channel_names).dump());
  if (label_kind_ == LabelKind::Class) h5::write_string_attr(file_, "class_counts", nlohmann::json(info.class_counts).dump());
  h5::write_string_attr(file_, "importer", info.importer_json);
  h5::write_string_attr(file_, "compression", info.compression);
  h5::write_string_attr(file_, "content_hash", info.content_hash);
  if (H5Dclose(images_.release()) < 0) throw PackError(dest_ + ": cannot write the images (disk full or I/O error)");
  try {
    h5::close_file(file_);
    commit_file(tmp_, dest_);
  } catch (const std::exception& e) {
    throw PackError(dest_ + ": not written: " + e.what());
  }
  committed_ = true;
  return info;
}

PackReader::PackReader(const std::string& path) {
  try {
    open(path);
  } catch (const PackError&) {
    if (fd_ >= 0) ::close(fd_);
    throw;
  } catch (const std::exception& e) {
    // h5::Error, JSON errors: one line naming the pack.
    if (fd_ >= 0) ::close(fd_);
    std::string msg = e.what();
    throw PackError(msg.rfind(path, 0) == 0 ? msg : path + ": " + msg);
  }
}

void PackReader::open(const std::string& path) {
  info_.path = path;
  auto bad = [&](const std::string& what) { return PackError(path + ": " + what); };
  const int superblock = h5::superblock_version(path);
  if (superblock < 0) throw bad("not a readable HDF5 file (missing, truncated or corrupt)");
  file_ = h5::open_file_shared(path);
  // The version first: it says whether variable-length strings (format 1) may appear at all.
  if (!h5::has_attr(file_, "format_version") || !h5::has_attr(file_, "format"))
    throw bad("not a styleforge pack (no attributes format/format_version)");
  info_.format_version = h5::read_int_attr(file_, "format_version");
  if (info_.format_version < 1 || info_.format_version > kPackFormatVersion)
    throw bad("unknown pack format version " + std::to_string(info_.format_version) + " (this styleforge reads " +
              "versions 1.." + std::to_string(kPackFormatVersion) + ")");
  const bool legacy = info_.format_version < 2;
  if (!legacy && superblock < 2)
    throw bad("format version " + std::to_string(info_.format_version) + " in an HDF5 file without checksums (superblock " +
              std::to_string(superblock) + "): damaged file");
  if (h5::read_string_attr(file_, "format", legacy) != kPackFormatName)
    throw bad("not a styleforge pack (attribute format is not 'styleforge-pack')");
  try {
    auto str = [&](const char* name) { return h5::read_string_attr(file_, name, legacy); };
    info_.styleforge_version = str("styleforge_version");
    info_.num_images = h5::read_int_attr(file_, "num_images");
    info_.resolution = static_cast<int>(h5::read_int_attr(file_, "resolution"));
    info_.channels = static_cast<int>(h5::read_int_attr(file_, "channels"));
    if (info_.num_images < 0 || info_.num_images > (int64_t(1) << 40)) throw bad("implausible num_images " + std::to_string(info_.num_images));
    if (info_.resolution < 1 || info_.resolution > kMaxPackResolution || !is_pow2(info_.resolution))
      throw bad("invalid resolution " + std::to_string(info_.resolution));
    if (info_.channels < 1 || info_.channels > kMaxPackChannels) throw bad("invalid channels " + std::to_string(info_.channels));
    std::string kind = str("label_kind");
    info_.label_kind = kind == "class" ? LabelKind::Class : kind == "vector" ? LabelKind::Vector : LabelKind::None;
    if (kind != "class" && kind != "vector" && kind != "none") throw bad("unknown label_kind '" + kind + "'");
    const int64_t label_dim = h5::read_int_attr(file_, "label_dim");
    if (label_dim < 0 || label_dim > (1 << 20) || (info_.label_kind == LabelKind::None) != (label_dim == 0))
      throw bad("invalid label_dim " + std::to_string(label_dim) + " for label_kind '" + kind + "'");
    info_.label_dim = static_cast<int>(label_dim);
    info_.class_names = nlohmann::json::parse(str("class_names")).get<std::vector<std::string>>();
    if (h5::has_attr(file_, "channel_names")) {
      info_.channel_names = nlohmann::json::parse(str("channel_names")).get<std::vector<std::string>>();
      if (!info_.channel_names.empty() && static_cast<int>(info_.channel_names.size()) != info_.channels)
        throw bad("channel_names lists " + std::to_string(info_.channel_names.size()) + " names for " +
                  std::to_string(info_.channels) + " channels");
    }
    if (h5::has_attr(file_, "class_counts"))
      info_.class_counts = nlohmann::json::parse(str("class_counts")).get<std::vector<int64_t>>();
    info_.importer_json = str("importer");
    info_.compression = str("compression");
    info_.content_hash = str("content_hash");
  } catch (const nlohmann::json::exception& e) {
    throw bad(std::string("bad class_names, channel_names or class_counts attribute (") + e.what() + ")");
  }
  if (!h5::is_dataset(file_, "images")) throw bad("no dataset /images");
  auto shape = h5::dataset_shape(file_, "images");
  std::vector<int64_t> want{info_.num_images, info_.channels, info_.resolution, info_.resolution};
  if (shape != want) throw bad("images has shape " + h5::shape_str(shape) + ", attributes say " + h5::shape_str(want));
  images_ = h5::open_dataset(file_, "images");
  {
    hid_t t = H5Dget_type(images_.id());
    bool u8 = t >= 0 && H5Tget_class(t) == H5T_INTEGER && H5Tget_size(t) == 1;
    if (t >= 0) H5Tclose(t);
    if (!u8) throw bad("/images is not uint8");
  }
  checksummed_ = h5::has_filter(images_, H5Z_FILTER_FLETCHER32);
  if (!legacy && !checksummed_) throw bad("/images has no Fletcher32 checksums, which format 2 always writes (damaged file?)");
  const int filters = h5::filter_count(images_);
  raw_chunks_ = filters == (checksummed_ ? 1 : 0);
  if (!raw_chunks_) h5::check_storage(images_, static_cast<uint64_t>(info_.num_images) * info_.image_bytes());
  if (!legacy) {
    std::vector<int64_t> cs;
    if (!h5::is_dataset(file_, "image_crc32")) throw bad("no dataset /image_crc32 (format 2 always has it; damaged file?)");
    crcs_ = h5::read_i64(file_, "image_crc32", &cs);
    if (cs != std::vector<int64_t>{info_.num_images}) throw bad("image_crc32 has shape " + h5::shape_str(cs) + " for " + std::to_string(info_.num_images) + " images");
  }
  if (!h5::is_dataset(file_, "names")) throw bad("no dataset /names");
  if (h5::dataset_shape(file_, "names") != std::vector<int64_t>{info_.num_images})
    throw bad("names has shape " + h5::shape_str(h5::dataset_shape(file_, "names")) + " for " +
              std::to_string(info_.num_images) + " images");
  if (raw_chunks_) {
    uint64_t off = 0, size = 0;
    const uint64_t stored = info_.image_bytes() + (checksummed_ ? 4 : 0);
    if (info_.num_images > 0 && h5::chunk_location(images_, 0, &off, &size) && size == stored) {
      fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd_ >= 0) chunk_offset_.assign(static_cast<size_t>(info_.num_images), 0);
    }
  }
  if (info_.label_kind != LabelKind::None && !h5::is_dataset(file_, "labels"))
    throw bad("no dataset /labels for label_kind '" + std::string(label_kind_name(info_.label_kind)) + "'");
  if (info_.label_kind == LabelKind::Class) {
    std::vector<int64_t> ls;
    classes_ = h5::read_i64(file_, "labels", &ls);
    if (ls != std::vector<int64_t>{info_.num_images}) throw bad("labels has shape " + h5::shape_str(ls) + " for " + std::to_string(info_.num_images) + " images");
    for (int64_t c : classes_)
      if (c < 0 || c >= info_.label_dim) throw bad("class label " + std::to_string(c) + " out of range [0, " + std::to_string(info_.label_dim) + ")");
  } else if (info_.label_kind == LabelKind::Vector) {
    std::vector<int64_t> ls;
    vectors_ = h5::read_f32(file_, "labels", &ls);
    if (ls != std::vector<int64_t>{info_.num_images, info_.label_dim}) throw bad("labels has shape " + h5::shape_str(ls) + " for " + std::to_string(info_.num_images) + " images");
  }
}

PackReader::~PackReader() {
  if (fd_ >= 0) ::close(fd_);
}

void PackReader::read_image(int64_t i, uint8_t* out) const {
  if (i < 0 || i >= info_.num_images)
    throw PackError(info_.path + ": image index " + std::to_string(i) + " out of range (" + std::to_string(info_.num_images) + " images)");
  const size_t bytes = info_.image_bytes();
  if (fd_ >= 0) {
    const size_t stored = bytes + (checksummed_ ? 4 : 0);
    uint64_t& off = chunk_offset_[static_cast<size_t>(i)];
    if (off == 0) {
      std::lock_guard<std::recursive_mutex> lock(h5::global_mutex());
      uint64_t size = 0, at = 0;
      if (!h5::chunk_location(images_, i, &at, &size) || size != stored || at == 0)
        throw PackError(info_.path + ": image " + std::to_string(i) + ": chunk missing or of the wrong size (corrupt file?)");
      off = at;
    }
    auto read_at = [&](uint8_t* dst, size_t len, uint64_t pos) {
      size_t done = 0;
      while (done < len) {
        ssize_t n = ::pread(fd_, dst + done, len - done, static_cast<off_t>(pos + done));
        if (n <= 0) throw PackError(info_.path + ": image " + std::to_string(i) + ": short read (truncated file?)");
        done += static_cast<size_t>(n);
      }
    };
    read_at(out, bytes, off);
    verify_image(i, out);
    return;
  }
  try {
    std::lock_guard<std::recursive_mutex> lock(h5::global_mutex());
    if (raw_chunks_) h5::read_raw_chunk(images_, i, out, bytes);
    else h5::read_rows(images_, H5T_NATIVE_UINT8, i, 1, out);
  } catch (const h5::Error& e) {
    throw PackError(info_.path + ": image " + std::to_string(i) + ": " + e.what());
  }
  verify_image(i, out);
}

void PackReader::verify_image(int64_t i, const uint8_t* img) const {
  if (!verify_ || crcs_.empty()) return;
  if (verified_.empty()) verified_.assign(crcs_.size(), 0);
  if (!verify_every_ && verified_[static_cast<size_t>(i)]) return;
  const uint32_t crc = crc32_zlib(img, info_.image_bytes());
  if (static_cast<int64_t>(crc) != crcs_[static_cast<size_t>(i)])
    throw PackError(info_.path + ": /images: image " + std::to_string(i) + ": checksum mismatch (CRC-32 in /image_crc32; damaged file)");
  verified_[static_cast<size_t>(i)] = 1;
}

void PackReader::read_images(const int64_t* idx, size_t n, uint8_t* out) const {
  size_t b = info_.image_bytes();
  for (size_t k = 0; k < n; ++k) read_image(idx[k], out + k * b);
}

void PackReader::label_as_float(int64_t i, float* out) const {
  if (info_.label_kind == LabelKind::Class) {
    std::fill(out, out + info_.label_dim, 0.0f);
    out[classes_.at(static_cast<size_t>(i))] = 1.0f;
  } else if (info_.label_kind == LabelKind::Vector) {
    std::memcpy(out, vector_label(i), sizeof(float) * static_cast<size_t>(info_.label_dim));
  }
}

std::vector<std::string> PackReader::names() const {
  std::lock_guard<std::recursive_mutex> lock(h5::global_mutex());
  try {
    return h5::read_strings(file_, "names", info_.format_version < 2);
  } catch (const h5::Error& e) {
    throw PackError(info_.path + ": " + e.what());
  }
}

std::string compute_content_hash(const PackReader& pack) {
  Sha256 h;
  start_hash(h);
  std::vector<uint8_t> img(pack.info().image_bytes());
  for (int64_t i = 0; i < pack.size(); ++i) {
    pack.read_image(i, img.data());
    h.update(img.data(), img.size());
  }
  std::vector<int64_t> classes;
  std::vector<float> vectors;
  if (pack.info().label_kind == LabelKind::Class)
    for (int64_t i = 0; i < pack.size(); ++i) classes.push_back(pack.class_label(i));
  if (pack.info().label_kind == LabelKind::Vector)
    vectors.assign(pack.vector_label(0), pack.vector_label(0) + pack.size() * pack.info().label_dim);
  return finish_hash(h, pack.info().label_kind, classes, vectors);
}

}  // namespace sf::data
