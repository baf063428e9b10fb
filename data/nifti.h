// NIfTI-1 and NIfTI-2 volumes (single-file .nii and .nii.gz) read through nifticlib.
//
// read_nifti_volume() is the main entry: the voxels as float32 with scl_slope/scl_inter applied
// when the slope is non-zero and finite (as nibabel's get_fdata; nifticlib reads non-finite
// float voxels as 0), i fastest, then j, k, t; and the voxel-to-RAS affine chosen by nibabel's
// get_best_affine rule: the sform when sform_code > 0, else the qform when qform_code > 0, else
// nibabel's Analyze-style base affine (voxel sizes with x negated, origin at the grid's centre).
//
// The header is read and checked before any voxel memory is allocated: implausible dimensions,
// a vox_offset outside the file, voxel data larger than the file can hold (for .nii.gz: larger
// than gzip can expand its size to, and at most 8 GiB), unsupported data types (complex, RGB)
// and two-file (.hdr/.img) or Analyze headers are refused with a one-line FormatError
// (data/tfrecord.h) naming the file. nifticlib's own messages on stderr are switched off.
// The format is chosen by the name (.nii / .nii.gz, any case), as nifticlib and nibabel do.
//
// Also: slicing a volume as stored along an axis and scaling intensities to uint8.
// All functions are reentrant.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "data/image.h"
#include "data/volume.h"

namespace sf::data {

struct NiftiVolume {
  std::string path;
  int version = 1;                     // 1 or 2
  std::vector<int64_t> dims;           // [nx, ny, nz, (nt, ...)] as in dim[1..dim[0]]
  std::string dtype;                   // "int16", "uint8", "float32", ...
  bool big_endian = false;
  double scl_slope = 0, scl_inter = 0;
  std::array<double, 3> pixdim{1, 1, 1};
  Affine affine = identity_affine();   // voxel -> RAS+ mm (get_best_affine, see above)
  std::string affine_source;           // "sform", "qform" or "base" (no transform coded)
  std::vector<float> data;             // i fastest: index = i + nx*(j + ny*(k + nz*t))
  int64_t nx() const { return dims.size() > 0 ? dims[0] : 1; }
  int64_t ny() const { return dims.size() > 1 ? dims[1] : 1; }
  int64_t nz() const { return dims.size() > 2 ? dims[2] : 1; }
  int64_t nt() const;                  // product of dims beyond the third (1 for 3-D)
};

// True for names ending in .nii or .nii.gz (any case).
bool is_nifti_name(const std::string& name);
NiftiVolume read_nifti(const std::string& path);
// The volume with its voxel-to-RAS affine, values as read_nifti gives them.
Volume read_nifti_volume(const std::string& path);

// Intensity scaling of one volume (or series) to uint8.
struct IntensityScaling {
  enum Mode { MinMax, Percentile, Window } mode = MinMax;
  double lo_pct = 0.5, hi_pct = 99.5;  // Percentile
  double center = 0, width = 0;        // Window (DICOM-style centre/width)
};
// The [lo, hi] range that maps to [0, 255] for these values.
std::pair<double, double> intensity_range(const std::vector<float>& values, const IntensityScaling& s);
uint8_t to_u8(float v, double lo, double hi);

// 2-D slice `index` of time point `t` along `axis` (0, 1 or 2) as a gray uint8 image, as stored:
// rows follow the higher remaining axis, columns the lower one (axis 2: rows j, columns i).
Image nifti_slice(const NiftiVolume& vol, int axis, int64_t index, int64_t t, double lo, double hi);

}  // namespace sf::data
