// Dataset packs (data/pack.h PackReader): open, validate, read every image, label and name.
// Only inputs in the checksummed HDF5 format (superblock >= 2, which format-2 packs always use)
// are passed on: libhdf5 itself is not hardened against crafted old-format (v0/v1) structures,
// which carry no checksums; older packs are a read-compatibility path, not a fuzzing target.
#include "data/h5.h"
#include "data/pack.h"
#include "tests/fuzz/fuzz_util.h"

#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = sf::fuzz::as_file(data, size);
  if (sf::h5::superblock_version(path) < 2) return 0;
  try {
    sf::data::PackReader r(path);
    std::vector<uint8_t> img(r.info().image_bytes());
    for (int64_t i = 0; i < r.size() && i < 64; ++i) {
      r.read_image(i, img.data());
      std::vector<float> lab(static_cast<size_t>(r.info().label_dim) + 1);
      r.label_as_float(i, lab.data());
    }
    r.names();
  } catch (const sf::data::PackError&) {
  }
  return 0;
}
