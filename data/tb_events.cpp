#include "data/tb_events.h"

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "data/hash.h"

namespace sf::data {
namespace {

// Protocol-buffer wire format: a field is a varint key (number << 3 | wire type) and its value.
// Wire types used here: 0 varint, 1 fixed 64 bits, 2 length-delimited, 5 fixed 32 bits.
void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}
void put_key(std::string& out, int field, int wire_type) {
  put_varint(out, static_cast<uint64_t>(field) << 3 | static_cast<uint64_t>(wire_type));
}
void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void put_int(std::string& out, int field, int64_t v) {  // int32/int64: two's complement as a varint
  put_key(out, field, 0);
  put_varint(out, static_cast<uint64_t>(v));
}
void put_double(std::string& out, int field, double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, 8);
  put_key(out, field, 1);
  put_le(out, bits, 8);
}
void put_float(std::string& out, int field, float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, 4);
  put_key(out, field, 5);
  put_le(out, bits, 4);
}
void put_bytes(std::string& out, int field, const std::string& v) {
  put_key(out, field, 2);
  put_varint(out, v.size());
  out += v;
}

// Field numbers (tensorflow/core/util/event.proto, tensorflow/core/framework/summary.proto):
//   Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5;
//             SessionLog session_log = 7; }
//   SessionLog { SessionStatus status = 1 (START = 1); string checkpoint_path = 2; }
//   Summary { repeated Value value = 1; }
//   Value   { string tag = 1; float simple_value = 2; Image image = 4; }
//   Image   { int32 height = 1; int32 width = 2; int32 colorspace = 3; bytes encoded_image_string = 4; }
std::string event_with_summary(const std::string& summary, int64_t step, double wall_time) {
  std::string e;
  put_double(e, 1, wall_time);
  put_int(e, 2, step);
  put_bytes(e, 5, summary);
  return e;
}

uint32_t be32(const unsigned char* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 | static_cast<uint32_t>(p[2]) << 8 | p[3];
}

std::atomic<int> g_writers{0};

}  // namespace

PngSize png_size(const std::string& png, const std::string& where) {
  static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  const auto* p = reinterpret_cast<const unsigned char*>(png.data());
  if (png.size() < 33 || std::memcmp(p, sig, 8) != 0 || std::memcmp(p + 12, "IHDR", 4) != 0)
    throw TbEventError(where + ": not a PNG image");
  PngSize s;
  s.width = static_cast<int>(be32(p + 16));
  s.height = static_cast<int>(be32(p + 20));
  switch (p[25]) {  // colour type
    case 0: s.channels = 1; break;
    case 4: s.channels = 2; break;
    case 2:
    case 3: s.channels = 3; break;
    case 6: s.channels = 4; break;
    default: throw TbEventError(where + ": PNG colour type " + std::to_string(p[25]) + " is invalid");
  }
  if (s.width <= 0 || s.height <= 0) throw TbEventError(where + ": PNG with an empty or oversized image");
  return s;
}

std::string tb_file_version_event(double wall_time) {
  std::string e;
  put_double(e, 1, wall_time);
  put_bytes(e, 3, "brain.Event:2");
  return e;
}

std::string tb_scalars_event(const std::vector<std::pair<std::string, double>>& values, int64_t step,
                             double wall_time) {
  std::string summary;
  for (const auto& [tag, v] : values) {
    std::string value;
    put_bytes(value, 1, tag);
    put_float(value, 2, static_cast<float>(v));
    put_bytes(summary, 1, value);
  }
  return event_with_summary(summary, step, wall_time);
}

std::vector<std::pair<std::string, double>> tb_metric_scalars(const nlohmann::json& result) {
  std::vector<std::pair<std::string, double>> out;
  if (result.contains("results"))
    for (const auto& [name, v] : result.at("results").items())
      if (v.is_number()) out.emplace_back("Metrics/" + name, v.get<double>());
  return out;
}

std::string tb_session_start_event(int64_t step, double wall_time, const std::string& checkpoint_path) {
  std::string log;
  put_int(log, 1, 1);  // START
  put_bytes(log, 2, checkpoint_path);
  std::string e;
  put_double(e, 1, wall_time);
  put_int(e, 2, step);
  put_bytes(e, 7, log);
  return e;
}

std::string tb_image_event(const std::string& tag, const std::string& png, const PngSize& size, int64_t step,
                           double wall_time) {
  std::string image;
  put_int(image, 1, size.height);
  put_int(image, 2, size.width);
  put_int(image, 3, size.channels);
  put_bytes(image, 4, png);
  std::string value;
  put_bytes(value, 1, tag);
  put_bytes(value, 4, image);
  std::string summary;
  put_bytes(summary, 1, value);
  return event_with_summary(summary, step, wall_time);
}

std::string tfrecord_frame(const std::string& payload) {
  std::string out;
  out.reserve(payload.size() + 16);
  put_le(out, payload.size(), 8);
  put_le(out, masked_crc32c(out.data(), 8), 4);
  out += payload;
  put_le(out, masked_crc32c(payload.data(), payload.size()), 4);
  return out;
}

TbEventWriter::TbEventWriter(const std::string& dir) {
  if (!std::filesystem::is_directory(dir)) throw TbEventError(dir + ": no such directory for TensorBoard event files");
  char host[256] = {0};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') std::strcpy(host, "localhost");
  const std::time_t now = std::time(nullptr);
  char name[512];
  std::snprintf(name, sizeof name, "events.out.tfevents.%010lld.%s.%d.%d", static_cast<long long>(now), host,
                static_cast<int>(::getpid()), g_writers.fetch_add(1));
  path_ = (std::filesystem::path(dir) / name).string();
  f_ = std::fopen(path_.c_str(), "wbx");  // never overwrite another writer's file
  if (!f_) throw TbEventError(path_ + ": cannot create (" + std::strerror(errno) + ")");
  const double wall = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  write_record(tb_file_version_event(wall));
  flush();
}

TbEventWriter::~TbEventWriter() {
  if (f_) std::fclose(f_);
}

void TbEventWriter::write_record(const std::string& payload) {
  const std::string rec = tfrecord_frame(payload);
  if (std::fwrite(rec.data(), 1, rec.size(), f_) != rec.size())
    throw TbEventError(path_ + ": write failed (" + std::strerror(errno) + ")");
}

void TbEventWriter::add_scalars(const std::vector<std::pair<std::string, double>>& values, int64_t step,
                                double wall_time) {
  if (values.empty()) return;
  write_record(tb_scalars_event(values, step, wall_time));
}

void TbEventWriter::add_session_start(int64_t step, double wall_time, const std::string& checkpoint_path) {
  write_record(tb_session_start_event(step, wall_time, checkpoint_path));
}

void TbEventWriter::add_png(const std::string& tag, const std::string& png, int64_t step, double wall_time) {
  write_record(tb_image_event(tag, png, png_size(png, tag), step, wall_time));
}

void TbEventWriter::add_png_file(const std::string& tag, const std::string& path, int64_t step, double wall_time) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw TbEventError(path + ": cannot read the image for TensorBoard");
  const std::string png((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  write_record(tb_image_event(tag, png, png_size(png, path), step, wall_time));
}

void TbEventWriter::flush() {
  if (std::fflush(f_) != 0) throw TbEventError(path_ + ": flush failed (" + std::strerror(errno) + ")");
}

}  // namespace sf::data
