// Snapshot image grids as PNG files (reals.png, fakes*.png), with the reference's arithmetic
// (stylegan2-ada-pytorch training_loop.save_image_grid): each float sample x becomes
// rint((x - lo) * (255 / (hi - lo))) computed in float32 (the scale in double, then rounded to
// float32, as numpy does for a float32 array and a Python float), rounded half to even like
// np.rint, clipped to [0, 255]; NaN becomes 0. Image n goes to row n / gw, column n % gw.
// How the C channels of an image become PNG pixels is a ChannelView (below).
//
// Which dataset images a grid shows is sharding/grid.h (snapshot_grid). Both writers are
// reentrant, write `path.tmp-<pid>` and rename it into place, and throw ImageError with a
// one-line message naming the path.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/image.h"

namespace sf::data {

// How images of C channels are shown (snapshot grids, `styleforge generate` PNGs and GIFs):
//   map empty (default): C = 1 gray, C = 3 RGB (the reference); any other C: one gray panel per
//     channel side by side, in channel order: a cell is C * W pixels wide, channel k at x offset
//     k * W within it (gw cells of C panels per grid row).
//   map of 3 channel indices: an RGB PNG whose R, G, B are those channels (e.g. 0,1,3).
//   map of 1 channel index: a gray PNG of that channel.
struct ChannelView {
  std::vector<int> map;
  int png_channels(int c) const;  // 1 or 3
  int panels(int c) const;        // gray panels per image (1 unless the panel layout applies)
  // Throws ImageError when an index is not a channel of a C-channel image.
  void check(int c) const;
  std::string describe(int c) const;  // "RGB", "gray", "4 gray panels", "RGB from channels 0,1,3"
};
// "0,1,3" or "2"; "" or "panels" gives the default view. Throws std::invalid_argument naming the
// text (indices in 0..15, one or three of them).
ChannelView parse_channel_view(const std::string& text);

// One image [C, H, W] as the view shows it.
Image view_image(const uint8_t* chw, int c, int h, int w, const ChannelView& view = {});

// The reference's pixel arithmetic for one sample.
uint8_t grid_pixel(float x, float lo, float hi);

// nchw: n images [C, H, W] float32 back to back; n must equal gw * gh.
Image image_grid(const float* nchw, int64_t n, int c, int h, int w, float lo, float hi, int gw, int gh,
                 const ChannelView& view = {});
void write_image_grid(const std::string& path, const float* nchw, int64_t n, int c, int h, int w, float lo, float hi,
                      int gw, int gh, const ChannelView& view = {});

// Reals: uint8 images are tiled as they are (the reference's drange [0, 255] maps each value to itself).
Image image_grid(const uint8_t* nchw, int64_t n, int c, int h, int w, int gw, int gh, const ChannelView& view = {});
void write_image_grid(const std::string& path, const uint8_t* nchw, int64_t n, int c, int h, int w, int gw, int gh,
                      const ChannelView& view = {});

}  // namespace sf::data
