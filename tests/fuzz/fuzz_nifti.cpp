// NIfTI-1/2 volumes (data/nifti.h, nifticlib), plain and gzip, then the canonical grid
// (data/orient.h) and a few display slices of every plane.
#include "data/nifti.h"
#include "data/orient.h"
#include "data/tfrecord.h"
#include "tests/fuzz/fuzz_util.h"

#include <stdexcept>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // nifticlib picks compression by the name, as the importer's callers do.
  const bool gz = size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
  const std::string path = sf::fuzz::as_named_file(data, size, gz ? "in.nii.gz" : "in.nii");
  try {
    sf::data::NiftiVolume v = sf::data::read_nifti(path);
    auto [lo, hi] = sf::data::intensity_range(v.data, sf::data::IntensityScaling{});
    for (int axis = 0; axis < 3; ++axis) {
      int64_t n = axis == 0 ? v.nx() : axis == 1 ? v.ny() : v.nz();
      for (int64_t k = 0; k < n && k < 4; ++k) sf::data::nifti_slice(v, axis, k, v.nt() - 1, lo, hi);
    }
    sf::data::Volume vol = sf::data::read_nifti_volume(path);
    try {
      const sf::data::Volume c = sf::data::to_canonical(std::move(vol));
      for (auto p : {sf::data::Plane::Axial, sf::data::Plane::Coronal, sf::data::Plane::Sagittal})
        for (int64_t s = 0; s < sf::data::plane_slice_count(c, p) && s < 3; ++s) sf::data::display_slice(c, p, s, c.nt - 1);
    } catch (const std::runtime_error&) {  // a degenerate affine (orient.h)
    }
  } catch (const sf::data::FormatError&) {
  }
  return 0;
}
