// A small DICOM reader for uncompressed images: Part-10 files (with or without the 128-byte
// preamble) in implicit VR little-endian, explicit VR little-endian or explicit VR big-endian.
// It reads the image pixel module (rows, columns, bits, sign, samples, frames), rescale
// slope/intercept, window centre/width, modality and ordering tags. Compressed transfer syntaxes
// (JPEG, JPEG 2000, RLE, deflate) are rejected with a clear error.
//
// Reentrant; errors throw FormatError (data/tfrecord.h) naming the file.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/volume.h"

namespace sf::data {

struct DicomImage {
  std::string path;
  std::string transfer_syntax;
  std::string modality;
  int rows = 0, cols = 0, frames = 1, samples_per_pixel = 1;
  int bits_allocated = 0, bits_stored = 0;
  bool is_signed = false;
  double rescale_slope = 1, rescale_intercept = 0;
  bool has_rescale = false;
  bool has_window = false;
  double window_center = 0, window_width = 0;
  int instance_number = 0;
  double slice_position = 0;  // z of ImagePositionPatient, 0 when absent
  // Stored values (before rescale), [frames, rows, cols, samples], as the file holds them.
  std::vector<int32_t> pixels;
  // Rescaled values (slope * stored + intercept) of frame f, [rows, cols] (first sample).
  std::vector<float> frame_values(int f) const;
};

// True when the file starts like a DICOM Part-10 file or has a .dcm/.dicom suffix.
bool looks_like_dicom(const std::string& path);
DicomImage read_dicom(const std::string& path);

// One series: the DICOM files sharing a SeriesInstanceUID under the source.
struct DicomSeries {
  std::string uid;                 // SeriesInstanceUID ("" when the files carry none)
  std::string root;                // the folder `files` are relative to
  std::vector<std::string> files;  // relative paths ('/' separators), in no particular order
  // Short name for pack image names and messages: the series' folder (relative to the source)
  // and, when a folder holds several series, the UID.
  std::string name;
};
// The series in `source` (one DICOM file, or a folder searched recursively), sorted by name.
std::vector<DicomSeries> find_dicom_series(const std::string& source);
// The series as a volume: slices ordered along the slice normal by ImagePositionPatient, equal
// spacing checked (a missing slice is an error naming the series), rescale applied, the affine
// from ImagePositionPatient/ImageOrientationPatient/PixelSpacing (LPS) turned into RAS.
Volume read_dicom_series(const DicomSeries& series);

}  // namespace sf::data
