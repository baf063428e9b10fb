#include "data/gif.h"

#include <fcntl.h>
#include <gif_lib.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <vector>

#include "data/atomic_file.h"

namespace fs = std::filesystem;

namespace sf::data {
namespace {

std::string gif_error(int code) {
  const char* s = GifErrorString(code);
  return s ? s : "giflib error " + std::to_string(code);
}

}  // namespace

GifWriter::GifWriter(const std::string& path, int width, int height, int channels, int delay_cs)
    : path_(path), tmp_(temp_name_for(path)), width_(width), height_(height), channels_(channels), delay_cs_(delay_cs) {
  if (width < 1 || height < 1 || width > 65535 || height > 65535)
    throw std::runtime_error(path + ": GIF frames must be 1..65535 pixels wide and high");
  if (channels != 1 && channels != 3) throw std::runtime_error(path + ": GIF frames must be gray or RGB");
  // Our own open(): giflib's EGifOpenFileName creates files readable by the owner only.
  const int fd = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) throw std::runtime_error(path + ": cannot create the GIF (" + std::strerror(errno) + ")");
  int err = 0;
  gif_ = EGifOpenFileHandle(fd, &err);
  if (!gif_) {
    ::close(fd);
    std::error_code ec;
    fs::remove(tmp_, ec);
    throw std::runtime_error(path + ": cannot create the GIF (" + gif_error(err) + ")");
  }
  EGifSetGifVersion(gif_, true);  // GIF89a: frame delays and looping
  ColorMapObject* gray = nullptr;
  if (channels_ == 1) {
    std::vector<GifColorType> colors(256);
    for (int i = 0; i < 256; ++i) colors[i] = {static_cast<GifByteType>(i), static_cast<GifByteType>(i), static_cast<GifByteType>(i)};
    gray = GifMakeMapObject(256, colors.data());
  }
  const int rc = EGifPutScreenDesc(gif_, width_, height_, 8, 0, gray);
  if (gray) GifFreeMapObject(gray);
  if (rc != GIF_OK) fail("screen descriptor", gif_->Error);
  // The NETSCAPE2.0 application extension: loop count 0 (forever).
  static const char kApp[] = "NETSCAPE2.0";
  GifByteType loop[3] = {1, 0, 0};
  if (EGifPutExtensionLeader(gif_, APPLICATION_EXT_FUNC_CODE) != GIF_OK ||
      EGifPutExtensionBlock(gif_, 11, kApp) != GIF_OK || EGifPutExtensionBlock(gif_, 3, loop) != GIF_OK ||
      EGifPutExtensionTrailer(gif_) != GIF_OK)
    fail("loop extension", gif_->Error);
}

GifWriter::~GifWriter() {
  if (gif_) {
    int err = 0;
    EGifCloseFile(gif_, &err);
    std::error_code ec;
    fs::remove(tmp_, ec);
  }
}

void GifWriter::fail(const std::string& what, int code) {
  throw std::runtime_error(path_ + ": writing the GIF failed at the " + what + " (" + gif_error(code) + ")");
}

void GifWriter::add(const Image& f) {
  if (!gif_) throw std::runtime_error(path_ + ": the GIF is closed");
  if (f.width != width_ || f.height != height_ || f.channels != channels_)
    throw std::runtime_error(path_ + ": frame is " + f.size_str() + ", the GIF is " + std::to_string(width_) + "x" +
                             std::to_string(height_));
  GraphicsControlBlock gcb{};
  gcb.DisposalMode = DISPOSE_DO_NOT;
  gcb.UserInputFlag = false;
  gcb.DelayTime = delay_cs_;
  gcb.TransparentColor = NO_TRANSPARENT_COLOR;
  GifByteType ext[4];
  EGifGCBToExtension(&gcb, ext);
  if (EGifPutExtension(gif_, GRAPHICS_EXT_FUNC_CODE, 4, ext) != GIF_OK) fail("frame delay", gif_->Error);
  const size_t n = static_cast<size_t>(width_) * height_;
  std::vector<GifByteType> idx;
  ColorMapObject* local = nullptr;
  if (channels_ == 1) {
    idx.assign(f.pixels.begin(), f.pixels.end());
  } else {
    std::vector<GifByteType> r(n), g(n), b(n);
    for (size_t i = 0; i < n; ++i) r[i] = f.pixels[3 * i], g[i] = f.pixels[3 * i + 1], b[i] = f.pixels[3 * i + 2];
    idx.resize(n);
    std::vector<GifColorType> colors(256, GifColorType{0, 0, 0});
    int size = 256;
    if (GifQuantizeBuffer(static_cast<unsigned>(width_), static_cast<unsigned>(height_), &size, r.data(), g.data(), b.data(),
                          idx.data(), colors.data()) != GIF_OK)
      throw std::runtime_error(path_ + ": colour quantization of frame " + std::to_string(frames_) + " failed");
    local = GifMakeMapObject(256, colors.data());
    if (!local) throw std::runtime_error(path_ + ": out of memory for a GIF palette");
  }
  int rc = EGifPutImageDesc(gif_, 0, 0, width_, height_, false, local);
  if (local) GifFreeMapObject(local);
  if (rc != GIF_OK) fail("image descriptor of frame " + std::to_string(frames_), gif_->Error);
  for (int y = 0; y < height_; ++y)
    if (EGifPutLine(gif_, idx.data() + static_cast<size_t>(y) * width_, width_) != GIF_OK)
      fail("pixels of frame " + std::to_string(frames_), gif_->Error);
  ++frames_;
}

void GifWriter::close() {
  if (!gif_) return;
  int err = 0;
  const int rc = EGifCloseFile(gif_, &err);
  gif_ = nullptr;
  if (rc != GIF_OK) {
    std::error_code ec;
    fs::remove(tmp_, ec);
    throw std::runtime_error(path_ + ": closing the GIF failed (" + gif_error(err) + ")");
  }
  try {
    commit_file(tmp_, path_);
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp_, ec);
    throw;
  }
}

GifInfo read_gif_info(const std::string& path) {
  int err = 0;
  GifFileType* g = DGifOpenFileName(path.c_str(), &err);
  if (!g) throw std::runtime_error(path + ": cannot open the GIF (" + gif_error(err) + ")");
  const int rc = DGifSlurp(g);
  GifInfo info{g->SWidth, g->SHeight, g->ImageCount};
  const int derr = g->Error;
  DGifCloseFile(g, &err);
  if (rc != GIF_OK) throw std::runtime_error(path + ": damaged GIF (" + gif_error(derr) + ")");
  return info;
}

}  // namespace sf::data
