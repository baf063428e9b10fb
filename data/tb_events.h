// TensorBoard event files: the `events.out.tfevents.*` files TensorBoard (and its
// EventAccumulator) reads from a run directory.
//
// An event file is a TFRecord file (the framing of data/tfrecord.h: length, masked CRC-32C of the
// length, payload, masked CRC-32C of the payload) whose records are serialized `Event` protocol
// buffers. The first record carries file_version "brain.Event:2"; every later one a `Summary` of
// scalar (simple_value) or image (PNG) values at a step and a wall time. A file may start with a
// SessionLog START event: TensorBoard then drops what earlier files of the run recorded at that
// step and later (its server skips the first START of a run, which marks the run's beginning).
//
// The messages are encoded by hand (see tb_events.cpp for the field numbers): they are three tiny
// messages whose wire format has been stable for years, and writing them directly spares the
// build a protoc code-generation step and a libprotobuf dependency for ~60 lines of encoder.
//
// TbEventWriter owns its file; one writer must not be shared between threads, distinct writers
// are independent. Failures throw TbEventError with a one-line message naming the file.
#pragma once

#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace sf::data {

class TbEventError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Size and channel count of a PNG, read from its IHDR chunk (channels: 1 gray, 2 gray+alpha,
// 3 RGB or palette, 4 RGBA). `where` names the source in errors.
struct PngSize {
  int width = 0, height = 0, channels = 0;
};
PngSize png_size(const std::string& png, const std::string& where);

// Serialized Event messages (exposed for tests).
std::string tb_file_version_event(double wall_time);
std::string tb_scalars_event(const std::vector<std::pair<std::string, double>>& values, int64_t step,
                             double wall_time);
std::string tb_session_start_event(int64_t step, double wall_time, const std::string& checkpoint_path);
std::string tb_image_event(const std::string& tag, const std::string& png, const PngSize& size, int64_t step,
                           double wall_time);
// One TFRecord record around `payload`.
std::string tfrecord_frame(const std::string& payload);

// The numeric results of one metric evaluation ({"results": {name: value, ...}, ...}, as
// metric-*.jsonl lines hold them) as TensorBoard scalars `Metrics/<name>`, the reference's tags.
std::vector<std::pair<std::string, double>> tb_metric_scalars(const nlohmann::json& result);

class TbEventWriter {
 public:
  // Creates a new file in the existing directory `dir`, named like the files of TensorBoard's own
  // writers, events.out.tfevents.<unix seconds, 10 digits>.<host>.<pid>.<n> (n counts the writers
  // of this process), so that TensorBoard reads the files of one run directory in the order they
  // were started; writes the file_version record.
  explicit TbEventWriter(const std::string& dir);
  ~TbEventWriter();
  TbEventWriter(const TbEventWriter&) = delete;
  TbEventWriter& operator=(const TbEventWriter&) = delete;

  // Scalars are stored as float32 (TensorBoard's simple_value); all values of one call share one
  // Event record.
  void add_scalars(const std::vector<std::pair<std::string, double>>& values, int64_t step, double wall_time);
  void add_scalar(const std::string& tag, double value, int64_t step, double wall_time) {
    add_scalars({{tag, value}}, step, wall_time);
  }
  // An image summary of encoded PNG bytes (stored as given; size and channels from the header).
  void add_png(const std::string& tag, const std::string& png, int64_t step, double wall_time);
  void add_png_file(const std::string& tag, const std::string& path, int64_t step, double wall_time);
  // A SessionLog START at `step`: TensorBoard discards the points of earlier files at steps >= step.
  void add_session_start(int64_t step, double wall_time, const std::string& checkpoint_path);
  // Hands everything written so far to the operating system (TensorBoard sees it).
  void flush();
  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& payload);
  std::string path_;
  std::FILE* f_ = nullptr;
};

}  // namespace sf::data
