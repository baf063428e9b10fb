// A small line-plot rasterizer for `styleforge report`: RGB canvas with anti-aliased lines,
// an embedded 5x7 bitmap font (ASCII 32..126), and render_plot() for line charts with axes,
// "nice" ticks, grid, axis labels, title and legend. Output is a data::Image (PNG via data/image.h).
//
// Plain values, no global state; all functions are reentrant. Torch-free.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/image.h"

namespace sf::metrics {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
};

class Canvas {
 public:
  Canvas(int width, int height, Rgb background = {255, 255, 255});
  int width() const { return w_; }
  int height() const { return h_; }
  // Blends `c` over pixel (x, y) with coverage alpha in [0, 1]; outside pixels are ignored.
  void blend(int x, int y, Rgb c, double alpha);
  void fill_rect(int x0, int y0, int x1, int y1, Rgb c);  // inclusive corners
  // Anti-aliased line of the given width (pixels); dash > 0 draws dashes of that length.
  void line(double x0, double y0, double x1, double y1, double width, Rgb c, double dash = 0);
  void disc(double cx, double cy, double radius, Rgb c);
  // Text with its top-left corner at (x, y); `scale` multiplies the 5x7 glyphs (cell 6x10);
  // vertical text runs bottom-to-top with (x, y) its bottom-left corner.
  void text(int x, int y, const std::string& s, int scale, Rgb c, bool vertical = false);
  static int text_width(const std::string& s, int scale);   // along the text direction
  static int text_height(int scale);                       // one line, with descenders
  const data::Image& image() const { return img_; }

 private:
  int w_, h_;
  data::Image img_;
};

struct Series {
  std::string name;
  std::vector<double> x, y;  // same length; NaN y values break the line
  Rgb color;
  bool markers = false;      // a dot at every point (sparse data such as FID)
  bool dashed = false;
};

struct PlotSpec {
  std::string title, xlabel, ylabel;
  std::vector<Series> series;
  bool log_y = false;          // log10 y axis (non-positive values are dropped)
  std::vector<double> x_marks; // dashed vertical lines (e.g. where a run was resumed)
  std::string x_mark_label;    // written next to each mark
  int width = 960, height = 540;
  std::string empty_message = "no data yet";
};

// Renders the chart; with no finite point in any series it shows the empty message instead.
data::Image render_plot(const PlotSpec& spec);

// Ticks at multiples of 1, 2 or 5 x 10^k covering [lo, hi] with about `target` intervals.
std::vector<double> nice_ticks(double lo, double hi, int target, double* step);
// Tick label with just enough decimals for `step` ("0.25", "1k" is not used: plain numbers).
std::string tick_label(double v, double step);

// A qualitative palette (colour-blind friendly), cycled.
Rgb palette(int i);

}  // namespace sf::metrics
