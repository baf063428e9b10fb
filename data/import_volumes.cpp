// The importer's volume path (NIfTI volumes and DICOM series): one source for both. Each unit (a
// volume, or with --channels-from a patient folder's modalities) is read, reoriented to the
// canonical RAS grid (data::to_canonical), windowed per volume and modality, and cut into display
// slices along the chosen plane (data::display_slice); slices are labelled from a CSV row or from
// the unit's lesion mask and filtered by foreground, mask ambiguity and --keep-classes.
#include <fnmatch.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "data/dicom.h"
#include "data/import_internal.h"
#include "data/nifti.h"
#include "data/orient.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace sf::data::detail {

namespace {

// Smallest side of a slice taken from a volume: smaller "slices" are damaged headers or the
// wrong axis, and would be upsampled into many large images from a few bytes.
constexpr int64_t kMinSliceSide = 8;
// Otsu's threshold of a 256-bin histogram: the t maximising the between-class variance of
// [0, t] and (t, 255] (the first such t); 0 when every value is equal.
int otsu_threshold(const std::array<int64_t, 256>& hist) {
  double total = 0, sum = 0;
  for (int v = 0; v < 256; ++v) total += static_cast<double>(hist[v]), sum += static_cast<double>(v) * static_cast<double>(hist[v]);
  double w0 = 0, sum0 = 0, best = -1;
  int t_best = 0;
  for (int t = 0; t < 256; ++t) {
    w0 += static_cast<double>(hist[t]);
    sum0 += static_cast<double>(t) * static_cast<double>(hist[t]);
    const double w1 = total - w0;
    if (w0 <= 0 || w1 <= 0) continue;
    const double d = sum0 / w0 - (sum - sum0) / w1;
    const double var = w0 * w1 * d * d;
    if (var > best) best = var, t_best = t;
  }
  return t_best;
}
// Largest difference between two affines' entries (mm) that still counts as the same grid.
constexpr double kGridTolerance = 1e-3;

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t"), b = s.find_last_not_of(" \t");
  return a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) out.push_back(cur), cur.clear();
    else cur += c;
  }
  out.push_back(cur);
  return out;
}

bool parse_double(const std::string& s, double* out) {
  if (s.empty()) return false;
  char* end = nullptr;
  *out = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size() && std::isfinite(*out);
}

bool parse_int(const std::string& s, int64_t* out) {
  if (s.empty() || s.find_first_not_of("0123456789-+") != std::string::npos) return false;
  try {
    size_t pos = 0;
    *out = std::stoll(s, &pos);
    return pos == s.size();
  } catch (const std::exception&) {
    return false;
  }
}

IntensityScaling parse_intensity(const std::string& s) {
  IntensityScaling out;
  std::vector<std::string> p = split(s, ':');
  bool ok = true;
  if (p[0] == "minmax") {
    out.mode = IntensityScaling::MinMax;
    ok = p.size() == 1;
  } else if (p[0] == "percentile") {
    out.mode = IntensityScaling::Percentile;
    if (p.size() == 3)
      ok = parse_double(p[1], &out.lo_pct) && parse_double(p[2], &out.hi_pct) && out.lo_pct >= 0 && out.lo_pct < out.hi_pct &&
           out.hi_pct <= 100;
    else ok = p.size() == 1;
  } else if (p[0] == "window") {
    out.mode = IntensityScaling::Window;
    if (p.size() == 3) ok = parse_double(p[1], &out.center) && parse_double(p[2], &out.width) && out.width > 0;
    else ok = p.size() == 1;
  } else {
    ok = false;
  }
  if (!ok) throw ImportError("bad --intensity '" + s + "' (percentile[:LO:HI], window[:CENTER:WIDTH] or minmax)");
  return out;
}

json intensity_json(const IntensityScaling& s) {
  switch (s.mode) {
    case IntensityScaling::MinMax: return {{"mode", "minmax"}, {"per", "volume"}};
    case IntensityScaling::Percentile:
      return {{"mode", "percentile"}, {"lo_pct", s.lo_pct}, {"hi_pct", s.hi_pct}, {"per", "volume"}};
    case IntensityScaling::Window:
      if (s.width > 0) return {{"mode", "window"}, {"center", s.center}, {"width", s.width}};
      return {{"mode", "window"}, {"from_file", true}};
  }
  return {};
}

std::string intensity_text(const IntensityScaling& s) {
  std::ostringstream o;
  switch (s.mode) {
    case IntensityScaling::MinMax: o << "minmax per volume"; break;
    case IntensityScaling::Percentile: o << "percentile " << s.lo_pct << ":" << s.hi_pct << " per volume"; break;
    case IntensityScaling::Window:
      if (s.width > 0) o << "window center " << s.center << " width " << s.width;
      else o << "window from each DICOM series' WindowCenter/WindowWidth";
      break;
  }
  return o.str();
}

std::vector<int64_t> parse_int_list(const std::string& s, const std::string& flag) {
  std::vector<int64_t> out;
  if (s.empty()) return out;
  for (const auto& f : split(s, ',')) {
    int64_t v = 0;
    if (!parse_int(trim(f), &v)) throw ImportError("bad " + flag + " '" + s + "' (comma-separated integers)");
    out.push_back(v);
  }
  return out;
}

bool glob_match(const std::string& pattern, const std::string& name) { return fnmatch(pattern.c_str(), name.c_str(), 0) == 0; }

std::string file_name(const std::string& rel) { return fs::path(rel).filename().string(); }
std::string parent_rel(const std::string& rel) {
  std::string p = fs::path(rel).parent_path().generic_string();
  return p.empty() ? "." : p;
}
// The last component of a folder path ("a/b/" and "a/b/." give "b").
std::string dir_name(const fs::path& dir) {
  fs::path p = fs::absolute(dir).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p.filename().string();
}
std::string nifti_stem(const std::string& name) {
  if (ends_with(name, ".nii.gz")) return name.substr(0, name.size() - 7);
  if (ends_with(name, ".nii")) return name.substr(0, name.size() - 4);
  return name;
}

struct VolumeRef {
  std::string rel;   // relative to the source root ('/' separators); DICOM: the series' name
  std::string path;  // NIfTI: the file
  bool dicom = false;
  DicomSeries series;
};

Volume read_ref(const VolumeRef& r) { return r.dicom ? read_dicom_series(r.series) : read_nifti_volume(r.path); }

struct Unit {
  std::string name;               // image names' prefix; the volume's or patient folder's relative path
  std::string shown;              // in messages: a path the user can find
  std::vector<std::string> keys;  // CSV keys, in matching order
  std::vector<VolumeRef> channels;
  bool has_mask = false;
  VolumeRef mask;
  Label label;
};

// ---- CSV labels for volumes ----

struct CsvRow {
  std::string key, where, class_name;
  int line = 0;
  Label label;
};

// Rows of a labels CSV: KEY,LABEL (an integer class, a class name, or one number) or
// KEY,V1,V2,... (a vector). A first row whose key matches no volume and whose label is not a
// number is a header. Blank lines are allowed only at the end of the file; '#' starts a comment line.
std::vector<CsvRow> parse_volume_csv(const std::string& path, const std::set<std::string>& known_keys,
                                     std::vector<std::string>* class_names) {
  std::ifstream f(path);
  if (!f) throw ImportError(path + ": cannot open labels CSV");
  std::vector<std::string> lines;
  for (std::string l; std::getline(f, l);) {
    if (!l.empty() && l.back() == '\r') l.pop_back();
    lines.push_back(l);
  }
  size_t last = lines.size();
  while (last > 0 && trim(lines[last - 1]).empty()) --last;
  std::vector<CsvRow> rows;
  std::map<std::string, int> seen;
  enum Kind { Unknown, Ints, Names, Vectors } kind = Unknown;
  size_t vec_len = 0;
  int kind_line = 0;
  bool first = true;
  for (size_t i = 0; i < last; ++i) {
    const int lineno = static_cast<int>(i) + 1;
    const std::string where = path + ":" + std::to_string(lineno);
    const std::string line = trim(lines[i]);
    if (line.empty()) throw ImportError(where + ": empty row");
    if (line[0] == '#') continue;
    std::vector<std::string> cols = split(line, ',');
    for (auto& c : cols) c = trim(c);
    if (cols.size() < 2) throw ImportError(where + ": expected KEY,LABEL or KEY,V1,V2,... (got '" + line + "')");
    for (size_t c = 0; c < cols.size(); ++c)
      if (cols[c].empty()) throw ImportError(where + ": empty " + (c == 0 ? std::string("key") : "field " + std::to_string(c + 1)));
    std::string key = cols[0];
    if (key.rfind("./", 0) == 0) key = key.substr(2);
    CsvRow row;
    row.key = key;
    row.where = where;
    row.line = lineno;
    Kind k;
    int64_t iv = 0;
    double dv = 0;
    if (cols.size() == 2 && parse_int(cols[1], &iv)) {
      k = Ints;
      if (iv < 0) throw ImportError(where + ": class " + cols[1] + " is negative");
      row.label.kind = LabelKind::Class;
      row.label.cls = iv;
    } else if (cols.size() == 2 && !parse_double(cols[1], &dv)) {
      if (first && !known_keys.count(key)) {  // a header
        first = false;
        continue;
      }
      k = Names;
      row.label.kind = LabelKind::Class;
      row.class_name = cols[1];
    } else {
      k = Vectors;
      row.label.kind = LabelKind::Vector;
      for (size_t c = 1; c < cols.size(); ++c) {
        if (!parse_double(cols[c], &dv)) {
          if (first && !known_keys.count(key)) break;
          throw ImportError(where + ": label field " + std::to_string(c + 1) + " '" + cols[c] + "' is not a number");
        }
        row.label.vec.push_back(static_cast<float>(dv));
      }
      if (row.label.vec.size() + 1 != cols.size()) {  // a header
        first = false;
        continue;
      }
    }
    first = false;
    if (kind == Unknown) kind = k, vec_len = row.label.vec.size(), kind_line = lineno;
    else if (k != kind || (k == Vectors && row.label.vec.size() != vec_len))
      throw ImportError(where + ": label differs in kind from line " + std::to_string(kind_line) +
                        " (all rows: integer classes, class names, or vectors of one length)");
    if (auto it = seen.find(key); it != seen.end())
      throw ImportError(where + ": key '" + key + "' repeats line " + std::to_string(it->second));
    seen[key] = lineno;
    rows.push_back(std::move(row));
  }
  if (rows.empty()) throw ImportError(path + ": no label rows");
  if (kind == Names) {
    std::set<std::string> names;
    for (const auto& r : rows) names.insert(r.class_name);
    class_names->assign(names.begin(), names.end());
    for (auto& r : rows)
      r.label.cls = std::lower_bound(class_names->begin(), class_names->end(), r.class_name) - class_names->begin();
  }
  return rows;
}

// ---- the source ----

struct UnitReport {
  std::string name, orientation, shape, otsu;
  int64_t slices = 0, kept = 0;
  std::map<std::string, int64_t> dropped;
};

class VolumeSource : public Source {
 public:
  VolumeSource(const std::string& kind, const ImportOptions& opts)
      : kind_(kind), opts_(opts), scaling_(parse_intensity(opts.intensity)) {
    try {
      plane_ = parse_plane(opts.axis);
    } catch (const std::exception& e) {
      throw ImportError(e.what());
    }
    if (opts.min_foreground < 0 || opts.min_foreground > 1 || !std::isfinite(opts.min_foreground))
      throw ImportError("--min-foreground must be within 0..1");
    if (opts.mask_min_voxels < 1) throw ImportError("--mask-min-voxels must be at least 1");
    mask_values_ = parse_int_list(opts.mask_values, "--mask-values");
    for (int64_t c : parse_int_list(opts.keep_classes, "--keep-classes")) keep_.insert(c);
    labels_ = opts.labels == "auto" ? "none" : opts.labels;
    if (labels_ != "none" && labels_ != "csv" && labels_ != "mask" && labels_ != "folders")
      throw ImportError("--labels " + labels_ + " does not apply to volumes (none, csv, mask or folders)");
    if (labels_ == "mask" && opts.mask_glob.empty()) throw ImportError("--labels mask needs --mask-glob GLOB (e.g. '*_seg.nii.gz')");
    if (labels_ != "mask" && (!opts.mask_values.empty() || opts.mask_min_voxels != 1))
      throw ImportError("--mask-values and --mask-min-voxels need --labels mask");
    if (labels_ == "none" && !keep_.empty()) throw ImportError("--keep-classes needs class labels (--labels csv, mask or folders)");
    if (scaling_.mode == IntensityScaling::Window && scaling_.width <= 0 && kind == "nifti")
      throw ImportError("--intensity window needs CENTER:WIDTH for NIfTI volumes");
    if (kind == "dicom" && (!opts.channels_from.empty() || !opts.mask_glob.empty()))
      throw ImportError("--channels-from and --mask-glob apply to NIfTI volumes, not DICOM series");
    parse_channels();
    if (channel_names_.size() > 1 && opts.channels != 0)
      throw ImportError("--channels does not apply with --channels-from (the modalities are the channels)");
    list_units();
    if (labels_ == "csv") assign_csv_labels();
    if (labels_ == "folders") assign_folder_labels();
    if (labels_ == "mask") class_names_ = {"no-lesion", "lesion"};
    for (int64_t c : keep_)
      if (c < 0 || (!class_names_.empty() && c >= static_cast<int64_t>(class_names_.size())))
        throw ImportError("--keep-classes " + std::to_string(c) + " is not a class (" + std::to_string(class_names_.size()) + " classes)");
  }

  int64_t count() const override { return -1; }
  bool is_volume() const override { return true; }
  std::vector<std::string> class_names() const override { return class_names_; }
  std::vector<std::string> channel_names() const override { return channel_names_.size() > 1 || !opts_.channels_from.empty() ? channel_names_ : std::vector<std::string>{}; }
  const char* unit() const override { return kind_ == "dicom" ? "series" : opts_.channels_from.empty() ? "volumes" : "patients"; }
  int64_t units_total() const override { return static_cast<int64_t>(units_.size()); }
  int64_t units_done(int64_t) const override { return static_cast<int64_t>(unit_idx_) - (loaded_ ? 1 : 0); }

  void settings(json& j) const override {
    j["axis"] = plane_name(plane_);
    j["slices"] = std::to_string(opts_.slice_begin) + ":" + (opts_.slice_end < 0 ? std::string() : std::to_string(opts_.slice_end));
    j["intensity"] = intensity_json(scaling_);
    j["orientation"] = "canonical RAS (closest axis-aligned), radiological display slices";
    j["min_foreground"] = opts_.min_foreground;
    j["foreground"] = {{"rule", "windowed value (0..255) above the volume's Otsu threshold of that modality, in any channel"},
                       {"threshold", "otsu per volume and modality (256-bin histogram of the windowed values)"},
                       {"channels", "any"}};
    if (labels_ == "mask") {
      j["mask_glob"] = opts_.mask_glob;
      j["mask_values"] = mask_values_.empty() ? json("non-zero") : json(mask_values_);
      j["mask_min_voxels"] = opts_.mask_min_voxels;
      j["mask_ambiguous"] = "dropped";
    }
    if (!keep_.empty()) j["keep_classes"] = std::vector<int64_t>(keep_.begin(), keep_.end());
    if (!opts_.channels_from.empty()) {
      json ch = json::array();
      for (size_t c = 0; c < channel_names_.size(); ++c) ch.push_back({{"name", channel_names_[c]}, {"glob", channel_globs_[c]}});
      j["channels_from"] = ch;
    }
  }

  std::vector<std::string> report() const override {
    std::vector<std::string> out;
    std::vector<std::string> names;
    for (const auto& u : units_) names.push_back(u.shown);
    out.push_back(count_and_examples(names, kind_ == "dicom" ? "DICOM series" : opts_.channels_from.empty() ? "NIfTI volumes" : "patient folders"));
    for (const auto& r : reports_) {
      std::ostringstream s;
      s << "  " << r.name << ": " << r.orientation << " -> RAS " << r.shape << ", " << r.slices << " " << plane_name(plane_)
        << " slices in range, Otsu " << r.otsu << ", kept " << r.kept;
      int64_t dropped = 0;
      for (const auto& [why, n] : r.dropped) dropped += n;
      s << ", dropped " << dropped;
      if (dropped) {
        s << " (";
        bool first = true;
        for (const auto& [why, n] : r.dropped) s << (first ? "" : ", ") << why << " " << n, first = false;
        s << ")";
      }
      out.push_back(s.str());
    }
    if (!channel_names_.empty() && !opts_.channels_from.empty()) {
      std::string c;
      for (size_t i = 0; i < channel_names_.size(); ++i) c += (i ? ", " : "") + channel_names_[i] + " (" + channel_globs_[i] + ")";
      out.push_back("channels: " + std::to_string(channel_names_.size()) + ": " + c);
    }
    out.push_back("intensity: " + intensity_text(scaling_));
    std::ostringstream f;
    f << "slices: " << plane_name(plane_) << ", min foreground " << opts_.min_foreground
      << " (pixels above the volume's Otsu threshold in any channel)";
    if (labels_ == "mask")
      f << ", mask " << opts_.mask_glob << " values " << (opts_.mask_values.empty() ? "non-zero" : opts_.mask_values) << ", lesion at >= "
        << opts_.mask_min_voxels << " voxels (fewer but some: ambiguous, dropped)";
    if (!keep_.empty()) f << ", keep classes " << opts_.keep_classes;
    out.push_back(f.str());
    return out;
  }

  std::map<std::string, int64_t> dropped() const override { return dropped_; }

  bool next(Item& item) override {
    for (;;) {
      if (opts_.max_images >= 0 && emitted_ >= opts_.max_images) return false;
      if (!loaded_ || t_ >= nt_) {
        if (unit_idx_ >= units_.size()) {
          loaded_ = false;
          return false;
        }
        load(units_[unit_idx_++]);
        if (!loaded_) continue;
      }
      const int64_t k = k_, t = t_;
      if (++k_ >= end_) k_ = begin_, ++t_;
      if (emit(k, t, item)) {
        ++emitted_;
        return true;
      }
    }
  }

 private:
  void parse_channels() {
    if (opts_.channels_from.empty()) {
      channel_names_ = {""};
      channel_globs_ = {""};
      return;
    }
    for (const auto& part : split(opts_.channels_from, ',')) {
      const std::string p = trim(part);
      const auto colon = p.find(':');
      if (colon == std::string::npos || colon == 0 || colon + 1 == p.size())
        throw ImportError("bad --channels-from '" + opts_.channels_from + "' (NAME:GLOB,...; e.g. t1:*_t1.nii.gz)");
      std::string name = trim(p.substr(0, colon)), glob = trim(p.substr(colon + 1));
      if (std::find(channel_names_.begin(), channel_names_.end(), name) != channel_names_.end())
        throw ImportError("--channels-from names channel '" + name + "' twice");
      channel_names_.push_back(name);
      channel_globs_.push_back(glob);
    }
    if (channel_names_.empty() || channel_names_.size() > static_cast<size_t>(kMaxPackChannels))
      throw ImportError("--channels-from needs 1.." + std::to_string(kMaxPackChannels) + " modalities");
  }

  void list_units() {
    const std::string& src = opts_.source;
    if (kind_ == "dicom") {
      for (auto& s : find_dicom_series(src)) {
        Unit u;
        u.shown = (fs::path(s.root) / s.name).lexically_normal().string();
        // Files directly in the source folder: the folder's own name.
        u.name = s.name.empty() || s.name == "." ? dir_name(u.shown) : s.name;
        u.keys = {s.name, file_name(s.name), u.name, dir_name(fs::path(u.shown).parent_path())};
        VolumeRef r;
        r.rel = s.name;
        r.dicom = true;
        r.series = std::move(s);
        u.channels.push_back(std::move(r));
        units_.push_back(std::move(u));
      }
      if (units_.empty()) throw ImportError(src + ": no DICOM series");
      return;
    }
    // NIfTI: every .nii/.nii.gz under the folder (or beside the file, for masks).
    std::vector<std::string> all;
    std::string only;
    if (fs::is_directory(src)) {
      root_ = src;
      for (const auto& e : fs::recursive_directory_iterator(src, fs::directory_options::follow_directory_symlink))
        if (e.is_regular_file() && is_nifti_name(e.path().filename().string()))
          all.push_back(fs::relative(e.path(), src).generic_string());
    } else {
      if (!opts_.channels_from.empty()) throw ImportError(src + ": --channels-from needs a folder of patient folders (or one patient folder)");
      root_ = fs::path(src).parent_path().string();
      if (root_.empty()) root_ = ".";
      only = fs::path(src).filename().string();
      for (const auto& e : fs::directory_iterator(root_))
        if (e.is_regular_file() && is_nifti_name(e.path().filename().string())) all.push_back(e.path().filename().string());
    }
    sort_by_components(all);
    std::vector<std::string> images;
    std::map<std::string, std::vector<std::string>> masks_by_dir;
    for (const auto& rel : all) {
      if (!opts_.mask_glob.empty() && glob_match(opts_.mask_glob, file_name(rel))) masks_by_dir[parent_rel(rel)].push_back(rel);
      else if (only.empty() || rel == only) images.push_back(rel);
    }
    if (!only.empty() && images.empty()) throw ImportError(src + ": matches --mask-glob; masks are never packed as images");
    auto ref = [&](const std::string& rel) {
      VolumeRef r;
      r.rel = rel;
      r.path = (fs::path(root_) / rel).string();
      return r;
    };
    auto folder_name = [&](const std::string& dir) { return dir_name(fs::path(root_) / dir); };
    auto attach_mask = [&](Unit& u, const std::string& dir) {
      if (labels_ != "mask") return;
      auto it = masks_by_dir.find(dir);
      const std::string shown_dir = (fs::path(root_) / dir).lexically_normal().string();
      if (it == masks_by_dir.end())
        throw ImportError(u.shown + ": no mask matching '" + opts_.mask_glob + "' in " + shown_dir);
      if (it->second.size() > 1)
        throw ImportError(shown_dir + ": " + std::to_string(it->second.size()) + " files match --mask-glob '" + opts_.mask_glob +
                          "' (" + it->second[0] + ", " + it->second[1] + "); a folder holds one patient's mask");
      u.has_mask = true;
      u.mask = ref(it->second[0]);
    };
    if (opts_.channels_from.empty()) {
      if (opts_.mask_glob.empty()) {  // a BraTS-style folder packed without --mask-glob: say so
        std::vector<std::string> masky;
        for (const auto& rel : images) {
          std::string n = nifti_stem(file_name(rel));
          for (auto& ch : n) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
          if (n.find("_seg") != std::string::npos || n.find("mask") != std::string::npos) masky.push_back(rel);
        }
        if (!masky.empty())
          opts_.notice("note: " + count_and_examples(masky, "volumes that look like segmentation masks") +
                       " are packed as images; pass --mask-glob (and --labels mask) to use them as labels instead");
      }
      for (const auto& rel : images) {
        Unit u;
        u.name = rel;
        u.shown = (fs::path(root_) / rel).string();
        u.keys = {rel, file_name(rel), nifti_stem(file_name(rel)), folder_name(parent_rel(rel))};
        u.channels.push_back(ref(rel));
        attach_mask(u, parent_rel(rel));
        units_.push_back(std::move(u));
      }
    } else {
      std::map<std::string, std::vector<std::string>> by_dir;
      for (const auto& rel : images) by_dir[parent_rel(rel)].push_back(rel);
      for (const auto& [dir, files] : by_dir) {
        Unit u;
        u.name = dir == "." ? folder_name(dir) : dir;
        u.shown = (fs::path(root_) / dir).lexically_normal().string();
        u.keys = {dir, folder_name(dir)};
        std::set<std::string> used;
        for (size_t c = 0; c < channel_names_.size(); ++c) {
          std::vector<std::string> m;
          for (const auto& rel : files)
            if (glob_match(channel_globs_[c], file_name(rel))) m.push_back(rel);
          if (m.empty())
            throw ImportError(u.shown + ": no file for modality '" + channel_names_[c] + "' (--channels-from glob '" + channel_globs_[c] + "')");
          if (m.size() > 1)
            throw ImportError(u.shown + ": " + std::to_string(m.size()) + " files match modality '" + channel_names_[c] + "' (glob '" +
                              channel_globs_[c] + "'): " + file_name(m[0]) + ", " + file_name(m[1]));
          if (!used.insert(m[0]).second)
            throw ImportError((fs::path(root_) / m[0]).string() + ": matches the globs of two modalities (--channels-from)");
          u.channels.push_back(ref(m[0]));
        }
        for (const auto& rel : files)
          if (!used.count(rel)) unmatched_.push_back(rel);
        attach_mask(u, dir);
        units_.push_back(std::move(u));
      }
      if (!unmatched_.empty() && opts_.notice)
        opts_.notice("skipped: " + count_and_examples(unmatched_, "NIfTI files matching no --channels-from glob"));
    }
    if (units_.empty()) throw ImportError(src + ": no NIfTI volumes to pack (masks aside)");
  }

  // --labels folders: the class is the first folder of the volume's (series', patient folder's)
  // path under the source, e.g. tumour/BraTS_001/..., normal/IXI_002/...; class indices follow
  // the sorted folder names, as for image folders.
  void assign_folder_labels() {
    std::set<std::string> dirs;
    for (const auto& u : units_) {
      const auto slash = u.name.find('/');
      if (slash == std::string::npos || slash == 0)
        throw ImportError(u.shown + ": not inside a class folder of " + opts_.source + " (--labels folders)");
      dirs.insert(u.name.substr(0, slash));
    }
    class_names_.assign(dirs.begin(), dirs.end());
    for (auto& u : units_) {
      u.label.kind = LabelKind::Class;
      u.label.cls = std::lower_bound(class_names_.begin(), class_names_.end(), u.name.substr(0, u.name.find('/'))) -
                    class_names_.begin();
    }
  }

  void assign_csv_labels() {
    if (opts_.labels_file.empty()) throw ImportError("--labels csv needs --labels-file FILE.csv");
    std::set<std::string> known;
    for (const auto& u : units_) known.insert(u.keys.begin(), u.keys.end());
    std::vector<CsvRow> rows = parse_volume_csv(opts_.labels_file, known, &class_names_);
    std::map<std::string, const CsvRow*> by_key;
    for (const auto& r : rows) by_key[r.key] = &r;
    for (auto& u : units_) {
      std::vector<const CsvRow*> hits;
      for (const auto& k : u.keys) {
        auto it = by_key.find(k);
        if (it != by_key.end() && std::find(hits.begin(), hits.end(), it->second) == hits.end()) hits.push_back(it->second);
      }
      if (hits.empty()) {
        std::string tried;
        for (const auto& k : u.keys) tried += (tried.empty() ? "'" : ", '") + k + "'";
        throw ImportError(u.shown + ": no row of " + opts_.labels_file + " matches it (keys tried: " + tried + ")");
      }
      if (hits.size() > 1)
        throw ImportError(u.shown + ": matches two rows of " + opts_.labels_file + " (line " + std::to_string(hits[0]->line) + " '" +
                          hits[0]->key + "' and line " + std::to_string(hits[1]->line) + " '" + hits[1]->key + "')");
      u.label = hits[0]->label;
    }
  }

  static std::string grid_text(const Volume& v) {
    std::ostringstream s;
    s << v.nx << "x" << v.ny << "x" << v.nz;
    if (v.nt > 1) s << "x" << v.nt;
    return s.str();
  }
  static bool same_grid(const Volume& a, const Volume& b) {
    if (a.nx != b.nx || a.ny != b.ny || a.nz != b.nz) return false;
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 4; ++c)
        if (!(std::fabs(a.affine[r][c] - b.affine[r][c]) <= kGridTolerance)) return false;
    return true;
  }
  static std::string affine_text(const Volume& v) {
    std::ostringstream s;
    s << "[";
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 4; ++c) s << (r || c ? " " : "") << v.affine[r][c];
    s << "]";
    return s.str();
  }

  void load(const Unit& u) {
    loaded_ = false;
    cur_ = &u;
    vols_.clear();
    ranges_.clear();
    otsu_.clear();
    UnitReport rep;
    rep.name = u.name;
    for (size_t c = 0; c < u.channels.size(); ++c) {
      Volume v = read_ref(u.channels[c]);
      std::string codes = v.has_orientation ? axis_codes(v.affine, v.path) : "no orientation (as stored)";
      if (c == 0) rep.orientation = codes;
      v = to_canonical(std::move(v));
      if (c > 0) {
        const Volume& a = vols_[0];
        if (!same_grid(a, v) || a.nt != v.nt)
          throw ImportError(v.path + ": grid " + grid_text(v) + " affine " + affine_text(v) + " (canonical) does not match " + a.path + " (" +
                            grid_text(a) + " affine " + affine_text(a) + ")");
      }
      IntensityScaling s = scaling_;
      if (s.mode == IntensityScaling::Window && s.width <= 0) {
        if (!v.has_window || v.window_width <= 0)
          throw ImportError(v.path + ": --intensity window without CENTER:WIDTH, and the series has no WindowCenter/WindowWidth");
        s.center = v.window_center, s.width = v.window_width;
      }
      ranges_.push_back(intensity_range(v.data, s));  // per volume (all time points), per modality
      std::array<int64_t, 256> hist{};
      for (float x : v.data) ++hist[to_u8(x, ranges_.back().first, ranges_.back().second)];
      otsu_.push_back(otsu_threshold(hist));
      rep.otsu += (c ? "," : "") + std::to_string(otsu_.back());
      vols_.push_back(std::move(v));
    }
    const Volume& v0 = vols_[0];
    if (u.has_mask) {
      mask_ = to_canonical(read_ref(u.mask));
      if (!same_grid(v0, mask_) || mask_.nt != 1)
        throw ImportError(mask_.path + ": mask grid " + grid_text(mask_) + " affine " + affine_text(mask_) + " (canonical) does not match its image " +
                          v0.path + " (" + grid_text(v0) + " affine " + affine_text(v0) + ")");
    }
    rep.shape = grid_text(v0);
    const int64_t n = plane_slice_count(v0, plane_);
    const SliceShape sh = plane_slice_shape(v0, plane_);
    if (sh.cols < kMinSliceSide || sh.rows < kMinSliceSide)
      throw ImportError(v0.path + ": " + plane_name(plane_) + " slices are " + std::to_string(sh.cols) + "x" + std::to_string(sh.rows) +
                        ", smaller than " + std::to_string(kMinSliceSide) + "x" + std::to_string(kMinSliceSide) +
                        " (not images; damaged header or wrong --axis?)");
    begin_ = std::max<int64_t>(0, opts_.slice_begin);
    end_ = opts_.slice_end < 0 ? n : std::min(n, opts_.slice_end);
    if (begin_ >= end_)
      throw ImportError(v0.path + ": --slices " + std::to_string(opts_.slice_begin) + ":" + std::to_string(opts_.slice_end) +
                        " selects nothing (" + plane_name(plane_) + " has " + std::to_string(n) + " slices)");
    rows_ = sh.rows, cols_ = sh.cols;
    nt_ = v0.nt;
    t_ = 0;
    k_ = begin_;
    rep.slices = (end_ - begin_) * nt_;
    reports_.push_back(rep);
    loaded_ = true;
  }

  void drop(const char* why) {
    ++dropped_[why];
    ++reports_.back().dropped[why];
  }

  bool emit(int64_t k, int64_t t, Item& item) {
    const int C = static_cast<int>(vols_.size());
    const size_t npx = static_cast<size_t>(rows_ * cols_);
    Image img;
    img.width = static_cast<int>(cols_);
    img.height = static_cast<int>(rows_);
    img.channels = C;
    img.pixels.assign(npx * static_cast<size_t>(C), 0);
    for (int c = 0; c < C; ++c) {
      std::vector<float> s = display_slice(vols_[static_cast<size_t>(c)], plane_, k, t);
      const auto [lo, hi] = ranges_[static_cast<size_t>(c)];
      for (size_t i = 0; i < npx; ++i) img.pixels[i * static_cast<size_t>(C) + static_cast<size_t>(c)] = to_u8(s[i], lo, hi);
    }
    if (opts_.min_foreground > 0) {
      size_t fg = 0;
      for (size_t i = 0; i < npx; ++i)
        for (int c = 0; c < C; ++c)
          if (img.pixels[i * static_cast<size_t>(C) + static_cast<size_t>(c)] > otsu_[static_cast<size_t>(c)]) {
            ++fg;
            break;
          }
      if (static_cast<double>(fg) < opts_.min_foreground * static_cast<double>(npx)) {
        drop("foreground");
        return false;
      }
    }
    Label label = cur_->label;
    if (cur_->has_mask) {
      std::vector<float> m = display_slice(mask_, plane_, k, 0);
      int64_t lesion = 0;
      for (float v : m) {
        if (mask_values_.empty()) lesion += v != 0;
        else if (std::isfinite(v))
          lesion += std::find(mask_values_.begin(), mask_values_.end(), static_cast<int64_t>(std::lround(v))) != mask_values_.end() &&
                    std::fabs(v - std::round(v)) < 1e-3;
      }
      if (lesion > 0 && lesion < opts_.mask_min_voxels) {
        drop("ambiguous mask");
        return false;
      }
      label.kind = LabelKind::Class;
      label.cls = lesion > 0 ? 1 : 0;
    }
    if (!keep_.empty() && label.kind == LabelKind::Class && !keep_.count(label.cls)) {
      drop("keep-classes");
      return false;
    }
    ++reports_.back().kept;
    item.img = std::move(img);
    const std::string key = plane_ == Plane::Axial ? "slice=" : std::string(plane_name(plane_)) + "=";
    item.name = cur_->name + (nt_ > 1 ? "#t=" + std::to_string(t) + "," : "#") + key + std::to_string(k);
    item.label = label;
    return true;
  }

  std::string kind_;
  const ImportOptions& opts_;
  IntensityScaling scaling_;
  Plane plane_ = Plane::Axial;
  std::string labels_, root_;
  std::vector<int64_t> mask_values_;
  std::set<int64_t> keep_;
  std::vector<std::string> channel_names_, channel_globs_, class_names_, unmatched_;
  std::vector<Unit> units_;
  size_t unit_idx_ = 0;
  // The unit being sliced.
  bool loaded_ = false;
  const Unit* cur_ = nullptr;
  std::vector<Volume> vols_;
  Volume mask_;
  std::vector<std::pair<double, double>> ranges_;
  std::vector<int> otsu_;  // foreground threshold of each channel (windowed value)
  int64_t rows_ = 0, cols_ = 0, nt_ = 0, t_ = 0, k_ = 0, begin_ = 0, end_ = 0, emitted_ = 0;
  std::vector<UnitReport> reports_;
  std::map<std::string, int64_t> dropped_;
};

}  // namespace

std::unique_ptr<Source> open_volume_source(const std::string& kind, const ImportOptions& opts) {
  return std::make_unique<VolumeSource>(kind, opts);
}

}  // namespace sf::data::detail
