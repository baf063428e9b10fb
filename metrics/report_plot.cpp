// The line-plot rasterizer of `styleforge report` (report_plot.h).
#include "metrics/report_plot.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <limits>

namespace sf::metrics {
namespace {

// 5x7 glyphs for ASCII 32..126, rows top to bottom ('#' set); the eighth row holds descenders.
const char* const kGlyphArt[95] = {
    "..... ..... ..... ..... ..... ..... ..... .....",  // ' '
    "..#.. ..#.. ..#.. ..#.. ..#.. ..... ..#.. .....",  // '!'
    ".#.#. .#.#. ..... ..... ..... ..... ..... .....",  // '"'
    ".#.#. .#.#. ##### .#.#. ##### .#.#. .#.#. .....",  // '#'
    "..#.. .#### #.#.. .###. ..#.# ####. ..#.. .....",  // '$'
    "##... ##..# ...#. ..#.. .#... #..## ...## .....",  // '%'
    ".##.. #..#. #.#.. .#... #.#.# #..#. .##.# .....",  // '&'
    "..#.. ..#.. ..... ..... ..... ..... ..... .....",  // '\''
    "...#. ..#.. .#... .#... .#... ..#.. ...#. .....",  // '('
    ".#... ..#.. ...#. ...#. ...#. ..#.. .#... .....",  // ')'
    "..... ..#.. #.#.# .###. #.#.# ..#.. ..... .....",  // '*'
    "..... ..#.. ..#.. ##### ..#.. ..#.. ..... .....",  // '+'
    "..... ..... ..... ..... ..... .##.. ..#.. .#...",  // ','
    "..... ..... ..... ##### ..... ..... ..... .....",  // '-'
    "..... ..... ..... ..... ..... .##.. .##.. .....",  // '.'
    "..... ....# ...#. ..#.. .#... #.... ..... .....",  // '/'
    ".###. #...# #..## #.#.# ##..# #...# .###. .....",  // '0'
    "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###. .....",  // '1'
    ".###. #...# ....# ...#. ..#.. .#... ##### .....",  // '2'
    "##### ...#. ..#.. ...#. ....# #...# .###. .....",  // '3'
    "...#. ..##. .#.#. #..#. ##### ...#. ...#. .....",  // '4'
    "##### #.... ####. ....# ....# #...# .###. .....",  // '5'
    "..##. .#... #.... ####. #...# #...# .###. .....",  // '6'
    "##### ....# ...#. ..#.. .#... .#... .#... .....",  // '7'
    ".###. #...# #...# .###. #...# #...# .###. .....",  // '8'
    ".###. #...# #...# .#### ....# ...#. .##.. .....",  // '9'
    "..... .##.. .##.. ..... .##.. .##.. ..... .....",  // ':'
    "..... .##.. .##.. ..... .##.. ..#.. .#... .....",  // ';'
    "...#. ..#.. .#... #.... .#... ..#.. ...#. .....",  // '<'
    "..... ..... ##### ..... ##### ..... ..... .....",  // '='
    ".#... ..#.. ...#. ....# ...#. ..#.. .#... .....",  // '>'
    ".###. #...# ....# ...#. ..#.. ..... ..#.. .....",  // '?'
    ".###. #...# ....# .##.# #.#.# #.#.# .###. .....",  // '@'
    ".###. #...# #...# ##### #...# #...# #...# .....",  // 'A'
    "####. #...# #...# ####. #...# #...# ####. .....",  // 'B'
    ".###. #...# #.... #.... #.... #...# .###. .....",  // 'C'
    "###.. #..#. #...# #...# #...# #..#. ###.. .....",  // 'D'
    "##### #.... #.... ####. #.... #.... ##### .....",  // 'E'
    "##### #.... #.... ####. #.... #.... #.... .....",  // 'F'
    ".###. #...# #.... #.### #...# #...# .#### .....",  // 'G'
    "#...# #...# #...# ##### #...# #...# #...# .....",  // 'H'
    ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###. .....",  // 'I'
    "..### ...#. ...#. ...#. ...#. #..#. .##.. .....",  // 'J'
    "#...# #..#. #.#.. ##... #.#.. #..#. #...# .....",  // 'K'
    "#.... #.... #.... #.... #.... #.... ##### .....",  // 'L'
    "#...# ##.## #.#.# #.#.# #...# #...# #...# .....",  // 'M'
    "#...# #...# ##..# #.#.# #..## #...# #...# .....",  // 'N'
    ".###. #...# #...# #...# #...# #...# .###. .....",  // 'O'
    "####. #...# #...# ####. #.... #.... #.... .....",  // 'P'
    ".###. #...# #...# #...# #.#.# #..#. .##.# .....",  // 'Q'
    "####. #...# #...# ####. #.#.. #..#. #...# .....",  // 'R'
    ".#### #.... #.... .###. ....# ....# ####. .....",  // 'S'
    "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#.. .....",  // 'T'
    "#...# #...# #...# #...# #...# #...# .###. .....",  // 'U'
    "#...# #...# #...# #...# #...# .#.#. ..#.. .....",  // 'V'
    "#...# #...# #...# #.#.# #.#.# #.#.# .#.#. .....",  // 'W'
    "#...# #...# .#.#. ..#.. .#.#. #...# #...# .....",  // 'X'
    "#...# #...# .#.#. ..#.. ..#.. ..#.. ..#.. .....",  // 'Y'
    "##### ....# ...#. ..#.. .#... #.... ##### .....",  // 'Z'
    ".###. .#... .#... .#... .#... .#... .###. .....",  // '['
    "..... #.... .#... ..#.. ...#. ....# ..... .....",  // '\\'
    ".###. ...#. ...#. ...#. ...#. ...#. .###. .....",  // ']'
    "..#.. .#.#. #...# ..... ..... ..... ..... .....",  // '^'
    "..... ..... ..... ..... ..... ..... ..... #####",  // '_'
    ".#... ..#.. ..... ..... ..... ..... ..... .....",  // '`'
    "..... ..... .###. ....# .#### #...# .#### .....",  // 'a'
    "#.... #.... #.##. ##..# #...# #...# ####. .....",  // 'b'
    "..... ..... .###. #.... #.... #...# .###. .....",  // 'c'
    "....# ....# .##.# #..## #...# #...# .#### .....",  // 'd'
    "..... ..... .###. #...# ##### #.... .###. .....",  // 'e'
    "..##. .#..# .#... ###.. .#... .#... .#... .....",  // 'f'
    "..... ..... .#### #...# #...# .#### ....# .###.",  // 'g'
    "#.... #.... #.##. ##..# #...# #...# #...# .....",  // 'h'
    "..#.. ..... .##.. ..#.. ..#.. ..#.. .###. .....",  // 'i'
    "...#. ..... ..##. ...#. ...#. ...#. #..#. .##..",  // 'j'
    "#.... #.... #..#. #.#.. ##... #.#.. #..#. .....",  // 'k'
    ".##.. ..#.. ..#.. ..#.. ..#.. ..#.. .###. .....",  // 'l'
    "..... ..... ##.#. #.#.# #.#.# #.#.# #.#.# .....",  // 'm'
    "..... ..... #.##. ##..# #...# #...# #...# .....",  // 'n'
    "..... ..... .###. #...# #...# #...# .###. .....",  // 'o'
    "..... ..... ####. #...# #...# ####. #.... #....",  // 'p'
    "..... ..... .#### #...# #...# .#### ....# ....#",  // 'q'
    "..... ..... #.##. ##..# #.... #.... #.... .....",  // 'r'
    "..... ..... .###. #.... .###. ....# ####. .....",  // 's'
    ".#... .#... ###.. .#... .#... .#..# ..##. .....",  // 't'
    "..... ..... #...# #...# #...# #..## .##.# .....",  // 'u'
    "..... ..... #...# #...# #...# .#.#. ..#.. .....",  // 'v'
    "..... ..... #...# #...# #.#.# #.#.# .#.#. .....",  // 'w'
    "..... ..... #...# .#.#. ..#.. .#.#. #...# .....",  // 'x'
    "..... ..... #...# #...# #...# .#### ....# .###.",  // 'y'
    "..... ..... ##### ...#. ..#.. .#... ##### .....",  // 'z'
    "...#. ..#.. ..#.. .#... ..#.. ..#.. ...#. .....",  // '{'
    "..#.. ..#.. ..#.. ..#.. ..#.. ..#.. ..#.. .....",  // '|'
    ".#... ..#.. ..#.. ...#. ..#.. ..#.. .#... .....",  // '}'
    "..... ..... .#... #.#.# ...#. ..... ..... .....",  // '~'
};

constexpr int kGlyphW = 5, kGlyphRows = 8, kCellW = 6, kCellH = 10;

using GlyphRows = std::array<uint8_t, kGlyphRows>;  // bit 4 = leftmost column

const std::array<GlyphRows, 95>& glyphs() {
  static const std::array<GlyphRows, 95> table = [] {
    std::array<GlyphRows, 95> t{};
    for (int g = 0; g < 95; ++g)
      for (int r = 0; r < kGlyphRows; ++r)
        for (int c = 0; c < kGlyphW; ++c)
          if (kGlyphArt[g][r * (kGlyphW + 1) + c] == '#') t[g][r] |= static_cast<uint8_t>(1u << (kGlyphW - 1 - c));
    return t;
  }();
  return table;
}

double clamp01(double v) { return v < 0 ? 0 : (v > 1 ? 1 : v); }

// Distance from p to segment ab and the position of p's projection along it (0..len).
double segment_distance(double px, double py, double ax, double ay, double bx, double by, double* along) {
  const double dx = bx - ax, dy = by - ay;
  const double len2 = dx * dx + dy * dy;
  double t = len2 > 0 ? ((px - ax) * dx + (py - ay) * dy) / len2 : 0;
  t = std::clamp(t, 0.0, 1.0);
  const double qx = ax + t * dx - px, qy = ay + t * dy - py;
  if (along) *along = t * std::sqrt(len2);
  return std::sqrt(qx * qx + qy * qy);
}

// Draws a polyline into a coverage buffer (max coverage, so joints are not blended twice), then
// composites it: one coverage value per pixel.
void polyline(Canvas& cv, const std::vector<std::pair<double, double>>& pts, double width, Rgb c, double dash) {
  if (pts.size() < 2) return;
  double minx = 1e30, miny = 1e30, maxx = -1e30, maxy = -1e30;
  for (auto& p : pts) minx = std::min(minx, p.first), maxx = std::max(maxx, p.first), miny = std::min(miny, p.second), maxy = std::max(maxy, p.second);
  const double pad = width / 2 + 1.5;
  const int x0 = std::max(0, static_cast<int>(std::floor(minx - pad))), x1 = std::min(cv.width() - 1, static_cast<int>(std::ceil(maxx + pad)));
  const int y0 = std::max(0, static_cast<int>(std::floor(miny - pad))), y1 = std::min(cv.height() - 1, static_cast<int>(std::ceil(maxy + pad)));
  if (x0 > x1 || y0 > y1) return;
  const int bw = x1 - x0 + 1, bh = y1 - y0 + 1;
  std::vector<float> cov(static_cast<size_t>(bw) * bh, 0.f);
  double offset = 0;  // length of the polyline before the current segment (for dashes)
  for (size_t i = 0; i + 1 < pts.size(); ++i) {
    const double ax = pts[i].first, ay = pts[i].second, bx = pts[i + 1].first, by = pts[i + 1].second;
    const double seg_len = std::hypot(bx - ax, by - ay);
    const int sx0 = std::max(x0, static_cast<int>(std::floor(std::min(ax, bx) - pad)));
    const int sx1 = std::min(x1, static_cast<int>(std::ceil(std::max(ax, bx) + pad)));
    const int sy0 = std::max(y0, static_cast<int>(std::floor(std::min(ay, by) - pad)));
    const int sy1 = std::min(y1, static_cast<int>(std::ceil(std::max(ay, by) + pad)));
    for (int y = sy0; y <= sy1; ++y)
      for (int x = sx0; x <= sx1; ++x) {
        double along = 0;
        const double d = segment_distance(x + 0.5, y + 0.5, ax, ay, bx, by, &along);
        double a = clamp01(width / 2 + 0.5 - d);
        if (a <= 0) continue;
        if (dash > 0) {
          const double phase = std::fmod(offset + along, 2 * dash);
          a *= clamp01(std::min(phase, dash - phase) + 0.5);
        }
        float& slot = cov[static_cast<size_t>(y - y0) * bw + (x - x0)];
        slot = std::max(slot, static_cast<float>(a));
      }
    offset += seg_len;
  }
  for (int y = 0; y < bh; ++y)
    for (int x = 0; x < bw; ++x)
      if (float a = cov[static_cast<size_t>(y) * bw + x]; a > 0) cv.blend(x + x0, y + y0, c, a);
}

}  // namespace

Canvas::Canvas(int width, int height, Rgb bg) : w_(width), h_(height) {
  img_.width = width;
  img_.height = height;
  img_.channels = 3;
  img_.pixels.resize(static_cast<size_t>(width) * height * 3);
  for (size_t i = 0; i < img_.pixels.size(); i += 3) {
    img_.pixels[i] = bg.r;
    img_.pixels[i + 1] = bg.g;
    img_.pixels[i + 2] = bg.b;
  }
}

void Canvas::blend(int x, int y, Rgb c, double alpha) {
  if (x < 0 || y < 0 || x >= w_ || y >= h_ || alpha <= 0) return;
  alpha = clamp01(alpha);
  uint8_t* p = img_.row(y) + x * 3;
  const uint8_t src[3] = {c.r, c.g, c.b};
  for (int k = 0; k < 3; ++k) p[k] = static_cast<uint8_t>(std::lround(p[k] * (1 - alpha) + src[k] * alpha));
}

void Canvas::fill_rect(int x0, int y0, int x1, int y1, Rgb c) {
  for (int y = std::max(0, y0); y <= std::min(h_ - 1, y1); ++y)
    for (int x = std::max(0, x0); x <= std::min(w_ - 1, x1); ++x) blend(x, y, c, 1);
}

void Canvas::line(double x0, double y0, double x1, double y1, double width, Rgb c, double dash) {
  polyline(*this, {{x0, y0}, {x1, y1}}, width, c, dash);
}

void Canvas::disc(double cx, double cy, double radius, Rgb c) {
  for (int y = static_cast<int>(std::floor(cy - radius - 1)); y <= static_cast<int>(std::ceil(cy + radius + 1)); ++y)
    for (int x = static_cast<int>(std::floor(cx - radius - 1)); x <= static_cast<int>(std::ceil(cx + radius + 1)); ++x)
      blend(x, y, c, clamp01(radius + 0.5 - std::hypot(x + 0.5 - cx, y + 0.5 - cy)));
}

int Canvas::text_width(const std::string& s, int scale) {
  return s.empty() ? 0 : (static_cast<int>(s.size()) * kCellW - 1) * scale;
}
int Canvas::text_height(int scale) { return kCellH * scale; }

void Canvas::text(int x, int y, const std::string& s, int scale, Rgb c, bool vertical) {
  const auto& g = glyphs();
  for (size_t i = 0; i < s.size(); ++i) {
    unsigned char ch = static_cast<unsigned char>(s[i]);
    if (ch < 32 || ch > 126) ch = '?';
    const GlyphRows& rows = g[ch - 32];
    for (int r = 0; r < kGlyphRows; ++r)
      for (int col = 0; col < kGlyphW; ++col) {
        if (!(rows[r] >> (kGlyphW - 1 - col) & 1)) continue;
        // Glyph pixel (u, v): u along the text, v down from the top of the line.
        const int u = static_cast<int>(i) * kCellW + col, v = r;
        for (int dy = 0; dy < scale; ++dy)
          for (int dx = 0; dx < scale; ++dx) {
            if (!vertical)
              blend(x + u * scale + dx, y + v * scale + dy, c, 1);
            else  // rotated 90 degrees counter-clockwise: along the text is up
              blend(x + v * scale + dy, y - u * scale - dx, c, 1);
          }
      }
  }
}

Rgb palette(int i) {
  // Okabe-Ito colours, reordered so the first ones contrast most.
  static const Rgb p[] = {{0, 114, 178}, {213, 94, 0}, {0, 158, 115}, {204, 121, 167},
                          {230, 159, 0}, {86, 180, 233}, {0, 0, 0}, {240, 228, 66}};
  return p[((i % 8) + 8) % 8];
}

std::vector<double> nice_ticks(double lo, double hi, int target, double* step_out) {
  if (!(hi > lo)) hi = lo + 1;
  const double raw = (hi - lo) / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * mag * 1.0000001) {
      step = m * mag;
      break;
    }
  std::vector<double> ticks;
  for (double t = std::ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step)
    ticks.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);
  if (step_out) *step_out = step;
  return ticks;
}

std::string tick_label(double v, double step) {
  char buf[32];
  const double a = std::abs(v);
  if ((a >= 1e6 || (a > 0 && a < 1e-4)) || step < 1e-5) {
    std::snprintf(buf, sizeof buf, "%.3g", v);
    return buf;
  }
  const int decimals = std::max(0, static_cast<int>(std::ceil(-std::log10(step) - 1e-9)));
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

data::Image render_plot(const PlotSpec& spec) {
  const Rgb ink{40, 40, 40}, grid{225, 225, 225}, frame{110, 110, 110};
  const int S = 2;  // font scale
  Canvas cv(spec.width, spec.height);
  auto ty = [&](double y) { return spec.log_y ? (y > 0 ? std::log10(y) : std::numeric_limits<double>::quiet_NaN()) : y; };

  double xmin = 1e300, xmax = -1e300, ymin = 1e300, ymax = -1e300;
  for (const auto& s : spec.series)
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      const double y = ty(s.y[i]);
      if (!std::isfinite(s.x[i]) || !std::isfinite(y)) continue;
      xmin = std::min(xmin, s.x[i]), xmax = std::max(xmax, s.x[i]);
      ymin = std::min(ymin, y), ymax = std::max(ymax, y);
    }
  const bool empty = xmin > xmax;

  // Title and legend rows at the top.
  int top = 12;
  cv.text((spec.width - Canvas::text_width(spec.title, S)) / 2, top, spec.title, S, ink);
  top += Canvas::text_height(S) + 8;
  {
    int lx = 70, row_h = Canvas::text_height(S) + 4;
    bool any = false;
    for (const auto& s : spec.series) {
      if (s.name.empty()) continue;
      const int item_w = 34 + Canvas::text_width(s.name, S) + 22;
      if (lx + item_w > spec.width - 10 && lx > 70) lx = 70, top += row_h;
      const int cy = top + Canvas::text_height(S) / 2 - 3;
      cv.line(lx, cy, lx + 26, cy, 3, s.color, s.dashed ? 6 : 0);
      if (s.markers) cv.disc(lx + 13, cy, 4, s.color);
      cv.text(lx + 34, top, s.name, S, ink);
      lx += item_w;
      any = true;
    }
    if (any) top += row_h + 6;
  }

  // Axis ranges and ticks.
  if (empty) xmin = 0, xmax = 1, ymin = 0, ymax = 1;
  if (xmax - xmin < 1e-12) {
    xmin -= 0.5, xmax += 0.5;
  } else {  // a little room so that lines and markers at the ends stay off the frame
    const double d = (xmax - xmin) * 0.02;
    xmin -= d, xmax += d;
  }
  if (ymax - ymin < 1e-12) {
    const double d = std::max(1e-3, std::abs(ymin) * 0.1);
    ymin -= d, ymax += d;
  } else if (!spec.log_y) {
    const double d = (ymax - ymin) * 0.05;
    ymin -= d, ymax += d;
  } else {
    ymin -= 0.02 * (ymax - ymin), ymax += 0.02 * (ymax - ymin);
  }
  double xstep = 1, ystep = 1;
  std::vector<double> xt, yt;
  std::vector<std::string> ylabels;
  if (empty) {
    // No axes to label: just the frame and the message.
  } else if (spec.log_y) {
    xt = nice_ticks(xmin, xmax, 8, &xstep);
    // Decades, plus 2 and 5 times them when the range spans few decades.
    const bool fine = ymax - ymin < 2.5;
    for (int k = static_cast<int>(std::floor(ymin)); k <= static_cast<int>(std::ceil(ymax)); ++k)
      for (double m : {1.0, 2.0, 5.0}) {
        if (m != 1.0 && !fine) continue;
        const double v = std::log10(m) + k;
        if (v < ymin || v > ymax) continue;
        yt.push_back(v);
        char buf[32];
        std::snprintf(buf, sizeof buf, "%g", m * std::pow(10.0, k));
        ylabels.push_back(buf);
      }
  } else {
    xt = nice_ticks(xmin, xmax, 8, &xstep);
    yt = nice_ticks(ymin, ymax, 6, &ystep);
    for (double v : yt) ylabels.push_back(tick_label(v, ystep));
  }

  int ylabel_w = 0;
  for (const auto& l : ylabels) ylabel_w = std::max(ylabel_w, Canvas::text_width(l, S));
  const int left = 16 + Canvas::text_height(S) + 10 + ylabel_w + 10;
  const int right = spec.width - 24;
  const int bottom = spec.height - (Canvas::text_height(S) * 2 + 26);
  const int plot_top = top + 4;
  auto px = [&](double x) { return left + (x - xmin) / (xmax - xmin) * (right - left); };
  auto py = [&](double y) { return bottom - (y - ymin) / (ymax - ymin) * (bottom - plot_top); };

  // Grid, frame, tick labels.
  for (double v : xt) cv.line(px(v), plot_top, px(v), bottom, 1, grid);
  for (double v : yt) cv.line(left, py(v), right, py(v), 1, grid);
  cv.line(left, plot_top, left, bottom, 1.5, frame);
  cv.line(left, bottom, right, bottom, 1.5, frame);
  cv.line(right, plot_top, right, bottom, 1, frame);
  cv.line(left, plot_top, right, plot_top, 1, frame);
  for (double v : xt) {
    const std::string l = tick_label(v, xstep);
    cv.line(px(v), bottom, px(v), bottom + 5, 1.5, frame);
    cv.text(static_cast<int>(px(v)) - Canvas::text_width(l, S) / 2, bottom + 9, l, S, ink);
  }
  for (size_t i = 0; i < yt.size(); ++i) {
    cv.line(left - 5, py(yt[i]), left, py(yt[i]), 1.5, frame);
    cv.text(left - 9 - Canvas::text_width(ylabels[i], S), static_cast<int>(py(yt[i])) - 7 * S / 2 - 1, ylabels[i], S, ink);
  }
  cv.text((left + right - Canvas::text_width(spec.xlabel, S)) / 2, spec.height - Canvas::text_height(S) - 6, spec.xlabel, S, ink);
  cv.text(16, (plot_top + bottom + Canvas::text_width(spec.ylabel, S)) / 2, spec.ylabel, S, ink, true);

  if (empty) {
    cv.text((left + right - Canvas::text_width(spec.empty_message, S)) / 2, (plot_top + bottom) / 2 - 7, spec.empty_message, S,
            {150, 150, 150});
    return cv.image();
  }
  for (double m : spec.x_marks) {
    if (m < xmin || m > xmax) continue;
    cv.line(px(m), plot_top, px(m), bottom, 1.5, {150, 150, 150}, 5);
    if (!spec.x_mark_label.empty()) cv.text(static_cast<int>(px(m)) + 5, plot_top + 6, spec.x_mark_label, S, {130, 130, 130});
  }
  for (const auto& s : spec.series) {
    std::vector<std::pair<double, double>> run;
    auto flush = [&] {
      if (run.size() >= 2) polyline(cv, run, 2.5, s.color, s.dashed ? 8 : 0);
      run.clear();
    };
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      const double y = ty(s.y[i]);
      if (!std::isfinite(s.x[i]) || !std::isfinite(y)) {
        flush();
        continue;
      }
      run.emplace_back(px(s.x[i]), py(y));
      if (s.markers) cv.disc(px(s.x[i]), py(y), 4, s.color);
    }
    if (run.size() == 1 && !s.markers) cv.disc(run[0].first, run[0].second, 3, s.color);
    flush();
  }
  return cv.image();
}

}  // namespace sf::metrics
