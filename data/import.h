// `styleforge pack`: builds a dataset pack (data/pack.h) from what users hold. The importer is
// chosen by what the source is:
//   folder with *-rNN.tfrecords      the TF StyleGAN2-ADA layout (largest resolution; *-rxx.labels)
//   a .tfrecords file                 one TFRecord file of that layout
//   folder or file of .nii/.nii.gz    NIfTI-1/2 volumes, sliced along --axis
//   folder or file of DICOM (.dcm)    DICOM images or series (a folder is one series per subfolder)
//   a .zip                            PNG/JPEG images in a zip archive
//   any other folder                  PNG/JPEG images, recursive, sorted by relative path
// Labels come from dataset.json (the reference's {"labels": [[name, label], ...]}), sub-folder
// names, a CSV file (name,label or name,v1,v2,...), or none.
//
// pack_dataset() is the whole command as a library call (the CLI is a thin wrapper); it is
// reentrant. Errors throw std::runtime_error subclasses with one-line messages naming the file.
#pragma once

#include <cstdint>
#include <functional>
#include <ostream>
#include <string>

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
  // Volumes (NIfTI, DICOM series)
  int axis = 2;
  int64_t slice_begin = 0, slice_end = -1;  // [begin, end) along the axis; end -1: all
  std::string intensity = "minmax";   // minmax | percentile[:LO:HI] | window:C:W (DICOM: window uses the file's when no values)
  // Called after each image (may be empty): see ImportProgress.
  std::function<void(const ImportProgress&)> progress;
};

struct ImportSummary {
  std::string source_kind;  // "image-folder", "zip", "tfrecords", "nifti", "dicom"
  PackInfo info;
  double seconds = 0;
  std::string line() const;  // the one-line summary the CLI prints
};

// Which importer a source path selects (see the list above); throws when nothing fits.
std::string detect_source_kind(const std::string& source);

ImportSummary pack_dataset(const ImportOptions& opts);

// Image-folder listing as the reference's dataset_tool sorts it: every PNG/JPEG file under `dir`,
// relative paths with '/' separators, sorted by path components.
std::vector<std::string> list_image_folder(const std::string& dir);

}  // namespace sf::data
