// The progress line of long commands (`generate`, `pack`, `metrics`): count, percentage, rate and
// ETA on stderr.
//
//   generate [############............]  48%  4864/10000 images  301 images/s  ETA 17s
//
// On a terminal the line is redrawn in place (at most 10 times a second); otherwise (a log file,
// a pipe, a batch job) one line is printed each time another 10% is done, so logs stay short.
// When the total is unknown (<= 0) the line shows the count and rate without a bar, at most one
// line per 10 s off a terminal. The rate counts from the first update. Reaching the total ends the bar with a summary line
// ("... done in 33s"); finish() does the same for a bar stopped early. A bar destroyed without
// either (an error) prints no summary. A note (e.g. "40 images") may follow the counts.
//
// Not thread-safe: one thread updates a bar.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include "data/import.h"

namespace sf::cli {

// "0.4s", "45s", "3m07s", "2h05m".
std::string format_duration(double seconds);
// "0.42", "3.5", "301": three significant digits at most, no exponent.
std::string format_rate(double per_second);

class Progress {
 public:
  struct Options {
    bool enabled = true;            // false: prints nothing (--quiet)
    std::ostream* out = nullptr;    // null: std::cerr
    int tty = -1;                   // -1: whether stderr is a terminal; 0/1 forces it (tests)
    std::function<double()> clock;  // seconds; default steady_clock
  };
  static Options enabled_if(bool on) {
    Options o;
    o.enabled = on;
    return o;
  }
  Progress(std::string label, int64_t total, std::string unit = "images");
  Progress(std::string label, int64_t total, std::string unit, Options opts);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  // Starts a new bar (a new stage): the current one, if drawn and not done, is finished first.
  void restart(std::string label, int64_t total, std::string unit = "images");
  void set_total(int64_t total) { total_ = total; }
  // `done` items so far (absolute, not an increment).
  void update(int64_t done, const std::string& note = "");
  void add(int64_t n, const std::string& note = "") { update(done_ + n, note); }
  // Prints the summary line if anything was drawn and the bar has not ended yet.
  void finish();
  int64_t done() const { return done_; }
  double elapsed() const;

  // One line of the bar as it would be drawn now (no "\r", no newline).
  std::string line(bool final) const;

 private:
  void draw(bool final);
  double now() const;
  std::string label_, unit_, note_;
  int64_t total_ = 0, done_ = 0;
  Options opts_;
  bool tty_ = false, drawn_ = false, ended_ = false;
  double start_ = 0, last_draw_ = -1e9;
  // The rate is measured from the first update on (callers that report only after a first batch
  // of work would otherwise show a burst).
  bool have_base_ = false;
  double base_t_ = 0;
  int64_t base_done_ = 0;
  int last_decile_ = 0;
  size_t last_width_ = 0;
};

// The progress callback of data::pack_dataset (`pack`, `train --pack-if-needed`): creates `bar` on
// the first call; volumes show the images so far, as their count is known once each is read.
std::function<void(const data::ImportProgress&)> pack_progress(std::unique_ptr<Progress>& bar);

}  // namespace sf::cli
