// A medical image volume as the importers hand it to slicing: voxel values as float32 (rescale
// already applied), the grid's size, and where each voxel sits in the patient (an affine from
// voxel indices to RAS+ millimetres, the NIfTI/nibabel world convention: +x towards the patient's
// right, +y anterior, +z superior). NIfTI volumes (data/nifti.h) and DICOM series (data/dicom.h)
// both become a Volume; data/orient.h reorients one to the canonical RAS grid and cuts display
// slices from it.
//
// Plain value type, no I/O; reentrant.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace sf::data {

using Affine = std::array<std::array<double, 4>, 4>;  // row-major, last row 0 0 0 1

inline Affine identity_affine() {
  Affine a{};
  for (int i = 0; i < 4; ++i) a[i][i] = 1;
  return a;
}

struct Volume {
  std::string path;         // the file (NIfTI) or the series' folder or first file (DICOM)
  std::string description;  // one line for logs and --dry-run: format, data type, geometry source
  int64_t nx = 0, ny = 0, nz = 0, nt = 1;  // voxel grid (i, j, k) and time points / frames
  std::vector<float> data;  // index = i + nx * (j + ny * (k + nz * t))
  Affine affine = identity_affine();  // voxel (i, j, k, 1) -> RAS+ mm
  // False when the file carries no patient geometry (e.g. a secondary-capture DICOM image): the
  // volume is then sliced as stored (k slices, rows j, columns i) and never reoriented.
  bool has_orientation = true;
  // DICOM WindowCenter/WindowWidth of the first image (for --intensity window without values).
  bool has_window = false;
  double window_center = 0, window_width = 0;

  size_t voxels_per_frame() const { return static_cast<size_t>(nx) * ny * nz; }
  float at(int64_t i, int64_t j, int64_t k, int64_t t = 0) const {
    return data[static_cast<size_t>(i + nx * (j + ny * (k + nz * t)))];
  }
};

}  // namespace sf::data
