// Internals shared by the importer's translation units (data/import.cpp: image, zip and TFRecord
// sources and pack_dataset; data/import_volumes.cpp: NIfTI volumes and DICOM series). Not a
// public API.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "data/image.h"
#include "data/import.h"
#include "data/nifti.h"
#include "data/pack.h"

namespace sf::data::detail {

class ImportError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

bool ends_with(const std::string& s, const std::string& suf);
void sort_by_components(std::vector<std::string>& names);

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
  virtual std::vector<std::string> channel_names() const { return {}; }
  virtual bool is_volume() const { return false; }
  // Progress in the source's own unit: images, or volumes for volume sources.
  virtual const char* unit() const { return "images"; }
  virtual int64_t units_total() const { return count(); }
  virtual int64_t units_done(int64_t images) const { return images; }
  // Importer settings for the pack's importer attribute (merged into it), known before reading.
  virtual void settings(nlohmann::json& importer) const { (void)importer; }
  // Lines for --dry-run that only the source knows (per volume: orientation, shape, slices kept
  // and dropped); called after the last next().
  virtual std::vector<std::string> report() const { return {}; }
  // Slices dropped so far, by reason ("foreground", "ambiguous mask", "keep-classes").
  virtual std::map<std::string, int64_t> dropped() const { return {}; }
};

// Lines with the `what` and a few examples of `names` ("3 files: a, b, c, ...").
std::string count_and_examples(const std::vector<std::string>& names, const std::string& what, size_t first = 3);

// NIfTI volumes (kind "nifti") and DICOM series (kind "dicom").
std::unique_ptr<Source> open_volume_source(const std::string& kind, const ImportOptions& opts);

}  // namespace sf::data::detail
