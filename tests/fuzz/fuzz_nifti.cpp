// NIfTI-1/2 volumes (data/nifti.h), plain and gzip, then every slice along every axis.
#include "data/nifti.h"
#include "data/tfrecord.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    sf::data::NiftiVolume v = sf::data::read_nifti(sf::fuzz::as_file(data, size));
    auto [lo, hi] = sf::data::intensity_range(v.data, sf::data::IntensityScaling{});
    for (int axis = 0; axis < 3; ++axis) {
      int64_t n = axis == 0 ? v.nx() : axis == 1 ? v.ny() : v.nz();
      for (int64_t k = 0; k < n && k < 4; ++k) sf::data::nifti_slice(v, axis, k, v.nt() - 1, lo, hi);
    }
  } catch (const sf::data::FormatError&) {
  }
  return 0;
}
