// Orientation of medical image volumes: the canonical RAS grid and display slices.
//
// to_canonical() reorders and flips a volume's voxel axes, without resampling, so that i runs
// towards the patient's right, j anterior and k superior, choosing for each voxel axis the world
// axis closest to it (the rule of nibabel's io_orientation / as_closest_canonical: the polar
// factor of the affine's direction matrix, then greedily axis 0, 1, 2, each taking the world axis
// of its largest remaining component). Oblique volumes thus become the closest axis-aligned grid.
//
// display_slice() cuts a canonical volume along an anatomical plane in the radiological display
// convention:
//   axial     seen from the feet:       patient's right on the image's left, anterior at the top
//   coronal   seen from the front:      patient's right on the image's left, superior at the top
//   sagittal  seen from the left side:  anterior on the image's left, superior at the top
// In array terms, with C the canonical voxel array C[i, j, k] (as nibabel's get_fdata() of
// as_closest_canonical()), slice s of each plane is, row r and column c:
//   axial     C[nx-1-c, ny-1-r, s]      numpy: np.flip(C[:, :, s].T)
//   coronal   C[nx-1-c, s, nz-1-r]      numpy: np.flip(C[:, s, :].T)
//   sagittal  C[s, ny-1-c, nz-1-r]      numpy: np.flip(C[s, :, :].T)
// Volumes without patient geometry (Volume::has_orientation false) are sliced as stored: plane
// axial takes k slices with rows j and columns i, coronal j slices (rows k, columns i), sagittal
// i slices (rows k, columns j).
//
// Reentrant. Errors (a degenerate affine) throw std::runtime_error naming the volume's path.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "data/volume.h"

namespace sf::data {

enum class Plane { Sagittal = 0, Coronal = 1, Axial = 2 };
// "axial" | "coronal" | "sagittal" (any case), or 0 | 1 | 2 (the canonical axis the slices are
// taken along: 0 sagittal, 1 coronal, 2 axial). Throws std::invalid_argument naming the value.
Plane parse_plane(const std::string& s);
const char* plane_name(Plane p);

struct AxisOrientation {
  int world_axis = 0;  // 0: x (R/L), 1: y (A/P), 2: z (S/I)
  int sign = 1;        // +1: the voxel index grows towards R/A/S; -1: towards L/P/I
};
// For each voxel axis i, j, k. Throws std::runtime_error when a voxel axis has no direction.
std::array<AxisOrientation, 3> io_orientation(const Affine& affine, const std::string& path = "");
// nibabel's aff2axcodes, e.g. "RAS", "LAS", "LPS".
std::string axis_codes(const Affine& affine, const std::string& path = "");

// The volume on its closest canonical (RAS) grid, affine updated. Unchanged when already RAS or
// without orientation.
Volume to_canonical(Volume v);

struct SliceShape {
  int64_t rows = 0, cols = 0;
};
int64_t plane_slice_count(const Volume& canon, Plane p);
SliceShape plane_slice_shape(const Volume& canon, Plane p);
// Slice `index` of time point `t` as [rows, cols], row-major (see the table above).
std::vector<float> display_slice(const Volume& canon, Plane p, int64_t index, int64_t t = 0);

}  // namespace sf::data
