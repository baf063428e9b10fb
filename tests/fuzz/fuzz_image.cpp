// PNG and JPEG decoding (data/image.h).
#include "data/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    sf::data::Image img = sf::data::decode_image(data, size, "fuzz.png");
    if (img.pixels.size() != static_cast<size_t>(img.width) * img.height * img.channels) __builtin_trap();
    if (img.channels >= 1 && img.channels <= 4 && img.width <= 256 && img.height <= 256) {
      sf::data::Image g = sf::data::to_channels(img, 1);
      (void)g;
    }
  } catch (const sf::data::ImageError&) {
  }
  return 0;
}
