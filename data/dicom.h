// DICOM images and series through GDCM (libgdcm): every transfer syntax GDCM decodes (implicit and
// explicit VR little-endian, big-endian, deflate, RLE, JPEG baseline/extended/lossless, JPEG-LS,
// JPEG 2000), 8/16/32-bit stored values, signed or unsigned, single- and multi-frame.
//
// Values: the stored values with BitsStored applied (masked, sign-extended when signed), then the
// modality rescale (slope * value + intercept) of the file, or of each frame of an enhanced
// multi-frame file, as float. Photometric interpretations:
//   MONOCHROME2             as stored
//   MONOCHROME1             inverted so that higher values are brighter: v -> (min + max) - v over
//                           the BitsStored range, before the rescale; the window centre is mirrored
//                           the same way, so a window selects the same tissue
//   RGB (and YBR_RCT/ICT,   one value per pixel: the luma 0.299 R + 0.587 G + 0.114 B (ITU-R
//   decoded to RGB)         BT.601), rounded to the nearest integer
//   YBR_FULL, YBR_FULL_422, the Y sample (the same BT.601 luma)
//   YBR_PARTIAL_*
//   PALETTE COLOR and others are refused (FormatError naming the file).
// Known limit: a lossy JPEG (baseline/extended) colour file labelled RGB whose JPEG stream is
// YCbCr (as `gdcmconv --jpeg --lossy` writes them) is handed over by GDCM as YCbCr still labelled
// RGB, so its "luma" is computed from Y, Cb and Cr.
//
// Bounds: an image whose decoded pixels would exceed kMaxDicomImageBytes, or uncompressed pixel
// data shorter than the image it declares, is refused before any pixel buffer is allocated.
//
// Isolation: before GDCM sees a file, a walk over its element headers refuses sequences nested
// deeper than 64 levels and elements longer than the rest of the file (GDCM recurses and allocates
// as a file declares). GDCM then parses in a forked child process (Debian's libgdcm keeps its
// assert()s, which some damaged files reach); the result comes back through a pipe, and a child
// that dies is a FormatError naming the file.
//
// Reentrant (each call uses its own GDCM reader and child); errors throw FormatError
// (data/tfrecord.h), one line, naming the file or the series.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "data/volume.h"

namespace sf::data {

// Decoded size above which an image is refused (rows * columns * frames * samples * bytes).
constexpr uint64_t kMaxDicomImageBytes = 4ull << 30;

struct DicomImage {
  std::string path;
  std::string transfer_syntax;       // UID, e.g. "1.2.840.10008.1.2.4.90"
  std::string transfer_syntax_name;  // e.g. "JPEG 2000 Lossless"
  std::string modality;
  std::string series_uid;            // SeriesInstanceUID ("" when absent)
  std::string photometric;           // as in the file, e.g. "MONOCHROME2"
  int rows = 0, cols = 0, frames = 1, samples_per_pixel = 1;
  int bits_allocated = 0, bits_stored = 0;
  bool is_signed = false;
  double rescale_slope = 1, rescale_intercept = 0;  // of the file (of frame 0 for enhanced files)
  bool has_rescale = false;
  bool has_window = false;
  double window_center = 0, window_width = 0;  // first values; mirrored for MONOCHROME1
  int instance_number = 0;
  double slice_position = 0;  // z of ImagePositionPatient, 0 when absent

  // Geometry (LPS millimetres, as in the file). position: ImagePositionPatient of frame 0;
  // orientation: ImageOrientationPatient (row cosines, then column cosines); pixel_spacing:
  // PixelSpacing (between rows, between columns). Enhanced multi-frame files: from the shared or
  // per-frame functional groups.
  bool has_position = false, has_orientation = false, has_pixel_spacing = false;
  std::array<double, 3> position{};
  std::array<double, 6> orientation{};
  std::array<double, 2> pixel_spacing{1, 1};
  double slice_spacing = 0;  // SpacingBetweenSlices, else SliceThickness; 0 when absent
  // ImagePositionPatient of each frame of an enhanced multi-frame file (empty otherwise).
  std::vector<std::array<double, 3>> frame_positions;
  // Per-frame rescale of an enhanced multi-frame file (empty: every frame uses the file's).
  std::vector<double> frame_slopes, frame_intercepts;

  // Values before the rescale, [frames, rows, cols]: BitsStored applied, MONOCHROME1 inverted,
  // colour turned into luma (see above).
  std::vector<int32_t> pixels;
  // Rescaled values of frame f, [rows, cols].
  std::vector<float> frame_values(int f) const;
};

// True when the file starts like a DICOM Part-10 file ("DICM" at byte 128) or has a .dcm/.dicom
// suffix (any case).
bool looks_like_dicom(const std::string& path);
// One file, every frame decoded.
DicomImage read_dicom(const std::string& path);

// One series: the DICOM files sharing a SeriesInstanceUID under the source.
struct DicomSeries {
  std::string uid;                 // SeriesInstanceUID ("" when the files carry none)
  std::string root;                // the folder `files` are relative to
  std::vector<std::string> files;  // relative paths ('/' separators), sorted
  // Short name for pack image names and messages: the series' folder relative to the source ("."
  // for the source itself; the file name when the source is one file) and, when a folder holds
  // several series, "#" and the UID.
  std::string name;
};
// The series in `source` (one DICOM file, or a folder searched recursively), grouped by
// SeriesInstanceUID (files without one form a series per folder), sorted by name. Files that do
// not look like DICOM (looks_like_dicom) are ignored; a file that looks like DICOM but that GDCM
// cannot read is a FormatError naming it.
std::vector<DicomSeries> find_dicom_series(const std::string& source);
// The series as a volume (nx columns, ny rows, nz slices; one slice per frame). Slices are ordered
// by the projection of ImagePositionPatient onto the slice normal (row cosines x column cosines),
// or by InstanceNumber (then frame) when a file lacks position or orientation. With geometry,
// spacing is checked: two slices at one position, or a step over 1.5 times the median step (a
// missing slice), is a FormatError naming the series and the two files. Rows/columns must agree
// across files. The affine maps voxel (i = column, j = row, k = slice) to RAS+ mm: LPS columns
// row cosines * column spacing, column cosines * row spacing, normal * slice spacing, origin the
// first slice's position, then x and y negated. has_orientation is false without geometry.
Volume read_dicom_series(const DicomSeries& series);

}  // namespace sf::data
