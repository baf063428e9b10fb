#include "data/image.h"

#include <png.h>
#include <jpeglib.h>

#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>

namespace sf::data {

std::string Image::size_str() const {
  static const char* kinds[] = {"?", "gray", "gray+alpha", "RGB", "RGBA"};
  return std::to_string(width) + "x" + std::to_string(height) + " " + kinds[channels >= 0 && channels <= 4 ? channels : 0];
}

bool is_image_name(const std::string& name) {
  auto dot = name.rfind('.');
  if (dot == std::string::npos) return false;
  std::string ext = name.substr(dot + 1);
  for (auto& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext == "png" || ext == "jpg" || ext == "jpeg";
}

namespace {

// Bounds on what a decoder may allocate: a hard cap, and what the input's size can really
// encode (deflate expands at most ~1032x, and 1-bit palette pixels become 4 bytes: 32x more;
// JPEG gets a generous 4096 output bytes per input byte).
constexpr uint64_t kMaxImageBytes = 1ull << 30;
constexpr uint64_t kMaxImageSide = 1 << 16;

void check_image_size(uint64_t w, uint64_t h, uint64_t ch, uint64_t max_bytes, const std::string& name, const char* kind) {
  if (w == 0 || h == 0 || w > kMaxImageSide || h > kMaxImageSide)
    throw ImageError(name + ": " + kind + " header says " + std::to_string(w) + "x" + std::to_string(h) + " (refused)");
  const uint64_t bytes = w * h * std::max<uint64_t>(ch, 1);
  if (bytes > kMaxImageBytes || bytes > max_bytes)
    throw ImageError(name + ": " + kind + " header says " + std::to_string(w) + "x" + std::to_string(h) + "x" +
                     std::to_string(ch) + ", more than its " + std::to_string(max_bytes / 1) +
                     "-byte bound for this file size (damaged or hostile file)");
}

struct PngReadState {
  const uint8_t* data;
  size_t n, pos;
  std::string error;
};

void png_read_fn(png_structp png, png_bytep out, png_size_t len) {
  auto* s = static_cast<PngReadState*>(png_get_io_ptr(png));
  if (s->pos + len > s->n) png_error(png, "unexpected end of data (truncated file)");
  std::memcpy(out, s->data + s->pos, len);
  s->pos += len;
}

void png_error_fn(png_structp png, png_const_charp msg) {
  auto* s = static_cast<PngReadState*>(png_get_error_ptr(png));
  if (s) s->error = msg;
  png_longjmp(png, 1);
}
void png_warn_fn(png_structp, png_const_charp) {}

Image decode_png(const uint8_t* data, size_t n, const std::string& name) {
  PngReadState st{data, n, 0, {}};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &st, png_error_fn, png_warn_fn);
  if (!png) throw ImageError(name + ": cannot initialise libpng");
  png_infop info = png_create_info_struct(png);
  Image img;
  std::vector<png_bytep> rows;
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw ImageError(name + ": corrupt PNG (" + st.error + ")");
  }
  png_set_read_fn(png, &st, png_read_fn);
  png_read_info(png, info);
  int color = png_get_color_type(png, info);
  int depth = png_get_bit_depth(png, info);
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
  if (depth == 16) png_set_strip_16(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  try {
    check_image_size(png_get_image_width(png, info), png_get_image_height(png, info), png_get_channels(png, info),
                     uint64_t(n) * 1032 * 32 + (1u << 20), name, "PNG");
  } catch (...) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw;
  }
  img.width = static_cast<int>(png_get_image_width(png, info));
  img.height = static_cast<int>(png_get_image_height(png, info));
  img.channels = png_get_channels(png, info);
  img.pixels.resize(static_cast<size_t>(img.width) * img.height * img.channels);
  rows.resize(static_cast<size_t>(img.height));
  for (int y = 0; y < img.height; ++y) rows[static_cast<size_t>(y)] = img.row(y);
  png_read_image(png, rows.data());
  png_read_end(png, nullptr);
  png_destroy_read_struct(&png, &info, nullptr);
  return img;
}

struct JpegErr {
  jpeg_error_mgr mgr;
  jmp_buf jump;
  char msg[JMSG_LENGTH_MAX];
};

void jpeg_error_exit(j_common_ptr cinfo) {
  auto* e = reinterpret_cast<JpegErr*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, e->msg);
  longjmp(e->jump, 1);
}

Image decode_jpeg(const uint8_t* data, size_t n, const std::string& name) {
  jpeg_decompress_struct cinfo;
  JpegErr err;
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_error_exit;
  err.mgr.output_message = [](j_common_ptr) {};
  Image img;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    throw ImageError(name + ": corrupt JPEG (" + std::string(err.msg) + ")");
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(n));
  jpeg_read_header(&cinfo, TRUE);
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
    jpeg_destroy_decompress(&cinfo);
    throw ImageError(name + ": CMYK JPEG is not supported");
  }
  cinfo.out_color_space = cinfo.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
  try {
    check_image_size(cinfo.image_width, cinfo.image_height, cinfo.num_components == 1 ? 1 : 3,
                     uint64_t(n) * 4096 + (1u << 20), name, "JPEG");
  } catch (...) {
    jpeg_destroy_decompress(&cinfo);
    throw;
  }
  cinfo.mem->max_memory_to_use = 1L << 30;  // libjpeg's own working memory (progressive buffers)
  jpeg_start_decompress(&cinfo);
  img.width = static_cast<int>(cinfo.output_width);
  img.height = static_cast<int>(cinfo.output_height);
  img.channels = cinfo.output_components;
  img.pixels.resize(static_cast<size_t>(img.width) * img.height * img.channels);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW r = img.row(static_cast<int>(cinfo.output_scanline));
    jpeg_read_scanlines(&cinfo, &r, 1);
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return img;
}

}  // namespace

Image decode_image(const uint8_t* data, size_t n, const std::string& name) {
  static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
  try {
    if (n >= 8 && std::memcmp(data, png_sig, 8) == 0) return decode_png(data, n, name);
    if (n >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) return decode_jpeg(data, n, name);
  } catch (const std::bad_alloc&) {
    throw ImageError(name + ": out of memory while decoding");
  }
  throw ImageError(name + ": not a PNG or JPEG file (unknown signature)");
}

Image read_image_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw ImageError(path + ": cannot open");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return decode_image(bytes.data(), bytes.size(), path);
}

namespace {
void png_write_fn(png_structp png, png_bytep data, png_size_t len) {
  auto* out = static_cast<std::vector<uint8_t>*>(png_get_io_ptr(png));
  out->insert(out->end(), data, data + len);
}
void png_flush_fn(png_structp) {}
}  // namespace

std::vector<uint8_t> encode_png(const Image& img, int compress_level) {
  std::vector<uint8_t> out;
  PngReadState st{nullptr, 0, 0, {}};
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &st, png_error_fn, png_warn_fn);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    throw ImageError("cannot encode PNG (" + st.error + ")");
  }
  static const int types[] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB,
                              PNG_COLOR_TYPE_RGB_ALPHA};
  png_set_write_fn(png, &out, png_write_fn, png_flush_fn);
  png_set_compression_level(png, compress_level);
  if (compress_level == 0) png_set_filter(png, 0, PNG_FILTER_NONE);
  png_set_IHDR(png, info, static_cast<png_uint_32>(img.width), static_cast<png_uint_32>(img.height), 8,
               types[img.channels], PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < img.height; ++y) png_write_row(png, const_cast<png_bytep>(img.row(y)));
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}

void write_png_file(const std::string& path, const Image& img, int compress_level) {
  auto bytes = encode_png(img, compress_level);
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!f) throw ImageError(path + ": cannot write");
}

Image to_channels(const Image& img, int channels) {
  if (img.channels == channels) return img;
  Image out;
  out.width = img.width;
  out.height = img.height;
  out.channels = channels;
  size_t npx = static_cast<size_t>(img.width) * img.height;
  out.pixels.resize(npx * channels);
  const uint8_t* s = img.pixels.data();
  uint8_t* d = out.pixels.data();
  bool color = img.channels >= 3;
  for (size_t i = 0; i < npx; ++i, s += img.channels) {
    if (channels == 1) {
      d[i] = color ? static_cast<uint8_t>((s[0] * 19595u + s[1] * 38470u + s[2] * 7471u + 0x8000u) >> 16) : s[0];
    } else if (channels == 3) {
      for (int c = 0; c < 3; ++c) d[3 * i + c] = color ? s[c] : s[0];
    } else {
      throw ImageError("cannot convert to " + std::to_string(channels) + " channels");
    }
  }
  return out;
}

static Image crop(const Image& img, int x0, int y0, int w, int h) {
  Image out;
  out.width = w;
  out.height = h;
  out.channels = img.channels;
  out.pixels.resize(static_cast<size_t>(w) * h * img.channels);
  for (int y = 0; y < h; ++y)
    std::memcpy(out.row(y), img.row(y + y0) + static_cast<size_t>(x0) * img.channels,
                static_cast<size_t>(w) * img.channels);
  return out;
}

Image center_crop_square(const Image& img) {
  int s = std::min(img.width, img.height);
  return crop(img, (img.width - s) / 2, (img.height - s) / 2, s, s);
}

Image pad_to(const Image& img, int width, int height) {
  if (width < img.width || height < img.height) throw ImageError("pad target smaller than the image");
  Image out;
  out.width = width;
  out.height = height;
  out.channels = img.channels;
  out.pixels.assign(static_cast<size_t>(width) * height * img.channels, 0);
  int x0 = (width - img.width) / 2, y0 = (height - img.height) / 2;
  for (int y = 0; y < img.height; ++y)
    std::memcpy(out.row(y + y0) + static_cast<size_t>(x0) * img.channels, img.row(y),
                static_cast<size_t>(img.width) * img.channels);
  return out;
}

Image pad_square(const Image& img) {
  int s = std::max(img.width, img.height);
  return pad_to(img, s, s);
}

ResizeFilter parse_resize_filter(const std::string& s) {
  if (s == "box") return ResizeFilter::Box;
  if (s == "lanczos") return ResizeFilter::Lanczos;
  throw ImageError("unknown resize filter '" + s + "' (box or lanczos)");
}

namespace {

double sinc(double x) {
  if (x == 0.0) return 1.0;
  x *= M_PI;
  return std::sin(x) / x;
}

// For each output position: first input index and normalised weights (PIL's precompute_coeffs).
struct Coeffs {
  std::vector<int> first;
  std::vector<std::vector<double>> w;
};

Coeffs coeffs(int in, int out, ResizeFilter f) {
  double support0 = f == ResizeFilter::Box ? 0.5 : 3.0;
  double scale = double(in) / out;
  double fscale = std::max(scale, 1.0);
  double support = support0 * fscale;
  Coeffs c;
  for (int xx = 0; xx < out; ++xx) {
    double center = (xx + 0.5) * scale;
    int xmin = std::max(static_cast<int>(center - support + 0.5), 0);
    int xmax = std::min(static_cast<int>(center + support + 0.5), in);
    std::vector<double> w;
    double total = 0;
    for (int x = xmin; x < xmax; ++x) {
      double t = (x - center + 0.5) / fscale;
      double v;
      if (f == ResizeFilter::Box) v = (t > -0.5 && t <= 0.5) ? 1.0 : 0.0;
      else v = (t > -3.0 && t < 3.0) ? sinc(t) * sinc(t / 3.0) : 0.0;
      w.push_back(v);
      total += v;
    }
    if (total != 0)
      for (auto& v : w) v /= total;
    c.first.push_back(xmin);
    c.w.push_back(std::move(w));
  }
  return c;
}

}  // namespace

Image resize(const Image& img, int width, int height, ResizeFilter filter) {
  if (img.width == width && img.height == height) return img;
  if (width <= 0 || height <= 0 || img.width <= 0 || img.height <= 0) throw ImageError("resize of an empty image");
  const int C = img.channels;
  Coeffs cx = coeffs(img.width, width, filter), cy = coeffs(img.height, height, filter);
  // Horizontal pass into floats [img.height, width, C], then vertical.
  std::vector<double> tmp(static_cast<size_t>(img.height) * width * C);
  for (int y = 0; y < img.height; ++y) {
    const uint8_t* r = img.row(y);
    for (int x = 0; x < width; ++x) {
      const auto& w = cx.w[static_cast<size_t>(x)];
      int x0 = cx.first[static_cast<size_t>(x)];
      for (int c = 0; c < C; ++c) {
        double s = 0;
        for (size_t k = 0; k < w.size(); ++k) s += w[k] * r[(x0 + static_cast<int>(k)) * C + c];
        tmp[(static_cast<size_t>(y) * width + x) * C + c] = s;
      }
    }
  }
  Image out;
  out.width = width;
  out.height = height;
  out.channels = C;
  out.pixels.resize(static_cast<size_t>(width) * height * C);
  for (int y = 0; y < height; ++y) {
    const auto& w = cy.w[static_cast<size_t>(y)];
    int y0 = cy.first[static_cast<size_t>(y)];
    for (int x = 0; x < width; ++x)
      for (int c = 0; c < C; ++c) {
        double s = 0;
        for (size_t k = 0; k < w.size(); ++k) s += w[k] * tmp[(static_cast<size_t>(y0 + k) * width + x) * C + c];
        long v = std::lround(s);
        out.row(y)[x * C + c] = static_cast<uint8_t>(std::clamp(v, 0L, 255L));
      }
  }
  return out;
}

void hwc_to_chw(const Image& img, uint8_t* out) {
  const int C = img.channels;
  size_t plane = static_cast<size_t>(img.width) * img.height;
  if (C == 1) {
    std::memcpy(out, img.pixels.data(), plane);
    return;
  }
  const uint8_t* s = img.pixels.data();
  for (size_t i = 0; i < plane; ++i)
    for (int c = 0; c < C; ++c) out[c * plane + i] = s[i * C + c];
}

Image chw_to_image(const uint8_t* chw, int channels, int height, int width) {
  Image img;
  img.width = width;
  img.height = height;
  img.channels = channels;
  size_t plane = static_cast<size_t>(width) * height;
  img.pixels.resize(plane * channels);
  for (size_t i = 0; i < plane; ++i)
    for (int c = 0; c < channels; ++c) img.pixels[i * channels + c] = chw[c * plane + i];
  return img;
}

}  // namespace sf::data
