// Publishing a run's status: status.json, Prometheus text files, the HTTP endpoint (monitor.h).
#include "metrics/monitor.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <system_error>

namespace fs = std::filesystem;

namespace sf::metrics {
namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

// Writes `text` next to `path` under a temporary name, then renames it over `path`.
void write_atomic(const fs::path& path, const std::string& text) {
  fs::path tmp = path;
  tmp += ".tmp-" + std::to_string(::getpid());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw std::runtime_error(tmp.string() + ": cannot open for writing");
    f << text;
    f.flush();
    if (!f) throw std::runtime_error(tmp.string() + ": write failed");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw std::runtime_error(path.string() + ": rename failed");
  }
}

double number_or_nan(const nlohmann::json& j, const char* key, double missing = 0) {
  auto it = j.find(key);
  if (it == j.end()) return missing;
  if (it->is_null()) return kNaN;
  return it->get<double>();
}

// Mean of a stats.jsonl entry ({num, mean, std}) or a plain number; `missing` when absent.
double stat_mean(const nlohmann::json& stats, const std::string& name, double missing = 0) {
  auto it = stats.find(name);
  if (it == stats.end()) return missing;
  if (it->is_number()) return it->get<double>();
  if (it->is_object()) {
    auto m = it->find("mean");
    if (m != it->end()) return m->is_null() ? kNaN : m->get<double>();
  }
  return missing;
}

// Shortest decimal text that reads back as the same double; NaN and infinities as Prometheus spells them.
std::string prom_number(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[40];
  if (v == std::floor(v) && std::abs(v) < 1e15) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  for (int prec = 6; prec <= 17; ++prec) {
    std::snprintf(buf, sizeof buf, "%.*g", prec, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

std::string escape_label(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string escape_help(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

// The newest checkpoint in run_dir: {file name, modification time}.
std::pair<std::string, double> newest_checkpoint(const std::string& run_dir) {
  const std::string best = newest_snapshot_name(run_dir);
  std::error_code ec;
  if (best.empty()) return {"", 0};
  auto t = fs::last_write_time(fs::path(run_dir) / best, ec);
  if (ec) return {best, 0};
  // file_clock -> system_clock: both count from an epoch; take the difference against now.
  const auto age = fs::file_time_type::clock::now() - t;
  return {best, unix_now() - std::chrono::duration<double>(age).count()};
}

void warn_once(const std::string& what) {
  static std::mutex mu;
  static std::string last;
  std::lock_guard<std::mutex> lock(mu);
  if (what == last) return;
  last = what;
  std::cerr << "styleforge monitor: warning: " << what << " (training goes on)\n";
}

std::mutex g_http_mu;
std::string g_http_bind;
std::unique_ptr<MetricsHttpServer> g_http;
bool g_http_failed = false;

}  // namespace

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

RunStatus status_from_stats(const nlohmann::json& stats) {
  RunStatus s;
  s.kimg = stat_mean(stats, "Progress/kimg");
  s.sec_per_kimg = stat_mean(stats, "Timing/sec_per_kimg");
  s.augment_p = stat_mean(stats, "Progress/augment");
  s.r_t = stat_mean(stats, "Loss/signs/real", kNaN);
  for (auto it = stats.begin(); it != stats.end(); ++it)
    if (it.key().rfind("Loss/", 0) == 0) s.losses[it.key()] = stat_mean(stats, it.key(), kNaN);
  if (auto it = stats.find("timestamp"); it != stats.end() && it->is_number()) s.unix_time = it->get<double>();
  return s;
}

double process_rss_gb() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / (1024.0 * 1024.0);
  return 0;
}

RankHeartbeat local_heartbeat(int rank, int64_t step, double sec_per_kimg, double gpu_mem_gb) {
  RankHeartbeat h;
  h.rank = rank;
  char host[256] = {0};
  h.host = ::gethostname(host, sizeof host - 1) == 0 ? host : "unknown-host";
  h.step = step;
  h.unix_time = unix_now();
  h.cpu_mem_gb = process_rss_gb();
  h.gpu_mem_gb = gpu_mem_gb;
  h.sec_per_kimg = sec_per_kimg;
  return h;
}

nlohmann::json status_to_json(const RunStatus& s) {
  nlohmann::json j;
  j["format"] = "styleforge-status";
  j["format_version"] = 1;
  j["state"] = s.state;
  j["kimg"] = s.kimg;
  j["total_kimg"] = s.total_kimg;
  j["sec_per_kimg"] = s.sec_per_kimg;
  j["augment_p"] = s.augment_p;
  j["r_t"] = s.r_t;
  j["losses"] = s.losses;
  j["ranks"] = nlohmann::json::array();
  for (const auto& r : s.ranks)
    j["ranks"].push_back({{"rank", r.rank},
                          {"host", r.host},
                          {"step", r.step},
                          {"unix_time", r.unix_time},
                          {"cpu_mem_gb", r.cpu_mem_gb},
                          {"gpu_mem_gb", r.gpu_mem_gb},
                          {"sec_per_kimg", r.sec_per_kimg}});
  j["last_checkpoint"] = s.last_checkpoint;
  j["last_checkpoint_unix_time"] = s.last_checkpoint_unix_time;
  j["unix_time"] = s.unix_time;
  return j;
}

RunStatus status_from_json(const nlohmann::json& j) {
  RunStatus s;
  s.state = j.value("state", std::string("running"));
  s.kimg = number_or_nan(j, "kimg");
  s.total_kimg = number_or_nan(j, "total_kimg");
  s.sec_per_kimg = number_or_nan(j, "sec_per_kimg");
  s.augment_p = number_or_nan(j, "augment_p");
  s.r_t = number_or_nan(j, "r_t", kNaN);
  if (auto it = j.find("losses"); it != j.end() && it->is_object())
    for (auto l = it->begin(); l != it->end(); ++l) s.losses[l.key()] = l->is_null() ? kNaN : l->get<double>();
  if (auto it = j.find("ranks"); it != j.end() && it->is_array())
    for (const auto& r : *it) {
      RankHeartbeat h;
      h.rank = r.value("rank", 0);
      h.host = r.value("host", std::string());
      h.step = r.value("step", int64_t{0});
      h.unix_time = number_or_nan(r, "unix_time");
      h.cpu_mem_gb = number_or_nan(r, "cpu_mem_gb");
      h.gpu_mem_gb = number_or_nan(r, "gpu_mem_gb");
      h.sec_per_kimg = number_or_nan(r, "sec_per_kimg");
      s.ranks.push_back(h);
    }
  s.last_checkpoint = j.value("last_checkpoint", std::string());
  s.last_checkpoint_unix_time = number_or_nan(j, "last_checkpoint_unix_time");
  s.unix_time = number_or_nan(j, "unix_time");
  return s;
}

bool read_run_status(const std::string& run_dir, RunStatus* out) {
  std::ifstream f(fs::path(run_dir) / "status.json");
  if (!f) return false;
  try {
    nlohmann::json j = nlohmann::json::parse(f);
    if (!j.is_object()) return false;
    *out = status_from_json(j);
    return true;
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

std::vector<MetricResult> read_metric_history(const std::string& run_dir) {
  static const std::regex file_re(R"(^metric-.*\.jsonl$)");
  static const std::regex snap_re(R"(network-snapshot-(\d+)(?:-(\d+))?)");
  std::vector<fs::path> files;
  std::error_code ec;
  for (fs::directory_iterator it(run_dir, ec), end; !ec && it != end; it.increment(ec))
    if (std::regex_match(it->path().filename().string(), file_re)) files.push_back(it->path());
  std::sort(files.begin(), files.end());
  std::vector<MetricResult> out;
  for (const auto& p : files) {
    std::ifstream f(p);
    std::string line;
    while (std::getline(f, line)) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object()) continue;
      auto res = j.find("results");
      if (res == j.end() || !res->is_object()) continue;
      MetricResult base;
      base.snapshot = j.value("snapshot_pkl", std::string());
      if (auto t = j.find("timestamp"); t != j.end() && t->is_number()) base.unix_time = t->get<double>();
      std::smatch m;
      if (std::regex_search(base.snapshot, m, snap_re)) base.kimg = m[2].matched ? std::stod(m[2]) / 1000 : std::stod(m[1]);
      for (auto r = res->begin(); r != res->end(); ++r) {
        if (!r->is_number() && !r->is_null()) continue;
        MetricResult mr = base;
        mr.metric = r.key();
        mr.value = r->is_null() ? kNaN : r->get<double>();
        out.push_back(mr);
      }
    }
  }
  return out;
}

std::vector<MetricResult> latest_metrics(const std::vector<MetricResult>& history) {
  std::map<std::string, MetricResult> latest;
  for (const auto& m : history) {
    auto it = latest.find(m.metric);
    if (it == latest.end() || m.unix_time >= it->second.unix_time) latest[m.metric] = m;
  }
  std::vector<MetricResult> out;
  for (auto& kv : latest) out.push_back(kv.second);
  return out;
}

std::vector<PromFamily> prometheus_families(const RunStatus& s, const std::vector<MetricResult>& latest, double now) {
  auto age_of = [now](double t) { return std::round(std::max(0.0, now - t) * 1000) / 1000; };  // ms resolution
  std::vector<PromFamily> f;
  auto single = [&](const char* name, const char* help, double v) { f.push_back({name, help, {{{}, v}}}); };
  {
    PromFamily st{"styleforge_state", "Run state: 1 for the current one of running, done, requeue, failed", {}};
    for (const char* name : {"running", "done", "requeue", "failed"})
      st.samples.push_back({{{"state", name}}, s.state == name ? 1.0 : 0.0});
    f.push_back(st);
  }
  single("styleforge_kimg", "Training progress in thousands of real images shown to D", s.kimg);
  single("styleforge_total_kimg", "Training length in kimg", s.total_kimg);
  single("styleforge_seconds_per_kimg", "Seconds per kimg (thousand real images) over the last tick", s.sec_per_kimg);
  single("styleforge_augment_p", "ADA augmentation probability p", s.augment_p);
  single("styleforge_r_t", "ADA overfitting heuristic r_t: mean sign of D(real) over the last tick", s.r_t);
  {
    PromFamily l{"styleforge_loss", "Mean over the last tick of each Loss/* statistic of stats.jsonl", {}};
    for (const auto& kv : s.losses) l.samples.push_back({{{"stat", kv.first}}, kv.second});
    f.push_back(l);
  }
  {
    PromFamily m{"styleforge_metric", "Latest value of each quality metric of metric-*.jsonl (FID, KID, ...)", {}};
    PromFamily k{"styleforge_metric_kimg", "kimg of the snapshot the latest metric value was computed on", {}};
    for (const auto& r : latest) {
      m.samples.push_back({{{"metric", r.metric}}, r.value});
      if (r.kimg >= 0) k.samples.push_back({{{"metric", r.metric}}, r.kimg});
    }
    f.push_back(m);
    f.push_back(k);
  }
  PromFamily age{"styleforge_rank_heartbeat_age_seconds", "Seconds since each rank last reported", {}};
  PromFamily step{"styleforge_rank_step", "Training iterations done by each rank", {}};
  PromFamily spk{"styleforge_rank_seconds_per_kimg", "Seconds per kimg of each rank over the last tick", {}};
  PromFamily cpu{"styleforge_rank_cpu_memory_bytes", "Resident set size of each rank", {}};
  PromFamily gpu{"styleforge_rank_gpu_memory_bytes", "Device memory in use by each rank", {}};
  for (const auto& r : s.ranks) {
    std::vector<std::pair<std::string, std::string>> lab = {{"rank", std::to_string(r.rank)}, {"host", r.host}};
    age.samples.push_back({lab, age_of(r.unix_time)});
    step.samples.push_back({lab, static_cast<double>(r.step)});
    spk.samples.push_back({lab, r.sec_per_kimg});
    cpu.samples.push_back({lab, r.cpu_mem_gb * 1024.0 * 1024.0 * 1024.0});
    gpu.samples.push_back({lab, r.gpu_mem_gb * 1024.0 * 1024.0 * 1024.0});
  }
  for (auto* p : {&age, &step, &spk, &cpu, &gpu}) f.push_back(std::move(*p));
  {
    PromFamily c{"styleforge_checkpoint_age_seconds", "Seconds since the newest checkpoint was written", {}};
    if (!s.last_checkpoint.empty() && s.last_checkpoint_unix_time > 0)
      c.samples.push_back({{}, age_of(s.last_checkpoint_unix_time)});
    f.push_back(c);
  }
  single("styleforge_status_timestamp_seconds", "Unix time at which the run last published its status", s.unix_time);
  return f;
}

std::string prometheus_text(const std::vector<PromFamily>& families, const std::string& run_name) {
  std::ostringstream out;
  const std::string run = "run=\"" + escape_label(run_name) + "\"";
  for (const auto& fam : families) {
    out << "# HELP " << fam.name << " " << escape_help(fam.help) << "\n";
    out << "# TYPE " << fam.name << " gauge\n";
    for (const auto& smp : fam.samples) {
      out << fam.name << "{" << run;
      for (const auto& l : smp.labels) out << "," << l.first << "=\"" << escape_label(l.second) << "\"";
      out << "} " << prom_number(smp.value) << "\n";
    }
  }
  return out.str();
}

std::string run_name_of(const std::string& run_dir) {
  fs::path p = fs::path(run_dir).lexically_normal();
  std::string name = p.filename().string();
  if (name.empty()) name = p.parent_path().filename().string();
  if (name.empty() || name == ".") name = fs::absolute(p).lexically_normal().filename().string();
  return name.empty() ? "run" : name;
}

std::string safe_file_name(const std::string& name) {
  std::string out;
  for (char c : name) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-') ? c : '_';
  return out.empty() ? "run" : out;
}

void set_metrics_http_bind(const std::string& bind) {
  std::lock_guard<std::mutex> lock(g_http_mu);
  g_http_bind = bind;
  g_http.reset();
  g_http_failed = false;
}

void publish_run_status(const std::string& run_dir, const RunStatus& status) {
  try {
    RunStatus s = status;
    const double now = unix_now();
    if (s.unix_time <= 0 || std::isnan(s.unix_time)) s.unix_time = now;
    if (s.last_checkpoint.empty()) {
      auto [name, t] = newest_checkpoint(run_dir);
      s.last_checkpoint = name;
      if (s.last_checkpoint_unix_time <= 0) s.last_checkpoint_unix_time = t;
    }
    const std::vector<MetricResult> latest = latest_metrics(read_metric_history(run_dir));
    const std::string name = run_name_of(run_dir);
    nlohmann::json j = status_to_json(s);
    j["run"] = name;
    j["metrics"] = nlohmann::json::object();
    for (const auto& m : latest) j["metrics"][m.metric] = m.value;
    write_atomic(fs::path(run_dir) / "status.json", j.dump(2) + "\n");
    const std::string text = prometheus_text(prometheus_families(s, latest, now), name);
    write_atomic(fs::path(run_dir) / "styleforge.prom", text);
    if (const char* dir = std::getenv("STYLEFORGE_PROM_DIR"); dir && *dir)
      write_atomic(fs::path(dir) / (safe_file_name(name) + ".prom"), text);
    std::lock_guard<std::mutex> lock(g_http_mu);
    if (!g_http_bind.empty() && !g_http && !g_http_failed) {
      try {
        g_http = std::make_unique<MetricsHttpServer>(g_http_bind);
        std::cout << "Serving Prometheus metrics on http://" << g_http_bind << "/metrics" << std::endl;
      } catch (const std::exception& e) {
        g_http_failed = true;
        warn_once(std::string("metrics endpoint: ") + e.what());
      }
    }
    if (g_http) g_http->update(s, name, latest);
  } catch (const std::exception& e) {
    warn_once("publishing the run status to " + run_dir + ": " + e.what());
  }
}

void set_run_state(const std::string& run_dir, const std::string& state) {
  RunStatus s;
  if (!read_run_status(run_dir, &s)) return;
  s.state = state;
  s.unix_time = 0;
  s.last_checkpoint.clear();  // a checkpoint may have been written since
  s.last_checkpoint_unix_time = 0;
  publish_run_status(run_dir, s);
}

long long snapshot_order(const std::string& name) {
  static const std::regex re(R"(^network-snapshot-(\d+)(?:-(\d+))?\.(h5|pkl)$)");
  std::smatch m;
  if (!std::regex_match(name, m, re)) return -1;
  return m[2].matched ? std::stoll(m[2]) : std::stoll(m[1]) * 1000;
}

std::string newest_snapshot_name(const std::string& run_dir) {
  std::string best;
  long long best_order = -1;
  std::error_code ec;
  for (fs::directory_iterator it(run_dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const long long order = snapshot_order(name);
    if (order > best_order || (order == best_order && order >= 0 && name < best)) best = name, best_order = order;
  }
  return best;
}

}  // namespace sf::metrics
