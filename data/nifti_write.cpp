#include "data/nifti_write.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <stdexcept>

#include <nifti2_io.h>

namespace sf::data {

namespace fs = std::filesystem;

void write_nifti(const std::string& path, const Volume& v, NiftiStoreType type) {
  const bool gz = path.size() > 7 && path.compare(path.size() - 7, 7, ".nii.gz") == 0;
  const bool nii = path.size() > 4 && path.compare(path.size() - 4, 4, ".nii") == 0;
  if (!gz && !nii) throw std::runtime_error(path + ": a NIfTI file name ends in .nii or .nii.gz");
  if (v.nx < 1 || v.ny < 1 || v.nz < 1 || v.nt < 1 || v.data.size() != v.voxels_per_frame() * static_cast<size_t>(v.nt))
    throw std::runtime_error(path + ": volume size and data do not agree");
  nifti_set_debug_level(0);
  const int dtype = type == NiftiStoreType::Float32 ? DT_FLOAT32 : type == NiftiStoreType::Int16 ? DT_INT16 : DT_UINT8;
  const int64_t dims[8] = {v.nt > 1 ? 4 : 3, v.nx, v.ny, v.nz, v.nt, 1, 1, 1};
  std::unique_ptr<nifti_image, void (*)(nifti_image*)> nim(nifti_make_new_nim(dims, dtype, 1), nifti_image_free);
  if (!nim) throw std::runtime_error(path + ": cannot allocate the NIfTI image");
  const size_t n = v.data.size();
  for (size_t i = 0; i < n; ++i) {
    const float x = v.data[i];
    if (type == NiftiStoreType::Float32) static_cast<float*>(nim->data)[i] = x;
    else if (type == NiftiStoreType::Int16)
      static_cast<int16_t*>(nim->data)[i] = static_cast<int16_t>(std::clamp(std::lround(x), -32768L, 32767L));
    else static_cast<uint8_t*>(nim->data)[i] = static_cast<uint8_t>(std::clamp(std::lround(x), 0L, 255L));
  }
  nifti_dmat44 m{};
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) m.m[r][c] = v.affine[static_cast<size_t>(r)][static_cast<size_t>(c)];
  for (int c = 0; c < 3; ++c) {
    const double z = std::sqrt(m.m[0][c] * m.m[0][c] + m.m[1][c] * m.m[1][c] + m.m[2][c] * m.m[2][c]);
    nim->pixdim[c + 1] = z;
  }
  nim->dx = nim->pixdim[1], nim->dy = nim->pixdim[2], nim->dz = nim->pixdim[3];
  nim->sform_code = NIFTI_XFORM_ALIGNED_ANAT;
  nim->sto_xyz = m;
  nim->sto_ijk = nifti_dmat44_inverse(m);
  double qb, qc, qd, qx, qy, qz, dx, dy, dz, qfac;
  nifti_dmat44_to_quatern(m, &qb, &qc, &qd, &qx, &qy, &qz, &dx, &dy, &dz, &qfac);
  nim->qform_code = NIFTI_XFORM_SCANNER_ANAT;
  nim->quatern_b = qb, nim->quatern_c = qc, nim->quatern_d = qd;
  nim->qoffset_x = qx, nim->qoffset_y = qy, nim->qoffset_z = qz, nim->qfac = qfac;
  nim->qto_xyz = nifti_quatern_to_dmat44(qb, qc, qd, qx, qy, qz, dx, dy, dz, qfac);
  nim->qto_ijk = nifti_dmat44_inverse(nim->qto_xyz);
  nim->xyz_units = NIFTI_UNITS_MM;
  nim->nifti_type = NIFTI_FTYPE_NIFTI1_1;

  const fs::path dest(path);
  const std::string tmp =
      (dest.parent_path() / (".tmp-" + std::to_string(::getpid()) + "-" + dest.filename().string())).string();
  if (nifti_set_filenames(nim.get(), tmp.c_str(), 0, 1) != 0) throw std::runtime_error(path + ": bad NIfTI file name");
  nifti_image_write(nim.get());
  std::error_code ec;
  const auto size = fs::file_size(tmp, ec);
  if (ec || size < (gz ? 20u : 348u)) {
    fs::remove(tmp, ec);
    throw std::runtime_error(path + ": writing the NIfTI file failed (folder missing or not writable, or disk full)");
  }
  fs::rename(tmp, dest, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw std::runtime_error(path + ": cannot move the written file into place");
  }
}

}  // namespace sf::data
