#include "data/grid.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>

namespace sf::data {

namespace {

void check_grid(int64_t n, int c, int h, int w, int gw, int gh) {
  if (c != 1 && c != 3) throw ImageError("image grid: " + std::to_string(c) + " channels (1 or 3 expected)");
  if (h <= 0 || w <= 0 || gw <= 0 || gh <= 0) throw ImageError("image grid: empty image or grid");
  if (n != static_cast<int64_t>(gw) * gh)
    throw ImageError("image grid: " + std::to_string(n) + " images for a " + std::to_string(gw) + "x" +
                     std::to_string(gh) + " grid");
}

// Tiles [gh, gw, C, H, W] into [gh * H, gw * W, C] (the reference's reshape/transpose), mapping
// each sample through `px`.
template <typename T, typename F>
Image tile(const T* nchw, int64_t n, int c, int h, int w, int gw, int gh, F px) {
  check_grid(n, c, h, w, gw, gh);
  Image img;
  img.width = gw * w;
  img.height = gh * h;
  img.channels = c;
  img.pixels.resize(static_cast<size_t>(img.width) * img.height * c);
  const size_t plane = static_cast<size_t>(h) * w;
  for (int64_t i = 0; i < n; ++i) {
    const T* src = nchw + static_cast<size_t>(i) * c * plane;
    const int gy = static_cast<int>(i / gw), gx = static_cast<int>(i % gw);
    for (int y = 0; y < h; ++y) {
      uint8_t* dst = img.row(gy * h + y) + static_cast<size_t>(gx) * w * c;
      for (int x = 0; x < w; ++x)
        for (int ch = 0; ch < c; ++ch) dst[x * c + ch] = px(src[ch * plane + static_cast<size_t>(y) * w + x]);
    }
  }
  return img;
}

void write_atomic(const std::string& path, const Image& img) {
  std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  try {
    write_png_file(tmp, img);
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw ImageError(path + ": cannot rename the finished image into place");
  }
}

}  // namespace

uint8_t grid_pixel(float x, float lo, float hi) {
  // numpy: (img - lo) * (255 / (hi - lo)) in float32, the scale computed in double first.
  const float scale = static_cast<float>(255.0 / (static_cast<double>(hi) - static_cast<double>(lo)));
  // volatile keeps the two float32 roundings apart (no fused multiply-add on targets that have one).
  volatile float d = x - lo;
  float v = d * scale;
  if (std::isnan(v)) return 0;
  v = std::nearbyint(v);  // round half to even in the default rounding mode, as np.rint
  if (v < 0.0f) return 0;
  if (v > 255.0f) return 255;
  return static_cast<uint8_t>(v);
}

Image image_grid(const float* nchw, int64_t n, int c, int h, int w, float lo, float hi, int gw, int gh) {
  if (!(hi != lo)) throw ImageError("image grid: empty dynamic range");
  return tile(nchw, n, c, h, w, gw, gh, [&](float x) { return grid_pixel(x, lo, hi); });
}

void write_image_grid(const std::string& path, const float* nchw, int64_t n, int c, int h, int w, float lo, float hi,
                      int gw, int gh) {
  write_atomic(path, image_grid(nchw, n, c, h, w, lo, hi, gw, gh));
}

Image image_grid(const uint8_t* nchw, int64_t n, int c, int h, int w, int gw, int gh) {
  return tile(nchw, n, c, h, w, gw, gh, [](uint8_t x) { return x; });
}

void write_image_grid(const std::string& path, const uint8_t* nchw, int64_t n, int c, int h, int w, int gw, int gh) {
  write_atomic(path, image_grid(nchw, n, c, h, w, gw, gh));
}

}  // namespace sf::data
