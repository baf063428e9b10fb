// numpy .npy files (data/tfrecord.h read_npy): header, dtype, shape, data size.
#include "data/tfrecord.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto a = sf::data::read_npy(sf::fuzz::as_file(data, size));
    (void)a;
  } catch (const sf::data::FormatError&) {
  }
  return 0;
}
