// CSV files and scatter plots of feature-space maps (metrics/embed.h). Torch-free: drawn with
// the Canvas of metrics/report_plot.h (its 5x7 bitmap font for the title and legend).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <stdexcept>

#include "metrics/embed.h"
#include "metrics/report_plot.h"

namespace sf::metrics {
namespace {

enum class Shape { Circle, Square, Diamond, Triangle };

Shape shape_of(int64_t cls) {
  if (cls < 0) return Shape::Circle;
  static const Shape order[] = {Shape::Circle, Shape::Square, Shape::Diamond, Shape::Triangle};
  return order[cls % 4];
}

// Is (dx, dy), relative to the centre, inside the shape of radius r?
bool inside(Shape s, double dx, double dy, double r) {
  switch (s) {
    case Shape::Circle: return dx * dx + dy * dy <= r * r;
    case Shape::Square: return std::max(std::abs(dx), std::abs(dy)) <= r * 0.85;
    case Shape::Diamond: return std::abs(dx) + std::abs(dy) <= r * 1.2;
    case Shape::Triangle: {  // pointing up, centred on its centroid
      const double h = r * 1.9, top = -h * 2 / 3, bottom = h / 3;
      if (dy < top || dy > bottom) return false;
      const double half = (dy - top) / h * r * 1.15;
      return std::abs(dx) <= half;
    }
  }
  return false;
}

// Filled marker with 4x4 supersampled edges, blended at `alpha`.
void marker(Canvas& cv, double cx, double cy, double r, Shape s, Rgb c, double alpha) {
  const int x0 = static_cast<int>(std::floor(cx - 1.5 * r)), x1 = static_cast<int>(std::ceil(cx + 1.5 * r));
  const int y0 = static_cast<int>(std::floor(cy - 1.5 * r)), y1 = static_cast<int>(std::ceil(cy + 1.5 * r));
  for (int y = y0; y <= y1; ++y)
    for (int x = x0; x <= x1; ++x) {
      int hits = 0;
      for (int sy = 0; sy < 4; ++sy)
        for (int sx = 0; sx < 4; ++sx) hits += inside(s, x + (sx + 0.5) / 4 - cx, y + (sy + 0.5) / 4 - cy, r);
      if (hits) cv.blend(x, y, c, alpha * hits / 16.0);
    }
}

Rgb source_color(const std::string& source) { return source == "real" ? palette(0) : palette(1); }

}  // namespace

void write_embedding_csv(const std::string& path, const std::vector<EmbedPoint>& points, const Embedding& e) {
  if (static_cast<int64_t>(points.size()) != e.rows || e.xy.size() != points.size() * 2)
    throw std::invalid_argument("embedding and point list differ in length");
  std::ofstream out(path);
  if (!out) throw std::runtime_error("cannot write " + path);
  out << "id,source,class,x,y\n";
  char buf[64];
  for (size_t i = 0; i < points.size(); ++i) {
    out << i << "," << points[i].source << ",";
    if (points[i].cls >= 0) out << points[i].cls;
    std::snprintf(buf, sizeof buf, ",%.9g,%.9g\n", e.xy[2 * i], e.xy[2 * i + 1]);
    out << buf;
  }
  if (!out.flush()) throw std::runtime_error("cannot write " + path);
}

data::Image render_embedding(const std::vector<EmbedPoint>& points, const Embedding& e, const std::string& title,
                             const std::vector<std::string>& class_names, int size) {
  if (e.xy.size() != points.size() * 2) throw std::invalid_argument("embedding and point list differ in length");
  Canvas cv(size, size);
  const Rgb ink{40, 40, 40}, grey{110, 110, 110};
  const int scale = size >= 600 ? 2 : 1;
  const int line_h = Canvas::text_height(scale);
  const int margin = 12 * scale;
  // Title, wrapped after ", " or " " to fit (a word longer than a line is cut).
  const int max_w = size - 2 * margin;
  std::vector<std::string> lines(1);
  for (size_t pos = 0; pos < title.size();) {
    size_t next = title.find(' ', pos);
    next = next == std::string::npos ? title.size() : next + 1;
    const std::string word = title.substr(pos, next - pos);
    std::string trial = lines.back() + word;
    while (!trial.empty() && trial.back() == ' ') trial.pop_back();
    if (!lines.back().empty() && Canvas::text_width(trial, scale) > max_w) lines.push_back("");
    lines.back() += word;
    pos = next;
  }
  int ty = margin;
  for (auto& l : lines) {
    while (!l.empty() && (l.back() == ' ' || Canvas::text_width(l, scale) > max_w)) l.pop_back();
    cv.text(margin, ty, l, scale, ink);
    ty += line_h + 2 * scale;
  }

  // Legend: sources by colour, then classes by shape.
  std::map<std::string, int64_t> per_source;
  std::map<int64_t, int64_t> per_class;
  for (const auto& p : points) {
    ++per_source[p.source];
    if (p.cls >= 0) ++per_class[p.cls];
  }
  struct Entry {
    std::string label;
    Shape shape;
    Rgb color;
  };
  std::vector<Entry> entries;
  for (const char* s : {"real", "synthetic"})
    if (per_source.count(s)) entries.push_back({std::string(s) + " (" + std::to_string(per_source[s]) + ")", Shape::Circle, source_color(s)});
  for (const auto& [cls, n] : per_class) {
    std::string name = "class " + std::to_string(cls);
    if (static_cast<size_t>(cls) < class_names.size() && !class_names[static_cast<size_t>(cls)].empty())
      name += " " + class_names[static_cast<size_t>(cls)];
    entries.push_back({name + " (" + std::to_string(n) + ")", shape_of(cls), grey});
  }
  const double legend_r = 4.0 * scale;
  int lx = margin, ly = ty + 4 * scale;
  for (const auto& en : entries) {
    const int w = static_cast<int>(2 * legend_r) + 5 * scale + Canvas::text_width(en.label, scale) + 14 * scale;
    if (lx + w > size - margin && lx > margin) {
      lx = margin;
      ly += line_h + 4 * scale;
    }
    marker(cv, lx + legend_r, ly + 3.5 * scale, legend_r, en.shape, en.color, 1);
    cv.text(lx + static_cast<int>(2 * legend_r) + 5 * scale, ly, en.label, scale, ink);
    lx += w;
  }

  // Plot area below the legend; equal scales on both axes, no axes drawn.
  const int top = ly + line_h + 10 * scale, bottom = size - margin, left = margin, right = size - margin;
  if (points.empty() || bottom - top < 20) return cv.image();
  double minx = 1e300, maxx = -1e300, miny = 1e300, maxy = -1e300;
  for (size_t i = 0; i < points.size(); ++i) {
    const double x = e.xy[2 * i], y = e.xy[2 * i + 1];
    if (!std::isfinite(x) || !std::isfinite(y)) continue;
    minx = std::min(minx, x), maxx = std::max(maxx, x), miny = std::min(miny, y), maxy = std::max(maxy, y);
  }
  if (minx > maxx) return cv.image();
  const double n = static_cast<double>(points.size());
  const double r = std::clamp(size / (4.0 * std::sqrt(n)), 2.0 * scale / 2, 5.0 * scale);
  const double spanx = std::max(maxx - minx, 1e-12), spany = std::max(maxy - miny, 1e-12);
  const double k = std::min((right - left - 2 * r) / spanx, (bottom - top - 2 * r) / spany);
  const double cx = (left + right) / 2.0, cy = (top + bottom) / 2.0, mx = (minx + maxx) / 2, my = (miny + maxy) / 2;
  // Drawn in an interleaved order so that neither source hides the other wholesale.
  std::vector<size_t> order(points.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [](size_t a, size_t b) {
    auto h = [](size_t v) { return (v * 0x9E3779B97F4A7C15ull) >> 17; };
    return h(a) < h(b);
  });
  for (size_t i : order) {
    const double x = e.xy[2 * i], y = e.xy[2 * i + 1];
    if (!std::isfinite(x) || !std::isfinite(y)) continue;
    marker(cv, cx + (x - mx) * k, cy - (y - my) * k, r, shape_of(points[i].cls), source_color(points[i].source), 0.75);
  }
  return cv.image();
}

}  // namespace sf::metrics
