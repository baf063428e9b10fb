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
#include "data/import_internal.h"
#include "data/nifti.h"
#include "data/tfrecord.h"
#include "data/zip.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace sf::data {

namespace detail {

bool ends_with(const std::string& s, const std::string& suf) {
  if (s.size() < suf.size()) return false;
  return std::equal(suf.rbegin(), suf.rend(), s.rbegin(), [](char a, char b) { return std::tolower(a) == std::tolower(b); });
}

namespace {
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
}  // namespace

void sort_by_components(std::vector<std::string>& names) {
  std::sort(names.begin(), names.end(),
            [](const std::string& a, const std::string& b) { return split_path(a) < split_path(b); });
}

std::string count_and_examples(const std::vector<std::string>& names, const std::string& what, size_t first) {
  std::string s = std::to_string(names.size()) + " " + what;
  if (names.empty()) return s;
  s += " (";
  for (size_t i = 0; i < names.size() && i < first; ++i) s += (i ? ", " : "") + names[i];
  if (names.size() > first) s += ", ...";
  return s + ")";
}

}  // namespace detail

namespace {

using namespace detail;

bool is_pow2(int v) { return v > 0 && (v & (v - 1)) == 0; }
int next_pow2(int v) {
  int p = 1;
  while (p < v) p <<= 1;
  return p;
}

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

std::unique_ptr<Source> open_source(const std::string& kind, const ImportOptions& opts) {
  const std::string& src = opts.source;
  if (kind == "tfrecords") return std::make_unique<TfSource>(src, opts);
  if (kind == "nifti" || kind == "dicom") return open_volume_source(kind, opts);
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
  // Volume slices carry one channel per modality (any count): never gray+alpha or RGBA.
  if (opts.channels) img = to_channels(img, opts.channels);
  else if (!volume && (img.channels == 2 || img.channels == 4))
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

namespace {

// What a file in a source folder is, for the importer: "image-folder" (PNG/JPEG), "nifti",
// "dicom", "tfrecords", or "" (not usable: .txt, .csv, .json, masks' companions, ...).
std::string file_kind(const fs::path& p) {
  const std::string n = p.filename().string();
  if (is_image_name(n)) return "image-folder";
  if (is_nifti_name(n)) return "nifti";
  if (ends_with(n, ".tfrecords")) return "tfrecords";
  if (ends_with(n, ".dcm") || ends_with(n, ".dicom")) return "dicom";
  if (n == "DICOMDIR") return "";
  static const char* kNot[] = {".txt", ".csv", ".json", ".md", ".labels", ".npy", ".h5", ".zip", ".py", ".sh", ".log", ".xml", ".html", ".pdf"};
  for (const char* e : kNot)
    if (ends_with(n, e)) return "";
  return looks_like_dicom(p.string()) ? "dicom" : "";
}

const char* kind_text(const std::string& k) {
  if (k == "image-folder") return "PNG/JPEG images";
  if (k == "nifti") return "NIfTI files";
  if (k == "dicom") return "DICOM files";
  if (k == "tfrecords") return "TFRecord files";
  return "files";
}

}  // namespace

std::string detect_source_kind(const std::string& source, const std::string& forced, std::string* skipped) {
  static const std::set<std::string> kKinds = {"image-folder", "nifti", "dicom", "zip", "tfrecords"};
  if (!forced.empty() && !kKinds.count(forced))
    throw ImportError("unknown --source-kind '" + forced + "' (image-folder, nifti, dicom, zip or tfrecords)");
  if (!fs::exists(source)) throw ImportError(source + ": no such file or folder");
  if (fs::is_directory(source)) {
    // Every supported file under the folder, by kind (TFRecord files count at the top level only,
    // as the TF layout keeps them there), in sorted order for the examples.
    std::map<std::string, std::vector<std::string>> by_kind;
    for (auto it = fs::recursive_directory_iterator(source, fs::directory_options::follow_directory_symlink);
         it != fs::recursive_directory_iterator(); ++it) {
      if (!it->is_regular_file()) continue;
      std::string k = file_kind(it->path());
      if (k.empty() || (k == "tfrecords" && it.depth() > 0)) continue;
      by_kind[k].push_back(fs::relative(it->path(), source).generic_string());
    }
    for (auto& [k, names] : by_kind) sort_by_components(names);
    auto describe = [&](bool all_but_forced) {
      std::string s;
      for (const auto& [k, names] : by_kind) {
        if (all_but_forced && k == forced) continue;
        s += (s.empty() ? "" : ", ") + std::to_string(names.size()) + " " + kind_text(k) + " (e.g. " + names[0] + ")";
      }
      return s;
    };
    if (!forced.empty()) {
      if (forced == "zip") throw ImportError(source + ": --source-kind zip needs a .zip file as --source");
      if (!by_kind.count(forced)) throw ImportError(source + ": folder holds no " + std::string(kind_text(forced)) + " (--source-kind " + forced + ")");
      if (by_kind.size() > 1 && skipped) *skipped = describe(true) + " (not " + forced + ")";
      return forced;
    }
    if (by_kind.empty()) throw ImportError(source + ": folder holds no PNG/JPEG images, tfrecords, NIfTI or DICOM files");
    if (by_kind.size() > 1)
      throw ImportError(source + ": folder mixes " + describe(false) +
                        "; choose one with --source-kind image-folder|nifti|dicom|tfrecords");
    return by_kind.begin()->first;
  }
  std::string kind;
  if (ends_with(source, ".zip")) kind = "zip";
  else if (ends_with(source, ".tfrecords")) kind = "tfrecords";
  else if (is_nifti_name(source)) kind = "nifti";
  else if (looks_like_dicom(source)) kind = "dicom";
  else throw ImportError(source + ": unknown source type (expected a folder, .zip, .tfrecords, .nii[.gz] or DICOM file)");
  if (!forced.empty() && forced != kind) throw ImportError(source + ": is a " + kind + " source, not --source-kind " + forced);
  return kind;
}

std::string ImportSummary::line() const {
  std::ostringstream s;
  std::string labels = label_kind_name(info.label_kind);
  if (info.label_kind != LabelKind::None) labels += "[" + std::to_string(info.label_dim) + "]";
  if (dry_run) {
    s << "dry run: would pack " << images << (images == 1 ? " image " : " images ") << info.resolution << "x" << info.resolution << "x"
      << info.channels << " (labels: " << labels << ") from " << source_kind << " into " << info.path << "; nothing written";
  } else {
    s << "packed " << info.num_images << (info.num_images == 1 ? " image " : " images ") << info.resolution << "x" << info.resolution << "x"
      << info.channels << " (labels: " << labels << ") from " << source_kind << " into " << info.path << " in " << std::fixed
      << std::setprecision(1) << seconds << " s, " << info.content_hash.substr(0, 19);
  }
  if (!info.class_counts.empty()) {
    s << "; classes:";
    for (size_t c = 0; c < info.class_counts.size(); ++c)
      s << (c ? ", " : " ") << (c < info.class_names.size() ? info.class_names[c] : std::to_string(c)) << " " << info.class_counts[c];
  }
  if (!dropped.empty()) {
    int64_t n = 0;
    for (const auto& [why, k] : dropped) n += k;
    s << "; dropped " << n << " slices (";
    bool first = true;
    for (const auto& [why, k] : dropped) s << (first ? "" : ", ") << why << " " << k, first = false;
    s << ")";
  }
  return s.str();
}

ImportSummary pack_dataset(const ImportOptions& opts) {
  auto t0 = std::chrono::steady_clock::now();
  if (opts.dest.empty()) throw ImportError("--dest is empty");
  if (!ends_with(opts.dest, ".h5")) throw ImportError(opts.dest + ": --dest must name a .h5 pack file");
  if (fs::exists(opts.dest) && !opts.force && !opts.dry_run) throw ImportError(opts.dest + ": exists already (use --force to replace it)");
  if (opts.channels != 0 && opts.channels != 1 && opts.channels != 3) throw ImportError("--channels must be 1 or 3");
  if (opts.resolution != 0 && !is_pow2(opts.resolution)) throw ImportError("--resolution " + std::to_string(opts.resolution) + " is not a power of two");
  if (!opts.transform.empty() && opts.transform != "center-crop" && opts.transform != "pad")
    throw ImportError("unknown --transform '" + opts.transform + "' (center-crop or pad)");
  if (opts.gzip_level < 0 || opts.gzip_level > 9) throw ImportError("--gzip must be 0..9");
  ResizeFilter filter = parse_resize_filter(opts.resize_filter);

  ImportSummary summary;
  summary.dry_run = opts.dry_run;
  ImportOptions o = opts;  // with a notice hook that also records
  o.notice = [&summary, &opts](const std::string& line) {
    summary.notices.push_back(line);
    if (opts.notice) opts.notice(line);
  };
  std::string skipped;
  summary.source_kind = detect_source_kind(opts.source, opts.source_kind, &skipped);
  if (!skipped.empty()) o.notice("skipped: " + skipped);
  const bool volume_kind = summary.source_kind == "nifti" || summary.source_kind == "dicom";
  if (!volume_kind && (!opts.channels_from.empty() || !opts.mask_glob.empty() || opts.min_foreground != 0 || !opts.keep_classes.empty() ||
                       !opts.mask_values.empty() || opts.labels == "mask"))
    throw ImportError(opts.source + ": --channels-from, --labels mask, --mask-*, --min-foreground and --keep-classes apply to volumes (NIfTI, DICOM)");
  auto source = open_source(summary.source_kind, o);

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
  source->settings(importer);
  PackWriter::Options wopts;
  wopts.force = opts.force;
  wopts.gzip_level = opts.gzip_level;
  wopts.importer_json = importer.dump();
  wopts.class_names = source->class_names();
  wopts.channel_names = source->channel_names();
  std::unique_ptr<PackWriter> writer;
  if (!opts.dry_run) writer = std::make_unique<PackWriter>(opts.dest, wopts);

  ImportProgress at;
  at.unit = source->unit();
  at.total = source->units_total();
  if (opts.progress) opts.progress(at);
  Item item;
  std::vector<uint8_t> chw;
  int64_t done = 0;
  // Dry run: what the writer would check and count.
  std::vector<std::string> first_names;
  std::map<int64_t, int64_t> class_counts;
  int res = 0, channels = 0;
  LabelKind label_kind = LabelKind::None;
  int label_dim = 0;
  while (source->next(item)) {
    std::string display = summary.source_kind == "image-folder" ? (fs::path(opts.source) / item.name).string()
                          : summary.source_kind == "zip"        ? opts.source + ":" + item.name
                                                                : item.name;
    Image img = conform(std::move(item.img), display, opts, source->is_volume(), filter);
    if (writer) {
      chw.resize(img.pixels.size());
      hwc_to_chw(img, chw.data());
      try {
        writer->add(chw.data(), img.channels, img.width, item.name, item.label);
      } catch (const PackError& e) {
        throw ImportError(display.substr(0, display.size() - item.name.size()) + e.what());
      }
    } else {
      if (done == 0) res = img.width, channels = img.channels, label_kind = item.label.kind;
      else if (img.width != res || img.channels != channels)
        throw ImportError(display + ": image is " + std::to_string(img.width) + "x" + std::to_string(img.width) + "x" + std::to_string(img.channels) +
                          ", earlier images are " + std::to_string(res) + "x" + std::to_string(res) + "x" + std::to_string(channels) +
                          " (use --channels or --resolution)");
      else if (item.label.kind != label_kind)
        throw ImportError(display + ": label kind differs from the first image's");
      if (item.label.kind == LabelKind::Class) {
        ++class_counts[item.label.cls];
        label_dim = std::max<int>(label_dim, static_cast<int>(item.label.cls) + 1);
      } else if (item.label.kind == LabelKind::Vector) {
        label_dim = static_cast<int>(item.label.vec.size());
      }
      if (first_names.size() < 5) first_names.push_back(item.name);
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
  summary.dropped = source->dropped();
  summary.images = done;
  if (done == 0) {
    std::string why;
    for (const auto& [w, n] : summary.dropped) why += (why.empty() ? " (all slices dropped: " : ", ") + w + " " + std::to_string(n);
    throw ImportError(opts.source + ": no images found" + (why.empty() ? "" : why + ")"));
  }
  if (writer) {
    summary.info = writer->commit();
  } else {
    PackInfo& info = summary.info;
    info.path = opts.dest;
    info.num_images = done;
    info.resolution = res;
    info.channels = channels;
    info.label_kind = label_kind;
    info.class_names = wopts.class_names;
    info.channel_names = wopts.channel_names;
    if (label_kind == LabelKind::Class) {
      if (!info.class_names.empty()) label_dim = std::max<int>(label_dim, static_cast<int>(info.class_names.size()));
      info.class_counts.assign(static_cast<size_t>(label_dim), 0);
      for (const auto& [c, n] : class_counts) info.class_counts[static_cast<size_t>(c)] = n;
    }
    info.label_dim = label_dim;
    auto& r = summary.report_lines;
    r.push_back("dry run: nothing is written (would write " + opts.dest + (fs::exists(opts.dest) ? ", which exists" : "") + ")");
    r.push_back("source: " + summary.source_kind + " " + fs::absolute(opts.source).lexically_normal().string());
    for (const auto& n : summary.notices) r.push_back(n);
    auto more = source->report();
    r.insert(r.end(), more.begin(), more.end());
    std::string first;
    for (const auto& n : first_names) first += (first.empty() ? "" : ", ") + n;
    r.push_back("images: " + std::to_string(done) + " (first: " + first + (done > static_cast<int64_t>(first_names.size()) ? ", ...)" : ")"));
    if (!info.channel_names.empty()) {
      std::string c;
      for (const auto& n : info.channel_names) c += (c.empty() ? "" : ", ") + n;
      r.push_back("channel names: " + c);
    }
    if (label_kind == LabelKind::Class) {
      std::string c;
      for (size_t i = 0; i < info.class_counts.size(); ++i)
        c += (i ? ", " : "") + (i < info.class_names.size() ? info.class_names[i] : std::to_string(i)) + " " + std::to_string(info.class_counts[i]);
      r.push_back("classes: " + c);
    } else {
      r.push_back(std::string("labels: ") + label_kind_name(label_kind) + (label_kind == LabelKind::Vector ? "[" + std::to_string(label_dim) + "]" : ""));
    }
    if (!summary.dropped.empty()) {
      std::string d;
      for (const auto& [w, n] : summary.dropped) d += (d.empty() ? "" : ", ") + w + " " + std::to_string(n);
      r.push_back("dropped slices: " + d);
    }
    r.push_back("output: " + std::to_string(done) + " images " + std::to_string(res) + "x" + std::to_string(res) + "x" + std::to_string(channels) +
                (opts.resolution ? " (--resolution)" : " (source size, padded to a power of two for volumes)"));
  }
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return summary;
}

}  // namespace sf::data
