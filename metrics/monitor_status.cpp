// Reading run directories back for `styleforge status` (monitor.h). Only reads files, so it works
// on run directories of other users and other nodes on a shared file system.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <stdexcept>
#include <system_error>

#include "metrics/monitor.h"

namespace fs = std::filesystem;

namespace sf::metrics {
namespace {

// The last non-empty line of a text file, reading only its tail.
std::string last_line(const fs::path& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return "";
  f.seekg(0, std::ios::end);
  const std::streamoff size = f.tellg();
  std::streamoff chunk = 4096;
  while (true) {
    const std::streamoff start = std::max<std::streamoff>(0, size - chunk);
    std::string buf(static_cast<size_t>(size - start), '\0');
    f.seekg(start);
    f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    while (!buf.empty() && (buf.back() == '\n' || buf.back() == '\r' || buf.back() == ' ')) buf.pop_back();
    const size_t nl = buf.rfind('\n');
    if (nl != std::string::npos) return buf.substr(nl + 1);
    if (start == 0) return buf;
    chunk *= 4;
  }
}

double mtime_unix(const fs::path& p) {
  std::error_code ec;
  auto t = fs::last_write_time(p, ec);
  if (ec) return 0;
  return unix_now() - std::chrono::duration<double>(fs::file_time_type::clock::now() - t).count();
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string pad(const std::string& s, size_t width) { return s.size() >= width ? s + " " : s + std::string(width - s.size(), ' '); }

}  // namespace

std::string format_duration(double s) {
  if (!(s >= 0) || std::isinf(s)) return "-";
  const long long t = std::llround(s);
  char buf[48];
  if (t < 60)
    std::snprintf(buf, sizeof buf, "%llds", t);
  else if (t < 3600)
    std::snprintf(buf, sizeof buf, "%lldm %02llds", t / 60, t % 60);
  else if (t < 86400)
    std::snprintf(buf, sizeof buf, "%lldh %02lldm", t / 3600, (t / 60) % 60);
  else
    std::snprintf(buf, sizeof buf, "%lldd %02lldh", t / 86400, (t / 3600) % 24);
  return buf;
}

RunSummary summarize_run(const std::string& run_dir, double now, double stale_sec) {
  if (!fs::is_directory(run_dir)) throw std::runtime_error(run_dir + ": not a run directory");
  RunSummary r;
  r.run_dir = run_dir;
  r.name = run_name_of(run_dir);
  r.has_status = read_run_status(run_dir, &r.status);

  double kimg_per_tick = 0;
  {
    std::ifstream f(fs::path(run_dir) / "training_options.json");
    if (f) {
      nlohmann::json o = nlohmann::json::parse(f, nullptr, false);
      if (o.is_object()) {
        if (auto it = o.find("kimg_per_tick"); it != o.end() && it->is_number()) kimg_per_tick = it->get<double>();
        if (!r.has_status)
          if (auto it = o.find("total_kimg"); it != o.end() && it->is_number()) r.status.total_kimg = it->get<double>();
      }
    }
  }
  if (!r.has_status) {
    // A run without status.json (older, or not started yet): the last tick of stats.jsonl and
    // the last line of log.txt.
    const std::string last = last_line(fs::path(run_dir) / "stats.jsonl");
    nlohmann::json j = nlohmann::json::parse(last, nullptr, false);
    const double total = r.status.total_kimg;
    if (!j.is_discarded() && j.is_object()) {
      r.status = status_from_stats(j);
      r.status.total_kimg = total;
    }
    if (r.status.unix_time <= 0) r.status.unix_time = mtime_unix(fs::path(run_dir) / "stats.jsonl");
    const std::string log_last = last_line(fs::path(run_dir) / "log.txt");
    if (log_last.rfind("Exiting for requeue", 0) == 0)
      r.status.state = "requeue";
    else if (log_last.rfind("Exiting", 0) == 0)
      r.status.state = "done";
    else
      r.status.state = r.status.unix_time > 0 ? "running" : "unknown";
  }
  r.state = r.status.state;
  r.age_sec = r.status.unix_time > 0 ? std::max(0.0, now - r.status.unix_time) : -1;
  if (r.state == "running") {
    const double tick_sec = r.status.sec_per_kimg > 0 && kimg_per_tick > 0 ? r.status.sec_per_kimg * kimg_per_tick : 0;
    if (r.age_sec < 0 || r.age_sec > std::max(stale_sec, 3 * tick_sec)) r.state = "stalled";
  }
  if (r.state != "done" && r.state != "failed" && r.status.sec_per_kimg > 0 && r.status.total_kimg > 0)
    r.eta_sec = std::max(0.0, (r.status.total_kimg - r.status.kimg) * r.status.sec_per_kimg);

  r.metrics = latest_metrics(read_metric_history(run_dir));

  // Slowest rank: the oldest heartbeat when they differ by more than a minute, else the slowest speed.
  if (!r.status.ranks.empty()) {
    auto oldest = std::min_element(r.status.ranks.begin(), r.status.ranks.end(),
                                   [](const RankHeartbeat& a, const RankHeartbeat& b) { return a.unix_time < b.unix_time; });
    auto newest = std::max_element(r.status.ranks.begin(), r.status.ranks.end(),
                                   [](const RankHeartbeat& a, const RankHeartbeat& b) { return a.unix_time < b.unix_time; });
    auto slowest = std::max_element(r.status.ranks.begin(), r.status.ranks.end(),
                                    [](const RankHeartbeat& a, const RankHeartbeat& b) { return a.sec_per_kimg < b.sec_per_kimg; });
    const RankHeartbeat& pick = newest->unix_time - oldest->unix_time > 60 ? *oldest : *slowest;
    r.slowest_rank = pick.rank;
    r.slowest_host = pick.host;
    r.slowest_age_sec = pick.unix_time > 0 ? std::max(0.0, now - pick.unix_time) : -1;
    r.slowest_sec_per_kimg = pick.sec_per_kimg;
  }

  // The newest checkpoint on disk (it may be newer than the status).
  r.checkpoint = newest_snapshot_name(run_dir);
  if (r.checkpoint.empty()) r.checkpoint = r.status.last_checkpoint;
  if (!r.checkpoint.empty()) {
    const double t = mtime_unix(fs::path(run_dir) / r.checkpoint);
    const double tt = t > 0 ? t : r.status.last_checkpoint_unix_time;
    r.checkpoint_age_sec = tt > 0 ? std::max(0.0, now - tt) : -1;
  }
  return r;
}

namespace {

const char* const kColumns[] = {"RUN", "STATE", "KIMG", "SEC/KIMG", "ETA", "P", "FID/KID", "SLOWEST RANK", "LAST CHECKPOINT"};
constexpr size_t kNumColumns = sizeof kColumns / sizeof kColumns[0];

std::vector<std::string> status_cells(const RunSummary& r) {
  const RunStatus& s = r.status;
  std::string state = r.state;
  if (r.state == "stalled" && r.age_sec >= 0) state += " " + format_duration(r.age_sec);
  const char* kf = s.total_kimg < 10 ? "%.3f" : "%.1f";
  std::string kimg = fmt(kf, s.kimg) + "/" + fmt(kf, s.total_kimg);
  std::string spk = s.sec_per_kimg > 0 ? fmt("%.4g", s.sec_per_kimg) : "-";
  std::string eta = r.eta_sec >= 0 ? format_duration(r.eta_sec) : "-";
  std::string p = std::isnan(s.augment_p) ? "-" : fmt("%.3g", s.augment_p);
  std::string quality;
  for (const auto& m : r.metrics) {
    if (m.metric.rfind("fid", 0) != 0 && m.metric.rfind("kid", 0) != 0) continue;
    if (!quality.empty()) quality += " ";
    quality += m.metric + "=" + fmt("%.4g", m.value);
  }
  if (quality.empty()) quality = "-";
  std::string slow = "-";
  if (r.slowest_rank >= 0) {
    slow = "r" + std::to_string(r.slowest_rank) + "@" + r.slowest_host;
    if (r.slowest_sec_per_kimg > 0) slow += " " + fmt("%.3g", r.slowest_sec_per_kimg) + "s/k";
    // A heartbeat age means something only while the ranks are alive.
    const bool alive = r.state == "running" || r.state == "stalled";
    if (alive && r.slowest_age_sec >= 0) slow += " hb " + format_duration(r.slowest_age_sec);
  }
  std::string ckpt = r.checkpoint.empty() ? "-" : r.checkpoint + " (" + format_duration(r.checkpoint_age_sec) + " ago)";
  return {r.name, state, kimg, spk, eta, p, quality, slow, ckpt};
}

}  // namespace

std::vector<std::string> status_table(const std::vector<RunSummary>& runs, bool header) {
  std::vector<std::vector<std::string>> rows;
  if (header) rows.emplace_back(std::begin(kColumns), std::end(kColumns));
  for (const auto& r : runs) rows.push_back(status_cells(r));
  std::vector<size_t> width(kNumColumns, 0);
  for (const auto& row : rows)
    for (size_t i = 0; i < kNumColumns; ++i) width[i] = std::max(width[i], row[i].size());
  std::vector<std::string> lines;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i + 1 < kNumColumns; ++i) line += pad(row[i], width[i] + 2);
    lines.push_back(line + row[kNumColumns - 1]);
  }
  return lines;
}

std::string status_header() { return status_table({}, true).at(0); }

std::string status_line(const RunSummary& r) { return status_table({r}, false).at(0); }

bool is_run_directory(const std::string& dir) {
  std::error_code ec;
  for (const char* f : {"status.json", "stats.jsonl", "training_options.json", "log.txt"})
    if (fs::exists(fs::path(dir) / f, ec)) return true;
  return false;
}

std::vector<std::string> find_run_directories(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return {};
  if (is_run_directory(dir)) return {dir};
  std::vector<std::string> out;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_directory(ec) && is_run_directory(it->path().string())) out.push_back(it->path().string());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace sf::metrics
