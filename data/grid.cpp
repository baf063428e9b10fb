#include "data/grid.h"

#include <unistd.h>

#include <cmath>
#include <algorithm>
#include <cstdio>
#include <stdexcept>

namespace sf::data {

namespace {

void check_grid(int64_t n, int c, int h, int w, int gw, int gh, const ChannelView& view) {
  if (c < 1) throw ImageError("image grid: " + std::to_string(c) + " channels");
  view.check(c);
  if (h <= 0 || w <= 0 || gw <= 0 || gh <= 0) throw ImageError("image grid: empty image or grid");
  if (n != static_cast<int64_t>(gw) * gh)
    throw ImageError("image grid: " + std::to_string(n) + " images for a " + std::to_string(gw) + "x" +
                     std::to_string(gh) + " grid");
}

// Tiles [gh, gw, C, H, W] into [gh * H, gw * panels * W, png channels] (the reference's
// reshape/transpose for C = 1 and 3), mapping each sample through `px`.
template <typename T, typename F>
Image tile(const T* nchw, int64_t n, int c, int h, int w, int gw, int gh, const ChannelView& view, F px) {
  check_grid(n, c, h, w, gw, gh, view);
  const int oc = view.png_channels(c), panels = view.panels(c);
  std::vector<int> src_ch(static_cast<size_t>(oc));  // source channel of each PNG channel (single panel)
  for (int k = 0; k < oc; ++k) src_ch[static_cast<size_t>(k)] = view.map.empty() ? k : view.map[static_cast<size_t>(k)];
  Image img;
  img.width = gw * panels * w;
  img.height = gh * h;
  img.channels = oc;
  img.pixels.resize(static_cast<size_t>(img.width) * img.height * oc);
  const size_t plane = static_cast<size_t>(h) * w;
  for (int64_t i = 0; i < n; ++i) {
    const T* src = nchw + static_cast<size_t>(i) * c * plane;
    const int gy = static_cast<int>(i / gw), gx = static_cast<int>(i % gw);
    for (int y = 0; y < h; ++y) {
      for (int p = 0; p < panels; ++p) {
        uint8_t* dst = img.row(gy * h + y) + (static_cast<size_t>(gx) * panels + p) * w * oc;
        for (int x = 0; x < w; ++x)
          for (int ch = 0; ch < oc; ++ch) {
            const int s = panels > 1 ? p : src_ch[static_cast<size_t>(ch)];
            dst[x * oc + ch] = px(src[s * plane + static_cast<size_t>(y) * w + x]);
          }
      }
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

int ChannelView::png_channels(int c) const {
  if (!map.empty()) return static_cast<int>(map.size());
  return c == 3 ? 3 : 1;
}

int ChannelView::panels(int c) const { return map.empty() && c != 1 && c != 3 ? c : 1; }

void ChannelView::check(int c) const {
  if (!map.empty() && map.size() != 1 && map.size() != 3)
    throw ImageError("channel view: " + std::to_string(map.size()) + " channels mapped (1 or 3 expected)");
  for (int k : map)
    if (k < 0 || k >= c)
      throw ImageError("channel view: channel " + std::to_string(k) + " of an image with " + std::to_string(c) +
                       (c == 1 ? " channel" : " channels"));
}

std::string ChannelView::describe(int c) const {
  if (map.empty()) return c == 3 ? "RGB" : c == 1 ? "gray" : std::to_string(c) + " gray panels";
  std::string list;
  for (int k : map) list += (list.empty() ? "" : ",") + std::to_string(k);
  return (map.size() == 3 ? "RGB from channels " : "gray from channel ") + list;
}

ChannelView parse_channel_view(const std::string& text) {
  ChannelView v;
  if (text.empty() || text == "panels") return v;
  auto bad = [&]() {
    return std::invalid_argument("channel mapping '" + text +
                                 "': expected three channel indices for R,G,B (e.g. 0,1,3), one index (gray), or panels");
  };
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t comma = std::min(text.find(',', pos), text.size());
    const std::string part = text.substr(pos, comma - pos);
    if (part.empty() || part.size() > 2 || part.find_first_not_of("0123456789") != std::string::npos) throw bad();
    const int k = std::stoi(part);
    if (k >= 16) throw bad();
    v.map.push_back(k);
    pos = comma + 1;
  }
  if (v.map.size() != 1 && v.map.size() != 3) throw bad();
  return v;
}

Image view_image(const uint8_t* chw, int c, int h, int w, const ChannelView& view) {
  return image_grid(chw, 1, c, h, w, 1, 1, view);
}

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

Image image_grid(const float* nchw, int64_t n, int c, int h, int w, float lo, float hi, int gw, int gh,
                 const ChannelView& view) {
  if (!(hi != lo)) throw ImageError("image grid: empty dynamic range");
  return tile(nchw, n, c, h, w, gw, gh, view, [&](float x) { return grid_pixel(x, lo, hi); });
}

void write_image_grid(const std::string& path, const float* nchw, int64_t n, int c, int h, int w, float lo, float hi,
                      int gw, int gh, const ChannelView& view) {
  write_atomic(path, image_grid(nchw, n, c, h, w, lo, hi, gw, gh, view));
}

Image image_grid(const uint8_t* nchw, int64_t n, int c, int h, int w, int gw, int gh, const ChannelView& view) {
  return tile(nchw, n, c, h, w, gw, gh, view, [](uint8_t x) { return x; });
}

void write_image_grid(const std::string& path, const uint8_t* nchw, int64_t n, int c, int h, int w, int gw, int gh,
                      const ChannelView& view) {
  write_atomic(path, image_grid(nchw, n, c, h, w, gw, gh, view));
}

}  // namespace sf::data
