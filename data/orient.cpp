#include "data/orient.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <stdexcept>

namespace sf::data {

namespace {

using M3 = std::array<std::array<double, 3>, 3>;

double det3(const M3& m) {
  return m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) +
         m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
}

// Inverse transpose of a non-singular 3x3 matrix (cofactors / determinant).
M3 inverse_transpose(const M3& m, double det) {
  M3 c{};
  for (int r = 0; r < 3; ++r)
    for (int k = 0; k < 3; ++k) {
      const int r1 = (r + 1) % 3, r2 = (r + 2) % 3, k1 = (k + 1) % 3, k2 = (k + 2) % 3;
      c[r][k] = (m[r1][k1] * m[r2][k2] - m[r1][k2] * m[r2][k1]) / det;
    }
  return c;
}

// The orthogonal polar factor of m (the closest rotation/reflection, as U V^T of its SVD), by
// Newton's iteration X <- (X + X^-T) / 2; m itself when it is (numerically) singular.
M3 polar_factor(const M3& m) {
  M3 x = m;
  for (int it = 0; it < 100; ++it) {
    const double d = det3(x);
    if (!(std::fabs(d) > 1e-12)) return m;
    const M3 y = inverse_transpose(x, d);
    double change = 0;
    for (int r = 0; r < 3; ++r)
      for (int c = 0; c < 3; ++c) {
        const double v = 0.5 * (x[r][c] + y[r][c]);
        change = std::max(change, std::fabs(v - x[r][c]));
        x[r][c] = v;
      }
    if (change < 1e-15) break;
  }
  return x;
}

std::string where(const std::string& path) { return path.empty() ? std::string("volume") : path; }

}  // namespace

Plane parse_plane(const std::string& s) {
  std::string l;
  for (char c : s) l += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (l == "axial" || l == "2") return Plane::Axial;
  if (l == "coronal" || l == "1") return Plane::Coronal;
  if (l == "sagittal" || l == "0") return Plane::Sagittal;
  throw std::invalid_argument("--axis '" + s + "': expected axial, coronal or sagittal (or 2, 1, 0)");
}

const char* plane_name(Plane p) {
  switch (p) {
    case Plane::Axial: return "axial";
    case Plane::Coronal: return "coronal";
    case Plane::Sagittal: return "sagittal";
  }
  return "?";
}

std::array<AxisOrientation, 3> io_orientation(const Affine& a, const std::string& path) {
  M3 rs{};
  for (int c = 0; c < 3; ++c) {
    double zoom = 0;
    for (int r = 0; r < 3; ++r) zoom += a[r][c] * a[r][c];
    zoom = std::sqrt(zoom);
    if (!std::isfinite(zoom)) throw std::runtime_error(where(path) + ": affine holds a non-finite value");
    if (zoom == 0) zoom = 1;
    for (int r = 0; r < 3; ++r) rs[r][c] = a[r][c] / zoom;
  }
  M3 q = polar_factor(rs);
  std::array<AxisOrientation, 3> out{};
  for (int in = 0; in < 3; ++in) {
    int best = -1;
    double best_abs = 0;
    for (int r = 0; r < 3; ++r)
      if (std::fabs(q[r][in]) > best_abs + 1e-12) { best_abs = std::fabs(q[r][in]); best = r; }
    if (best < 0 || best_abs < 1e-8)
      throw std::runtime_error(where(path) + ": voxel axis " + std::to_string(in) +
                               " has no direction in the affine (degenerate orientation)");
    out[in].world_axis = best;
    out[in].sign = q[best][in] < 0 ? -1 : 1;
    for (int c = 0; c < 3; ++c) q[best][c] = 0;  // that world axis is taken
  }
  return out;
}

std::string axis_codes(const Affine& affine, const std::string& path) {
  std::string s;
  for (const auto& o : io_orientation(affine, path)) s += (o.sign > 0 ? "RAS" : "LPI")[o.world_axis];
  return s;
}

Volume to_canonical(Volume v) {
  if (!v.has_orientation) return v;
  const auto ornt = io_orientation(v.affine, v.path);
  bool identity = true;
  for (int in = 0; in < 3; ++in) identity = identity && ornt[in].world_axis == in && ornt[in].sign > 0;
  if (identity) return v;
  const std::array<int64_t, 3> old_dims{v.nx, v.ny, v.nz};
  std::array<int64_t, 3> dims{};
  for (int in = 0; in < 3; ++in) dims[ornt[in].world_axis] = old_dims[in];
  // Old voxel index along input axis `in` for new index a: a[out] or dims-1-a[out].
  Affine transform{};  // new voxel -> old voxel
  for (int in = 0; in < 3; ++in) {
    transform[in][ornt[in].world_axis] = ornt[in].sign;
    transform[in][3] = ornt[in].sign < 0 ? static_cast<double>(old_dims[in] - 1) : 0.0;
  }
  transform[3][3] = 1;
  Affine na{};
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c)
      for (int k = 0; k < 4; ++k) na[r][c] += v.affine[r][k] * transform[k][c];

  // Strides of the old array for each new axis, and the offset of new voxel (0, 0, 0).
  const std::array<int64_t, 3> old_stride{1, v.nx, v.nx * v.ny};
  std::array<int64_t, 3> step{};
  int64_t base = 0;
  for (int in = 0; in < 3; ++in) {
    const int out = ornt[in].world_axis;
    step[out] = ornt[in].sign * old_stride[in];
    if (ornt[in].sign < 0) base += (old_dims[in] - 1) * old_stride[in];
  }
  std::vector<float> data(v.data.size());
  const int64_t frame = v.nx * v.ny * v.nz;
  size_t o = 0;
  for (int64_t t = 0; t < v.nt; ++t)
    for (int64_t k = 0; k < dims[2]; ++k)
      for (int64_t j = 0; j < dims[1]; ++j) {
        int64_t src = t * frame + base + k * step[2] + j * step[1];
        for (int64_t i = 0; i < dims[0]; ++i, src += step[0]) data[o++] = v.data[static_cast<size_t>(src)];
      }
  v.data = std::move(data);
  v.nx = dims[0], v.ny = dims[1], v.nz = dims[2];
  v.affine = na;
  return v;
}

int64_t plane_slice_count(const Volume& v, Plane p) {
  return p == Plane::Axial ? v.nz : p == Plane::Coronal ? v.ny : v.nx;
}

SliceShape plane_slice_shape(const Volume& v, Plane p) {
  switch (p) {
    case Plane::Axial: return {v.ny, v.nx};
    case Plane::Coronal: return {v.nz, v.nx};
    case Plane::Sagittal: return {v.nz, v.ny};
  }
  return {};
}

std::vector<float> display_slice(const Volume& v, Plane p, int64_t s, int64_t t) {
  if (s < 0 || s >= plane_slice_count(v, p) || t < 0 || t >= v.nt)
    throw std::out_of_range(where(v.path) + ": slice " + std::to_string(s) + " of plane " + plane_name(p) +
                            " (time point " + std::to_string(t) + ") is outside the volume");
  const SliceShape sh = plane_slice_shape(v, p);
  std::vector<float> out(static_cast<size_t>(sh.rows * sh.cols));
  const bool flip = v.has_orientation;  // as stored: no display flips
  size_t o = 0;
  for (int64_t r = 0; r < sh.rows; ++r) {
    const int64_t rr = flip ? sh.rows - 1 - r : r;
    for (int64_t c = 0; c < sh.cols; ++c) {
      const int64_t cc = flip ? sh.cols - 1 - c : c;
      switch (p) {
        case Plane::Axial: out[o++] = v.at(cc, rr, s, t); break;
        case Plane::Coronal: out[o++] = v.at(cc, s, rr, t); break;
        case Plane::Sagittal: out[o++] = v.at(s, cc, rr, t); break;
      }
    }
  }
  return out;
}

}  // namespace sf::data
