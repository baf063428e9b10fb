// DICOM through GDCM (data/dicom.h): the nesting/length walk before GDCM, GDCM's parser and
// decoders (not instrumented), the pixel module and the frame values.
#include "data/dicom.h"
#include "data/tfrecord.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    sf::data::DicomImage d = sf::data::read_dicom(sf::fuzz::as_file(data, size));
    for (int f = 0; f < d.frames && f < 4; ++f) d.frame_values(f);
  } catch (const sf::data::FormatError&) {
  }
  return 0;
}
