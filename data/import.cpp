#include "data/import.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "data/dicom.h"
#include "data/image.h"
#include "data/nifti.h"
#include "data/tfrecord.h"
#include "data/zip.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace sf::data {

namespace {

class ImportError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

bool ends_with(const std::string& s, const std::string& suf) {
  if (s.size() < suf.size()) return false;
  return std::equal(suf.rbegin(), suf.rend(), s.rbegin(), [](char a, char b) { return std::tolower(a) == std::tolower(b); });
}
bool is_pow2(int v) { return v > 0 && (v & (v - 1)) == 0; }
int next_pow2(int v) {
  int p = 1;
  while (p < v) p <<= 1;
  return p;
}

std::vector<std::string> split_path(const std::string& rel) {
  std::vector<std::string> parts;
  std::string cur;
  for (char c : rel) {
    if (c == '/') { parts.push_back(cur); cur.clear(); }
    else cur += c;
  }
  parts.push_back(cur);
  return parts;
}

void sort_by_components(std::vector<std::string>& names) {
  std::sort(names.begin(), names.end(),
            [](const std::string& a, const std::string& b) { return split_path(a) < split_path(b); });
}

struct Item {
  Image img;
  std::string name;
  Label label;
};

class Source {
 public:
  virtual ~Source() = default;
  virtual int64_t count() const = 0;  // -1 when unknown before reading
  virtual bool next(Item& item) = 0;
  virtual std::vector<std::string> class_names() const { return {}; }
  virtual bool is_volume() const { return false; }
  // Progress in the source's own unit: images, or volumes for volume sources.
  virtual const char* unit() const { return "images"; }
  virtual int64_t units_total() const { return count(); }
  virtual int64_t units_done(int64_t images) const { return images; }
};

// ---- labels ----

Label label_from_json(const json& v, const std::string& where) {
  Label l;
  if (v.is_null()) return l;
  if (v.is_number_integer()) {
    l.kind = LabelKind::Class;
    l.cls = v.get<int64_t>();
  } else if (v.is_array()) {
    l.kind = LabelKind::Vector;
    for (const auto& x : v) {
      if (!x.is_number()) throw ImportError(where + ": label vector holds a non-number");
      l.vec.push_back(x.get<float>());
    }
  } else if (v.is_number()) {
    l.kind = LabelKind::Vector;
    l.vec.push_back(v.get<float>());
  } else {
    throw ImportError(where + ": label is neither an integer class nor a list of numbers");
  }
  return l;
}

std::map<std::string, Label> parse_dataset_json(const std::string& text, const std::string& where, bool* null_labels) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw ImportError(where + ": invalid JSON (" + std::string(e.what()) + ")");
  }
  std::map<std::string, Label> out;
  *null_labels = false;
  if (!j.is_object() || !j.contains("labels")) throw ImportError(where + ": no \"labels\" key");
  if (j["labels"].is_null()) {
    *null_labels = true;
    return out;
  }
  if (!j["labels"].is_array()) throw ImportError(where + ": \"labels\" is not a list");
  for (const auto& e : j["labels"]) {
    if (!e.is_array() || e.size() != 2 || !e[0].is_string()) throw ImportError(where + ": each label must be [name, label]");
    out[e[0].get<std::string>()] = label_from_json(e[1], where + ": " + e[0].get<std::string>());
  }
  return out;
}

std::map<std::string, Label> parse_csv_labels(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw ImportError(path + ": cannot open labels CSV");
  std::map<std::string, Label> out;
  std::string line;
  int lineno = 0;
  while (std::getline(f, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> cols;
    std::stringstream ss(line);
    std::string c;
    while (std::getline(ss, c, ',')) cols.push_back(c);
    std::string where = path + ":" + std::to_string(lineno);
    if (cols.size() < 2) throw ImportError(where + ": expected name,label");
    Label l;
    try {
      if (cols.size() == 2 && cols[1].find_first_not_of("0123456789 ") == std::string::npos) {
        l.kind = LabelKind::Class;
        l.cls = std::stoll(cols[1]);
      } else {
        l.kind = LabelKind::Vector;
        for (size_t i = 1; i < cols.size(); ++i) l.vec.push_back(std::stof(cols[i]));
      }
    } catch (const std::exception&) {
      if (lineno == 1) continue;  // a header line
      throw ImportError(where + ": label is not a number");
    }
    out[cols[0]] = l;
  }
  return out;
}

// ---- image folders and zips ----

class ImageListSource : public Source {
 public:
  // `read` returns the bytes of one listed name.
  ImageListSource(std::string root, std::vector<std::string> names, std::function<std::vector<uint8_t>(const std::string&)> read,
                  const ImportOptions& opts, std::function<std::string(const std::string&)> read_text,
                  std::function<bool(const std::string&)> has)
      : root_(std::move(root)), names_(std::move(names)), read_(std::move(read)) {
    std::string mode = opts.labels;
    if (mode == "auto") mode = has("dataset.json") ? "json" : "none";
    if (mode == "json") {
      std::string where = opts.labels_file.empty() ? root_ + "/dataset.json" : opts.labels_file;
      std::string text;
      if (!opts.labels_file.empty()) {
        std::ifstream f(opts.labels_file);
        if (!f) throw ImportError(opts.labels_file + ": cannot open");
        text.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
      } else {
        if (!has("dataset.json")) throw ImportError(where + ": missing (--labels json)");
        text = read_text("dataset.json");
      }
      bool null_labels = false;
      labels_ = parse_dataset_json(text, where, &null_labels);
      use_map_ = !null_labels;
      labels_where_ = where;
    } else if (mode == "csv") {
      if (opts.labels_file.empty()) throw ImportError("--labels csv needs --labels-file FILE.csv");
      labels_ = parse_csv_labels(opts.labels_file);
      use_map_ = true;
      labels_where_ = opts.labels_file;
    } else if (mode == "folders") {
      std::set<std::string> dirs;
      for (const auto& n : names_) {
        auto slash = n.find('/');
        if (slash == std::string::npos) throw ImportError(root_ + "/" + n + ": image outside a class sub-folder (--labels folders)");
        dirs.insert(n.substr(0, slash));
      }
      classes_.assign(dirs.begin(), dirs.end());
      folders_ = true;
    } else if (mode != "none") {
      throw ImportError("unknown --labels mode '" + mode + "' (auto, none, json, folders, csv)");
    }
    if (opts.max_images >= 0 && static_cast<int64_t>(names_.size()) > opts.max_images) names_.resize(static_cast<size_t>(opts.max_images));
    if (use_map_ && opts.max_images < 0 && labels_.size() != names_.size()) {
      for (const auto& n : names_)
        if (!labels_.count(n))
          throw ImportError(labels_where_ + ": label count mismatch: " + std::to_string(labels_.size()) + " labels for " +
                            std::to_string(names_.size()) + " images (no label for '" + n + "')");
      throw ImportError(labels_where_ + ": label count mismatch: " + std::to_string(labels_.size()) + " labels for " +
                        std::to_string(names_.size()) + " images");
    }
  }
  int64_t count() const override { return static_cast<int64_t>(names_.size()); }
  std::vector<std::string> class_names() const override { return classes_; }
  bool next(Item& item) override {
    if (pos_ >= names_.size()) return false;
    const std::string& n = names_[pos_++];
    auto bytes = read_(n);
    item.img = decode_image(bytes.data(), bytes.size(), root_ + "/" + n);
    item.name = n;
    item.label = Label{};
    if (use_map_) {
      auto it = labels_.find(n);
      if (it == labels_.end()) throw ImportError(labels_where_ + ": label count mismatch: no label for '" + n + "'");
      item.label = it->second;
    } else if (folders_) {
      std::string d = n.substr(0, n.find('/'));
      item.label.kind = LabelKind::Class;
      item.label.cls = std::lower_bound(classes_.begin(), classes_.end(), d) - classes_.begin();
    }
    return true;
  }

 private:
  std::string root_;
  std::vector<std::string> names_;
  std::function<std::vector<uint8_t>(const std::string&)> read_;
  std::map<std::string, Label> labels_;
  std::string labels_where_;
  bool use_map_ = false, folders_ = false;
  std::vector<std::string> classes_;
  size_t pos_ = 0;
};

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw ImportError(path + ": cannot open");
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

// ---- TFRecord ----

class TfSource : public Source {
 public:
  TfSource(const std::string& source, const ImportOptions& opts) {
    if (fs::is_directory(source)) {
      TfDatasetFiles files = find_tf_dataset(source);
      file_ = files.levels.back().second;
      labels_path_ = files.labels;
    } else {
      file_ = source;
    }
    if (opts.labels == "none") labels_path_.clear();
    else if (opts.labels != "auto") throw ImportError("--labels " + opts.labels + " does not apply to TFRecord datasets (labels come from *-rxx.labels)");
    if (!labels_path_.empty()) labels_ = read_npy(labels_path_);
    // Count records first (also verifies every CRC before anything is written).
    TfRecordReader counter(file_);
    std::string rec;
    while (counter.next(rec)) ++count_;
    if (!labels_path_.empty()) {
      int64_t nl = labels_.shape.empty() ? 0 : labels_.shape[0];
      if (nl != count_)
        throw ImportError(labels_path_ + ": label count mismatch: " + std::to_string(nl) + " labels for " +
                          std::to_string(count_) + " records in " + file_);
    }
    if (opts.max_images >= 0) count_ = std::min(count_, opts.max_images);
    reader_ = std::make_unique<TfRecordReader>(file_);
  }
  int64_t count() const override { return count_; }
  bool next(Item& item) override {
    if (read_ >= count_) return false;
    std::string rec;
    if (!reader_->next(rec)) return false;
    const std::string where = file_ + ": record " + std::to_string(reader_->index());
    TfExampleImage ex = parse_tf_example_image(rec, where);
    item.img = chw_to_image(reinterpret_cast<const uint8_t*>(ex.data.data()), static_cast<int>(ex.shape[0]),
                            static_cast<int>(ex.shape[1]), static_cast<int>(ex.shape[2]));
    item.name = fs::path(file_).filename().string() + "#" + std::to_string(reader_->index());
    item.label = Label{};
    if (!labels_path_.empty()) {
      size_t i = static_cast<size_t>(read_);
      if (labels_.shape.size() == 1 && labels_.is_integer()) {
        item.label.kind = LabelKind::Class;
        item.label.cls = static_cast<int64_t>(labels_.values[i]);
      } else {
        size_t d = labels_.shape.size() >= 2 ? static_cast<size_t>(labels_.shape[1]) : 1;
        item.label.kind = LabelKind::Vector;
        item.label.vec.assign(labels_.values.begin() + static_cast<std::ptrdiff_t>(i * d),
                              labels_.values.begin() + static_cast<std::ptrdiff_t>((i + 1) * d));
      }
    }
    ++read_;
    return true;
  }

 private:
  std::string file_, labels_path_;
  NpyArray labels_;
  int64_t count_ = 0, read_ = 0;
  std::unique_ptr<TfRecordReader> reader_;
};

// ---- volumes ----

IntensityScaling parse_intensity(const std::string& s) {
  IntensityScaling out;
  std::vector<std::string> p;
  std::stringstream ss(s);
  std::string t;
  while (std::getline(ss, t, ':')) p.push_back(t);
  try {
    if (p.empty() || p[0] == "minmax") {
      out.mode = IntensityScaling::MinMax;
    } else if (p[0] == "percentile") {
      out.mode = IntensityScaling::Percentile;
      if (p.size() == 3) { out.lo_pct = std::stod(p[1]); out.hi_pct = std::stod(p[2]); }
      else if (p.size() != 1) throw ImportError("");
    } else if (p[0] == "window") {
      out.mode = IntensityScaling::Window;
      if (p.size() == 3) { out.center = std::stod(p[1]); out.width = std::stod(p[2]); }
      else if (p.size() != 1) throw ImportError("");
    } else {
      throw ImportError("");
    }
  } catch (const std::exception&) {
    throw ImportError("bad --intensity '" + s + "' (minmax, percentile[:LO:HI], window[:CENTER:WIDTH])");
  }
  return out;
}

// Smallest side of a slice taken from a volume: smaller "slices" are damaged headers or the
// wrong axis, and would be upsampled into many large images from a few bytes.
constexpr int64_t kMinSliceSide = 8;

class NiftiSource : public Source {
 public:
  NiftiSource(const std::string& source, const ImportOptions& opts) : opts_(opts), scaling_(parse_intensity(opts.intensity)) {
    if (scaling_.mode == IntensityScaling::Window && scaling_.width <= 0)
      throw ImportError("--intensity window needs CENTER:WIDTH for NIfTI volumes");
    if (fs::is_directory(source)) {
      root_ = source;
      for (const auto& e : fs::recursive_directory_iterator(source))
        if (e.is_regular_file() && is_nifti_name(e.path().string()))
          files_.push_back(fs::relative(e.path(), source).generic_string());
      sort_by_components(files_);
    } else {
      root_ = fs::path(source).parent_path().string();
      files_.push_back(fs::path(source).filename().string());
    }
    if (opts.labels != "auto" && opts.labels != "none") throw ImportError("--labels " + opts.labels + " does not apply to NIfTI volumes");
  }
  int64_t count() const override { return -1; }
  bool is_volume() const override { return true; }
  const char* unit() const override { return "volumes"; }
  int64_t units_total() const override { return static_cast<int64_t>(files_.size()); }
  int64_t units_done(int64_t) const override { return static_cast<int64_t>(file_idx_) - (vol_ ? 1 : 0); }
  bool next(Item& item) override {
    if (opts_.max_images >= 0 && emitted_ >= opts_.max_images) return false;
    while (!vol_ || t_ >= vol_->nt()) {
      if (file_idx_ >= files_.size()) return false;
      const std::string rel = files_[file_idx_++];
      vol_ = std::make_unique<NiftiVolume>(read_nifti((fs::path(root_) / rel).string()));
      rel_ = rel;
      if (opts_.axis < 0 || opts_.axis > 2) throw ImportError("--axis must be 0, 1 or 2");
      int64_t n = opts_.axis == 0 ? vol_->nx() : opts_.axis == 1 ? vol_->ny() : vol_->nz();
      const int64_t cols = opts_.axis == 0 ? vol_->ny() : vol_->nx(), rows = opts_.axis == 2 ? vol_->ny() : vol_->nz();
      if (cols < kMinSliceSide || rows < kMinSliceSide)
        throw ImportError(vol_->path + ": slices along axis " + std::to_string(opts_.axis) + " are " + std::to_string(cols) + "x" +
                          std::to_string(rows) + ", smaller than " + std::to_string(kMinSliceSide) + "x" +
                          std::to_string(kMinSliceSide) + " (not images; damaged header or wrong --axis?)");
      begin_ = std::max<int64_t>(0, opts_.slice_begin);
      end_ = opts_.slice_end < 0 ? n : std::min(n, opts_.slice_end);
      if (begin_ >= end_)
        throw ImportError(vol_->path + ": --slices " + std::to_string(opts_.slice_begin) + ":" + std::to_string(opts_.slice_end) +
                          " selects nothing (axis " + std::to_string(opts_.axis) + " has " + std::to_string(n) + " slices)");
      auto [lo, hi] = intensity_range(vol_->data, scaling_);  // per volume (all time points)
      lo_ = lo;
      hi_ = hi;
      t_ = 0;
      k_ = begin_;
    }
    item.img = nifti_slice(*vol_, opts_.axis, k_, t_, lo_, hi_);
    item.name = rel_ + (vol_->nt() > 1 ? "#t=" + std::to_string(t_) + ",slice=" : "#slice=") + std::to_string(k_);
    item.label = Label{};
    if (++k_ >= end_) { k_ = begin_; ++t_; }
    ++emitted_;
    return true;
  }

 private:
  const ImportOptions& opts_;
  IntensityScaling scaling_;
  std::string root_, rel_;
  std::vector<std::string> files_;
  size_t file_idx_ = 0;
  std::unique_ptr<NiftiVolume> vol_;
  int64_t t_ = 0, k_ = 0, begin_ = 0, end_ = 0, emitted_ = 0;
  double lo_ = 0, hi_ = 1;
};

class DicomSource : public Source {
 public:
  DicomSource(const std::string& source, const ImportOptions& opts) : opts_(opts), scaling_(parse_intensity(opts.intensity)) {
    if (fs::is_directory(source)) {
      root_ = source;
      std::map<std::string, std::vector<std::string>> by_dir;
      for (const auto& e : fs::recursive_directory_iterator(source))
        if (e.is_regular_file() && looks_like_dicom(e.path().string()))
          by_dir[fs::relative(e.path().parent_path(), source).generic_string()].push_back(
              fs::relative(e.path(), source).generic_string());
      for (auto& [dir, files] : by_dir) series_.push_back(files);
    } else {
      root_ = fs::path(source).parent_path().string();
      series_.push_back({fs::path(source).filename().string()});
    }
    if (opts.labels != "auto" && opts.labels != "none") throw ImportError("--labels " + opts.labels + " does not apply to DICOM series");
  }
  int64_t count() const override { return -1; }
  bool is_volume() const override { return true; }
  const char* unit() const override { return "series"; }
  int64_t units_total() const override { return static_cast<int64_t>(series_.size()); }
  int64_t units_done(int64_t) const override { return static_cast<int64_t>(series_idx_) - (frames_.empty() ? 0 : 1); }
  bool next(Item& item) override {
    if (opts_.max_images >= 0 && emitted_ >= opts_.max_images) return false;
    while (frame_ >= frames_.size()) {
      if (series_idx_ >= series_.size()) return false;
      load_series(series_[series_idx_++]);
    }
    const auto& fr = frames_[frame_++];
    item.img.width = fr.cols;
    item.img.height = fr.rows;
    item.img.channels = 1;
    item.img.pixels.resize(fr.values.size());
    for (size_t i = 0; i < fr.values.size(); ++i) item.img.pixels[i] = to_u8(fr.values[i], lo_, hi_);
    item.name = fr.name;
    item.label = Label{};
    ++emitted_;
    return true;
  }

 private:
  struct Frame {
    std::string name;
    int rows, cols;
    std::vector<float> values;
  };
  void load_series(const std::vector<std::string>& files) {
    std::vector<DicomImage> imgs;
    for (const auto& rel : files) {
      imgs.push_back(read_dicom((fs::path(root_) / rel).string()));
      if (imgs.back().rows < kMinSliceSide || imgs.back().cols < kMinSliceSide)
        throw ImportError(imgs.back().path + ": image is " + std::to_string(imgs.back().cols) + "x" +
                          std::to_string(imgs.back().rows) + ", smaller than " + std::to_string(kMinSliceSide) + "x" +
                          std::to_string(kMinSliceSide));
      imgs.back().path = rel;
    }
    std::stable_sort(imgs.begin(), imgs.end(), [](const DicomImage& a, const DicomImage& b) {
      if (a.instance_number != b.instance_number) return a.instance_number < b.instance_number;
      if (a.slice_position != b.slice_position) return a.slice_position < b.slice_position;
      return a.path < b.path;
    });
    frames_.clear();
    frame_ = 0;
    std::vector<float> all;
    for (const auto& d : imgs)
      for (int f = 0; f < d.frames; ++f) {
        Frame fr{d.path + (d.frames > 1 ? "#frame=" + std::to_string(f) : ""), d.rows, d.cols, d.frame_values(f)};
        if (static_cast<int>(fr.values.size()) != d.rows * d.cols) throw ImportError(d.path + ": bad frame size");
        all.insert(all.end(), fr.values.begin(), fr.values.end());
        frames_.push_back(std::move(fr));
      }
    IntensityScaling s = scaling_;
    if (s.mode == IntensityScaling::Window && s.width <= 0) {
      if (imgs.empty() || !imgs[0].has_window || imgs[0].window_width <= 0)
        throw ImportError(root_ + "/" + (imgs.empty() ? std::string("?") : imgs[0].path) +
                          ": --intensity window without values, and the file has no WindowCenter/WindowWidth");
      s.center = imgs[0].window_center;
      s.width = imgs[0].window_width;
    }
    auto [lo, hi] = intensity_range(all, s);  // per series
    lo_ = lo;
    hi_ = hi;
  }
  const ImportOptions& opts_;
  IntensityScaling scaling_;
  std::string root_;
  std::vector<std::vector<std::string>> series_;
  size_t series_idx_ = 0;
  std::vector<Frame> frames_;
  size_t frame_ = 0;
  int64_t emitted_ = 0;
  double lo_ = 0, hi_ = 1;
};

std::unique_ptr<Source> open_source(const std::string& kind, const ImportOptions& opts) {
  const std::string& src = opts.source;
  if (kind == "tfrecords") return std::make_unique<TfSource>(src, opts);
  if (kind == "nifti") return std::make_unique<NiftiSource>(src, opts);
  if (kind == "dicom") return std::make_unique<DicomSource>(src, opts);
  if (kind == "zip") {
    auto zip = std::make_shared<ZipReader>(src);
    std::vector<std::string> names;
    for (const auto& n : zip->names())
      if (is_image_name(n)) names.push_back(n);
    sort_by_components(names);
    return std::make_unique<ImageListSource>(
        src, names, [zip](const std::string& n) { return zip->read(n); }, opts,
        [zip](const std::string& n) {
          auto b = zip->read(n);
          return std::string(b.begin(), b.end());
        },
        [zip](const std::string& n) { return zip->contains(n); });
  }
  std::vector<std::string> names = list_image_folder(src);
  return std::make_unique<ImageListSource>(
      src, names, [src](const std::string& n) { return read_file_bytes((fs::path(src) / n).string()); }, opts,
      [src](const std::string& n) {
        auto b = read_file_bytes((fs::path(src) / n).string());
        return std::string(b.begin(), b.end());
      },
      [src](const std::string& n) { return fs::is_regular_file(fs::path(src) / n); });
}

// Brings one image to the pack's geometry, or explains why it cannot.
Image conform(Image img, const std::string& name, const ImportOptions& opts, bool volume, ResizeFilter filter) {
  if (opts.channels) img = to_channels(img, opts.channels);
  else if (img.channels == 2 || img.channels == 4)
    throw ImportError(name + ": image has an alpha channel (" + img.size_str() + "); use --channels 1 or 3 to drop it");
  if (img.width != img.height) {
    if (opts.transform == "center-crop") img = center_crop_square(img);
    else if (opts.transform == "pad" || volume) img = pad_square(img);
    else
      throw ImportError(name + ": image is " + std::to_string(img.width) + "x" + std::to_string(img.height) +
                        ", not square; use --transform center-crop or pad");
  }
  if (volume && !is_pow2(img.width)) img = pad_to(img, next_pow2(img.width), next_pow2(img.width));
  if (opts.resolution > 0 && img.width != opts.resolution) img = resize(img, opts.resolution, opts.resolution, filter);
  if (!is_pow2(img.width))
    throw ImportError(name + ": image is " + std::to_string(img.width) + "x" + std::to_string(img.height) +
                      ", not a power of two; use --resolution");
  return img;
}

}  // namespace

std::vector<std::string> list_image_folder(const std::string& dir) {
  if (!fs::is_directory(dir)) throw ImportError(dir + ": not a folder");
  std::vector<std::string> names;
  for (const auto& e : fs::recursive_directory_iterator(dir, fs::directory_options::follow_directory_symlink))
    if (e.is_regular_file() && is_image_name(e.path().filename().string()))
      names.push_back(fs::relative(e.path(), dir).generic_string());
  sort_by_components(names);
  return names;
}

std::string detect_source_kind(const std::string& source) {
  if (!fs::exists(source)) throw ImportError(source + ": no such file or folder");
  if (fs::is_directory(source)) {
    bool tfr = false, nii = false, dcm = false, img = false;
    for (const auto& e : fs::directory_iterator(source)) {
      std::string n = e.path().filename().string();
      if (ends_with(n, ".tfrecords")) tfr = true;
    }
    if (tfr) return "tfrecords";
    for (const auto& e : fs::recursive_directory_iterator(source)) {
      if (!e.is_regular_file()) continue;
      std::string n = e.path().filename().string();
      if (is_nifti_name(n)) nii = true;
      else if (is_image_name(n)) img = true;
      else if (ends_with(n, ".dcm") || ends_with(n, ".dicom")) dcm = true;
    }
    if (img) return "image-folder";
    if (nii) return "nifti";
    if (dcm) return "dicom";
    throw ImportError(source + ": folder holds no PNG/JPEG images, tfrecords, NIfTI or DICOM files");
  }
  if (ends_with(source, ".zip")) return "zip";
  if (ends_with(source, ".tfrecords")) return "tfrecords";
  if (is_nifti_name(source)) return "nifti";
  if (looks_like_dicom(source)) return "dicom";
  throw ImportError(source + ": unknown source type (expected a folder, .zip, .tfrecords, .nii[.gz] or DICOM file)");
}

std::string ImportSummary::line() const {
  std::ostringstream s;
  std::string labels = label_kind_name(info.label_kind);
  if (info.label_kind != LabelKind::None) labels += "[" + std::to_string(info.label_dim) + "]";
  s << "packed " << info.num_images << (info.num_images == 1 ? " image " : " images ") << info.resolution << "x" << info.resolution << "x" << info.channels
    << " (labels: " << labels << ") from " << source_kind << " into " << info.path << " in " << std::fixed
    << std::setprecision(1) << seconds << " s, " << info.content_hash.substr(0, 19);
  return s.str();
}

ImportSummary pack_dataset(const ImportOptions& opts) {
  auto t0 = std::chrono::steady_clock::now();
  if (opts.dest.empty()) throw ImportError("--dest is empty");
  if (fs::exists(opts.dest) && !opts.force) throw ImportError(opts.dest + ": exists already (use --force to replace it)");
  if (opts.channels != 0 && opts.channels != 1 && opts.channels != 3) throw ImportError("--channels must be 1 or 3");
  if (opts.resolution != 0 && !is_pow2(opts.resolution)) throw ImportError("--resolution " + std::to_string(opts.resolution) + " is not a power of two");
  if (!opts.transform.empty() && opts.transform != "center-crop" && opts.transform != "pad")
    throw ImportError("unknown --transform '" + opts.transform + "' (center-crop or pad)");
  if (opts.gzip_level < 0 || opts.gzip_level > 9) throw ImportError("--gzip must be 0..9");
  ResizeFilter filter = parse_resize_filter(opts.resize_filter);

  ImportSummary summary;
  summary.source_kind = detect_source_kind(opts.source);
  auto source = open_source(summary.source_kind, opts);

  json importer = {{"source", fs::absolute(opts.source).lexically_normal().string()},
                   {"source_kind", summary.source_kind},
                   {"resolution", opts.resolution},
                   {"channels", opts.channels},
                   {"resize_filter", opts.resize_filter},
                   {"transform", opts.transform},
                   {"max_images", opts.max_images},
                   {"labels", opts.labels},
                   {"labels_file", opts.labels_file},
                   {"gzip", opts.gzip_level}};
  if (source->is_volume()) {
    importer["axis"] = opts.axis;
    importer["slices"] = std::to_string(opts.slice_begin) + ":" + (opts.slice_end < 0 ? std::string() : std::to_string(opts.slice_end));
    importer["intensity"] = opts.intensity;
  }
  PackWriter::Options wopts;
  wopts.force = opts.force;
  wopts.gzip_level = opts.gzip_level;
  wopts.importer_json = importer.dump();
  wopts.class_names = source->class_names();
  PackWriter writer(opts.dest, wopts);

  ImportProgress at;
  at.unit = source->unit();
  at.total = source->units_total();
  if (opts.progress) opts.progress(at);
  Item item;
  std::vector<uint8_t> chw;
  int64_t done = 0;
  while (source->next(item)) {
    std::string display = summary.source_kind == "image-folder" ? (fs::path(opts.source) / item.name).string()
                          : summary.source_kind == "zip"        ? opts.source + ":" + item.name
                                                                : item.name;
    Image img = conform(std::move(item.img), display, opts, source->is_volume(), filter);
    chw.resize(img.pixels.size());
    hwc_to_chw(img, chw.data());
    try {
      writer.add(chw.data(), img.channels, img.width, item.name, item.label);
    } catch (const PackError& e) {
      throw ImportError(display.substr(0, display.size() - item.name.size()) + e.what());
    }
    ++done;
    if (opts.progress) {
      at.images = done;
      at.done = source->units_done(done);
      opts.progress(at);
    }
  }
  if (opts.progress && done > 0) {  // the whole source was read (or --max-images reached)
    at.done = at.total > 0 ? at.total : done;
    if (at.total <= 0) at.total = done;
    opts.progress(at);
  }
  if (done == 0) throw ImportError(opts.source + ": no images found");
  summary.info = writer.commit();
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return summary;
}

}  // namespace sf::data
