// TFRecord framing (lengths, masked CRC-32C) and the tf.train.Example parser (data/tfrecord.h).
// The CRCs make random records fail early, so the Example parser is also fed the raw input.
#include "data/tfrecord.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    sf::data::TfRecordReader r(sf::fuzz::as_file(data, size));
    std::string rec;
    for (int i = 0; i < 64 && r.next(rec); ++i) {
      try {
        sf::data::parse_tf_example_image(rec, "record");
      } catch (const sf::data::FormatError&) {
      }
    }
  } catch (const sf::data::FormatError&) {
  }
  try {
    sf::data::parse_tf_example_image(std::string(reinterpret_cast<const char*>(data), size), "raw");
  } catch (const sf::data::FormatError&) {
  }
  return 0;
}
