#include "launcher/progress.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>

namespace sf::cli {

std::string format_duration(double s) {
  char buf[32];
  if (!(s >= 0) || !std::isfinite(s)) return "?";
  if (s < 9.95) {
    std::snprintf(buf, sizeof buf, "%.1fs", s);
  } else if (s < 59.5) {
    std::snprintf(buf, sizeof buf, "%.0fs", s);
  } else if (s < 3600 - 0.5) {
    const long t = std::lround(s);
    std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  } else {
    const long m = std::lround(s / 60);
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", m / 60, m % 60);
  }
  return buf;
}

std::string format_rate(double r) {
  char buf[32];
  if (!(r >= 0) || !std::isfinite(r)) return "?";
  if (r >= 99.5) std::snprintf(buf, sizeof buf, "%.0f", r);
  else if (r >= 9.95) std::snprintf(buf, sizeof buf, "%.1f", r);
  else std::snprintf(buf, sizeof buf, "%.2f", r);
  return buf;
}

Progress::Progress(std::string label, int64_t total, std::string unit) : Progress(std::move(label), total, std::move(unit), Options{}) {}

Progress::Progress(std::string label, int64_t total, std::string unit, Options opts)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), opts_(std::move(opts)) {
  if (!opts_.out) opts_.out = &std::cerr;
  tty_ = opts_.tty >= 0 ? opts_.tty != 0 : ::isatty(STDERR_FILENO) != 0;
  start_ = now();
}

Progress::~Progress() {
  // Not finished (an error is on its way): no summary, but a line redrawn in place is ended so
  // that the error message starts on a line of its own.
  if (opts_.enabled && tty_ && drawn_ && !ended_) {
    *opts_.out << '\n';
    opts_.out->flush();
  }
}

double Progress::now() const {
  if (opts_.clock) return opts_.clock();
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double Progress::elapsed() const { return now() - start_; }

void Progress::restart(std::string label, int64_t total, std::string unit) {
  finish();
  label_ = std::move(label);
  unit_ = std::move(unit);
  note_.clear();
  total_ = total;
  done_ = 0;
  drawn_ = ended_ = false;
  last_draw_ = -1e9;
  last_decile_ = 0;
  last_width_ = 0;
  have_base_ = false;
  base_done_ = 0;
  start_ = now();
}

std::string Progress::line(bool final) const {
  const double t = elapsed();
  const double dt = have_base_ ? now() - base_t_ : 0;
  const double rate = dt > 0 && done_ > base_done_ ? static_cast<double>(done_ - base_done_) / dt : 0;
  std::string s = label_;
  char buf[160];
  if (total_ > 0) {
    const int64_t shown = std::min(done_, total_);
    const int pct = static_cast<int>(100 * shown / total_);
    constexpr int kWidth = 24;
    const int filled = static_cast<int>(kWidth * shown / total_);
    s += " [" + std::string(static_cast<size_t>(filled), '#') + std::string(static_cast<size_t>(kWidth - filled), '.') + "]";
    std::snprintf(buf, sizeof buf, " %3d%%  %lld/%lld %s", pct, static_cast<long long>(done_), static_cast<long long>(total_),
                  unit_.c_str());
  } else {
    std::snprintf(buf, sizeof buf, " %lld %s", static_cast<long long>(done_), unit_.c_str());
  }
  s += buf;
  if (!note_.empty()) s += " (" + note_ + ")";
  if (rate > 0) s += "  " + format_rate(rate) + " " + unit_ + "/s";
  if (final) {
    s += "  done in " + format_duration(t);
  } else if (total_ > 0 && rate > 0 && done_ < total_) {
    s += "  ETA " + format_duration(static_cast<double>(total_ - done_) / rate);
  } else if (total_ > 0) {
    s += "  ETA ?";
  }
  return s;
}

void Progress::draw(bool final) {
  std::string s = line(final);
  std::ostream& out = *opts_.out;
  if (tty_) {
    // Pad over a longer previous line instead of relying on terminal escapes.
    const size_t w = s.size();
    if (w < last_width_) s += std::string(last_width_ - w, ' ');
    last_width_ = w;
    out << '\r' << s;
    if (final) out << '\n';
  } else {
    out << s << '\n';
  }
  out.flush();
  drawn_ = true;
  last_draw_ = now();
}

void Progress::update(int64_t done, const std::string& note) {
  if (ended_) return;
  done_ = done;
  if (!have_base_) {
    have_base_ = true;
    base_t_ = now();
    base_done_ = done;
  }
  if (!note.empty()) note_ = note;
  if (!opts_.enabled) return;
  if (total_ > 0 && done_ >= total_) {
    draw(true);
    ended_ = true;
    return;
  }
  const double t = now();
  if (tty_) {
    if (t - last_draw_ >= 0.1) draw(false);
  } else if (total_ > 0) {
    const int decile = static_cast<int>(10 * done_ / total_);
    if (decile > last_decile_) {
      last_decile_ = decile;
      draw(false);
    }
  } else if (t - last_draw_ >= 10) {
    draw(false);
  }
}

void Progress::finish() {
  if (ended_) return;
  ended_ = true;
  if (opts_.enabled && (drawn_ || done_ > 0)) draw(true);
}

std::function<void(const data::ImportProgress&)> pack_progress(std::unique_ptr<Progress>& bar) {
  return [&bar](const data::ImportProgress& p) {
    if (!bar) bar = std::make_unique<Progress>("pack", p.total, p.unit);
    bar->set_total(p.total);
    bar->update(p.done, std::string(p.unit) == "images" ? "" : std::to_string(p.images) + (p.images == 1 ? " image" : " images"));
  };
}

}  // namespace sf::cli
