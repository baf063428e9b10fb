// Snapshot image grids as PNG files (reals.png, fakes*.png), with the reference's arithmetic
// (stylegan2-ada-pytorch training_loop.save_image_grid): each float sample x becomes
// rint((x - lo) * (255 / (hi - lo))) computed in float32 (the scale in double, then rounded to
// float32, as numpy does for a float32 array and a Python float), rounded half to even like
// np.rint, clipped to [0, 255]; NaN becomes 0. Image n goes to row n / gw, column n % gw.
// C = 1 writes a gray PNG, C = 3 an RGB PNG.
//
// Which dataset images a grid shows is sharding/grid.h (snapshot_grid). Both writers are
// reentrant, write `path.tmp-<pid>` and rename it into place, and throw ImageError with a
// one-line message naming the path.
#pragma once

#include <cstdint>
#include <string>

#include "data/image.h"

namespace sf::data {

// The reference's pixel arithmetic for one sample.
uint8_t grid_pixel(float x, float lo, float hi);

// nchw: n images [C, H, W] float32 back to back; n must equal gw * gh.
Image image_grid(const float* nchw, int64_t n, int c, int h, int w, float lo, float hi, int gw, int gh);
void write_image_grid(const std::string& path, const float* nchw, int64_t n, int c, int h, int w, float lo, float hi,
                      int gw, int gh);

// Reals: uint8 images are tiled as they are (the reference's drange [0, 255] maps each value to itself).
Image image_grid(const uint8_t* nchw, int64_t n, int c, int h, int w, int gw, int gh);
void write_image_grid(const std::string& path, const uint8_t* nchw, int64_t n, int c, int h, int w, int gw, int gh);

}  // namespace sf::data
