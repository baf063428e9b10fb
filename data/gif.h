// Animated GIF output (giflib): the frames of `styleforge generate --interpolate`.
//
// GifWriter streams frames to a temporary file next to the destination and renames it into place
// on close(), so memory stays at one frame and a failed run leaves no half-written GIF. Gray
// frames use one global 256-level gray palette (exact); RGB frames get a 256-colour palette of
// their own from giflib's median-cut quantizer (GifQuantizeBuffer). The animation loops forever.
// Not thread-safe. Errors throw std::runtime_error naming the path.
#pragma once

#include <string>

#include "data/image.h"

struct GifFileType;

namespace sf::data {

class GifWriter {
 public:
  // delay_cs: time per frame in 1/100 s; channels 1 or 3.
  GifWriter(const std::string& path, int width, int height, int channels, int delay_cs);
  ~GifWriter();
  GifWriter(const GifWriter&) = delete;
  GifWriter& operator=(const GifWriter&) = delete;

  void add(const Image& frame);  // width x height, the writer's channels
  int frames() const { return frames_; }
  void close();                  // writes the trailer and renames the file into place

 private:
  void fail(const std::string& what, int code);
  std::string path_, tmp_;
  int width_, height_, channels_, delay_cs_;
  int frames_ = 0;
  GifFileType* gif_ = nullptr;
};

// Frame count and size of a GIF file (for tests and checks); throws on a damaged file.
struct GifInfo {
  int width = 0, height = 0, frames = 0;
};
GifInfo read_gif_info(const std::string& path);

}  // namespace sf::data
