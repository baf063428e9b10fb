// `styleforge pack`: builds a dataset pack (data/pack.h) from what users hold. The importer is
// chosen by what the source is:
//   folder with *-rNN.tfrecords      the TF StyleGAN2-ADA layout (largest resolution; *-rxx.labels)
//   a .tfrecords file                 one TFRecord file of that layout
//   folder or file of .nii/.nii.gz    NIfTI-1/2 volumes
//   folder or file of DICOM           DICOM series (data::find_dicom_series)
//   a .zip                            PNG/JPEG images in a zip archive
//   any other folder                  PNG/JPEG images, recursive, sorted by relative path
// A folder holding more than one of these kinds is refused unless ImportOptions::source_kind
// names the one to pack. Volumes are reoriented to the canonical RAS grid and cut into display
// slices along an anatomical plane (data/orient.h), intensities windowed per volume; labels come
// from a CSV (per volume or patient) or from lesion masks; modalities can be stacked as channels.
// Image labels come from dataset.json (the reference's {"labels": [[name, label], ...]}),
// sub-folder names, a CSV file (name,label or name,v1,v2,...), or none.
//
// pack_dataset() is the whole command as a library call (the CLI is a thin wrapper); it is
// reentrant. Errors throw std::runtime_error subclasses with one-line messages naming the file.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "data/pack.h"

namespace sf::data {

// How far pack_dataset is. Image sources count images (total known up front, -1 for a TFRecord
// file without its count); volume sources count volumes (NIfTI files, DICOM series), whose slice
// counts are known only once read, and report the images so far alongside.
struct ImportProgress {
  int64_t images = 0;         // images packed so far
  int64_t done = 0;           // in `unit`
  int64_t total = -1;         // in `unit`; -1: unknown
  const char* unit = "images";
};

struct ImportOptions {
  std::string source, dest;
  bool force = false;
  int resolution = 0;                 // 0: keep the source size (must be square and a power of two)
  int channels = 0;                   // 0: keep (all images must agree); 1 or 3 converts
  std::string resize_filter = "lanczos";
  std::string transform;              // "" | "center-crop" | "pad"
  int64_t max_images = -1;            // -1: all
  std::string labels = "auto";        // auto | none | json | folders | csv
  std::string labels_file;            // csv (or json) path for labels=csv/json
  int gzip_level = 0;
  // Which importer to use when a folder holds several kinds of supported files ("" : the one
  // kind it holds; a mixed folder is an error): image-folder | nifti | dicom | zip | tfrecords.
  std::string source_kind;
  // Go through the whole source (reading and slicing everything) but write nothing; the summary's
  // report() says what would be packed.
  bool dry_run = false;
  // Volumes (NIfTI, DICOM series): see data/README.md "Volumes".
  std::string axis = "axial";         // axial | coronal | sagittal, or 2 | 1 | 0 (canonical axes)
  int64_t slice_begin = 0, slice_end = -1;  // [begin, end) along the axis; end -1: all
  std::string intensity = "percentile";  // percentile[:LO:HI] (0.5:99.5) | window[:C:W] | minmax
  double min_foreground = 0;          // drop slices whose foreground fraction is below this
  std::string mask_glob;              // --labels mask: the mask beside each volume (file-name glob)
  std::string mask_values;            // "1,2,4": lesion values in the mask ("": any non-zero)
  int64_t mask_min_voxels = 1;        // lesion voxels a slice needs to be labelled "lesion"
  std::string keep_classes;           // "0,1": keep only slices of these classes ("": all)
  std::string channels_from;          // "t1:*_t1.nii.gz,t2:*_t2.nii.gz": modalities as channels
  // Called with each notice the user should see before packing (e.g. "skipped: ..."); may be empty.
  std::function<void(const std::string&)> notice;
  // Called after each image (may be empty): see ImportProgress.
  std::function<void(const ImportProgress&)> progress;
};

struct ImportSummary {
  std::string source_kind;  // "image-folder", "zip", "tfrecords", "nifti", "dicom"
  PackInfo info;
  double seconds = 0;
  bool dry_run = false;
  int64_t images = 0;                        // packed (or, dry run, that would be packed)
  std::map<std::string, int64_t> dropped;    // volume slices dropped, by reason
  std::vector<std::string> notices;          // as passed to ImportOptions::notice
  std::vector<std::string> report_lines;     // --dry-run: what would be packed
  std::string line() const;  // the one-line summary the CLI prints
};

// Which importer a source path selects (see the list above); throws when nothing fits, and for a
// folder holding several kinds of supported files unless `forced` names one of them (then the
// files of the other kinds are described in `*skipped`, when given).
std::string detect_source_kind(const std::string& source, const std::string& forced = "",
                               std::string* skipped = nullptr);

ImportSummary pack_dataset(const ImportOptions& opts);

// Image-folder listing as the reference's dataset_tool sorts it: every PNG/JPEG file under `dir`,
// relative paths with '/' separators, sorted by path components.
std::vector<std::string> list_image_folder(const std::string& dir);

}  // namespace sf::data
