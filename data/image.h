// In-memory 8-bit images and the codecs and geometric transforms the importers need: PNG
// (libpng, read and write), JPEG (libjpeg-turbo, read), channel conversion, center crop, zero
// padding to a square, and resampling with box or Lanczos filters (PIL's definitions).
//
// Images are plain values (HWC, row-major, 8 bits per sample) owned by whoever holds them. All
// functions are reentrant; failures throw ImageError with a one-line message naming the source.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace sf::data {

class ImageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Image {
  int width = 0, height = 0, channels = 0;  // channels: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA
  std::vector<uint8_t> pixels;              // [height, width, channels]
  uint8_t* row(int y) { return pixels.data() + static_cast<size_t>(y) * width * channels; }
  const uint8_t* row(int y) const { return pixels.data() + static_cast<size_t>(y) * width * channels; }
  std::string size_str() const;  // "24x20 RGB"
};

// True for names ending in .png, .jpg or .jpeg (any case).
bool is_image_name(const std::string& name);

// Decodes PNG or JPEG (by signature). Palette and low-bit images are expanded to 8 bits; 16-bit
// samples keep their high byte. `name` appears in error messages.
Image decode_image(const uint8_t* data, size_t n, const std::string& name);
Image read_image_file(const std::string& path);

// Encodes a PNG; compress_level 0 stores the data uncompressed (like the reference's dataset_tool).
std::vector<uint8_t> encode_png(const Image& img, int compress_level = 6);
void write_png_file(const std::string& path, const Image& img, int compress_level = 6);

// Converts to 1 (gray, ITU-R 601-2 luma as PIL's "L") or 3 (RGB) channels, dropping alpha.
Image to_channels(const Image& img, int channels);
// The largest centered square (as the reference's center-crop).
Image center_crop_square(const Image& img);
// Centers the image on a zero square of side max(width, height).
Image pad_square(const Image& img);
// Centers the image on a zero canvas of the given size (must not be smaller than the image).
Image pad_to(const Image& img, int width, int height);

enum class ResizeFilter { Box, Lanczos };
ResizeFilter parse_resize_filter(const std::string& s);  // "box" | "lanczos"
Image resize(const Image& img, int width, int height, ResizeFilter filter);

// Writes the image as [channels, height, width] into `out`.
void hwc_to_chw(const Image& img, uint8_t* out);
Image chw_to_image(const uint8_t* chw, int channels, int height, int width);

}  // namespace sf::data
