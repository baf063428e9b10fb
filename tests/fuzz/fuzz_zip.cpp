// Zip archives (data/zip.h): central directory, entry names, stored and deflate entries.
#include "data/tfrecord.h"
#include "data/zip.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    sf::data::ZipReader z(sf::fuzz::as_file(data, size));
    for (const auto& n : z.names()) {
      try {
        auto b = z.read(n);
        (void)b;
      } catch (const sf::data::FormatError&) {
      }
    }
  } catch (const sf::data::FormatError&) {
  }
  return 0;
}
