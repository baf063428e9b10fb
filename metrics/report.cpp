// `styleforge report`: plots and report.html of a run directory (report.h).
#include "metrics/report.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>

#include "data/image.h"
#include "metrics/monitor.h"
#include "metrics/report_plot.h"

namespace fs = std::filesystem;

namespace sf::metrics {
namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

double mean_of(const nlohmann::json& j, const std::string& name) {
  auto it = j.find(name);
  if (it == j.end()) return kNaN;
  if (it->is_number()) return it->get<double>();
  if (it->is_object())
    if (auto m = it->find("mean"); m != it->end() && m->is_number()) return m->get<double>();
  return kNaN;
}

std::string html_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      default: o += c;
    }
  }
  return o;
}

std::string num(double v, const char* f = "%.4g") {
  if (std::isnan(v)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

// The newest file named <prefix>NNNNNN.png (by number), "" if none.
std::string newest_numbered(const std::string& dir, const std::string& prefix) {
  const std::regex re("^" + prefix + R"((\d+)\.png$)");
  std::string best;
  long long best_n = -1;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::smatch m;
    if (std::regex_match(name, m, re) && std::stoll(m[1]) > best_n) best = name, best_n = std::stoll(m[1]);
  }
  return best;
}

Series series_of(const StatsHistory& h, const std::string& stat, const std::string& label, int color, bool dashed = false) {
  Series s;
  s.name = label;
  s.color = palette(color);
  s.dashed = dashed;
  auto it = h.mean.find(stat);
  if (it == h.mean.end()) return s;
  s.x = h.kimg;
  s.y = it->second;
  return s;
}

// "fid50k_full" -> "fid", "pr50k3_full_precision" -> "pr": the letters before the first digit.
std::string metric_family(const std::string& name) {
  size_t i = 0;
  while (i < name.size() && std::isalpha(static_cast<unsigned char>(name[i]))) ++i;
  return i == 0 ? "metric" : name.substr(0, i);
}

}  // namespace

StatsHistory read_stats_history(const std::string& run_dir) {
  StatsHistory h;
  std::vector<nlohmann::json> ticks;
  std::vector<double> kimg;
  std::ifstream f(fs::path(run_dir) / "stats.jsonl");
  std::string line;
  double last_total_sec = -1;
  while (std::getline(f, line)) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) continue;  // e.g. a line being appended
    const double k = mean_of(j, "Progress/kimg");
    if (std::isnan(k)) continue;
    const double total_sec = mean_of(j, "Timing/total_sec");
    const bool new_process = !std::isnan(total_sec) && last_total_sec >= 0 && total_sec < last_total_sec;
    // Ticks at or past this one were written by an earlier process after its last checkpoint.
    while (!kimg.empty() && kimg.back() >= k) kimg.pop_back(), ticks.pop_back();
    if (new_process) h.resumes.push_back(kimg.empty() ? k : kimg.back());
    if (!std::isnan(total_sec)) last_total_sec = total_sec;
    kimg.push_back(k);
    ticks.push_back(std::move(j));
  }
  std::set<std::string> names;
  for (const auto& t : ticks)
    for (auto it = t.begin(); it != t.end(); ++it)
      if (it->is_object() || it->is_number()) names.insert(it.key());
  names.erase("timestamp");
  h.kimg = kimg;
  for (const auto& n : names) {
    std::vector<double> v;
    v.reserve(ticks.size());
    for (const auto& t : ticks) v.push_back(mean_of(t, n));
    h.mean[n] = std::move(v);
  }
  // Keep only resume marks that still lie inside the kept history.
  h.resumes.erase(std::remove_if(h.resumes.begin(), h.resumes.end(), [&](double r) { return kimg.empty() || r > kimg.back(); }),
                  h.resumes.end());
  return h;
}

ReportFiles write_report(const std::string& run_dir, const std::string& out_dir_arg) {
  if (!fs::is_directory(run_dir)) throw std::runtime_error(run_dir + ": no such directory");
  if (!is_run_directory(run_dir))
    throw std::runtime_error(run_dir + ": not a run directory (no stats.jsonl, training_options.json, status.json or log.txt)");
  const std::string out_dir = out_dir_arg.empty() ? run_dir : out_dir_arg;
  fs::create_directories(out_dir);
  const bool same_dir = fs::equivalent(run_dir, out_dir);
  const double now = unix_now();
  const RunSummary sum = summarize_run(run_dir, now, 30 * 60);
  const StatsHistory h = read_stats_history(run_dir);
  const std::vector<MetricResult> metric_history = read_metric_history(run_dir);
  nlohmann::json options;
  {
    std::ifstream f(fs::path(run_dir) / "training_options.json");
    if (f) options = nlohmann::json::parse(f, nullptr, false);
    if (options.is_discarded()) options = nlohmann::json();
  }
  const std::string run_name = run_name_of(run_dir);

  ReportFiles out;
  struct Plot {
    std::string file, caption;
  };
  std::vector<Plot> plots;
  auto save = [&](const std::string& file, PlotSpec spec, const std::string& caption, bool marks = true) {
    if (marks) spec.x_marks = h.resumes, spec.x_mark_label = "resumed";
    const std::string path = (fs::path(out_dir) / file).string();
    data::write_png_file(path, render_plot(spec));
    out.plots.push_back(path);
    plots.push_back({file, caption});
  };

  {
    PlotSpec p;
    p.title = "Losses (" + run_name + ")";
    p.xlabel = "kimg";
    p.ylabel = "loss (mean over tick)";
    p.series = {series_of(h, "Loss/G/loss", "G loss", 0), series_of(h, "Loss/D/loss", "D loss", 1)};
    save("plot-losses.png", p, "Generator and discriminator losses, mean over each tick.");
  }
  {
    PlotSpec p;
    p.title = "Regularization penalties";
    p.xlabel = "kimg";
    p.ylabel = "penalty (mean over tick)";
    p.series = {series_of(h, "Loss/r1_penalty", "R1 penalty", 2), series_of(h, "Loss/pl_penalty", "path length penalty", 3)};
    save("plot-penalties.png", p, "R1 gradient penalty of D and path-length penalty of G.");
  }
  {
    PlotSpec p;
    p.title = "Adaptive augmentation";
    p.xlabel = "kimg";
    p.ylabel = "p, r_t";
    p.series = {series_of(h, "Progress/augment", "p (augment probability)", 0),
                series_of(h, "Loss/signs/real", "r_t = E[sign(D(real))]", 1)};
    double target = options.is_object() && options.contains("ada_target") && options["ada_target"].is_number()
                        ? options["ada_target"].get<double>()
                        : (options.is_object() && options.value("aug", std::string()) == "ada" ? 0.6 : kNaN);
    if (!std::isnan(target) && !h.kimg.empty()) {
      Series t;
      t.name = "ADA target";
      t.color = {120, 120, 120};
      t.dashed = true;
      t.x = {h.kimg.front(), h.kimg.back()};
      t.y = {target, target};
      p.series.push_back(t);
    }
    save("plot-augment.png", p, "ADA raises p while r_t is above the target (D overfits) and lowers it otherwise.");
  }
  {
    // One plot per metric family; FID and KID always (empty until a metric-*.jsonl appears).
    std::map<std::string, std::map<std::string, std::vector<std::pair<double, double>>>> fam;  // family -> metric -> (kimg, v)
    fam["fid"];
    fam["kid"];
    for (const auto& m : metric_history)
      if (m.kimg >= 0) fam[metric_family(m.metric)][m.metric].emplace_back(m.kimg, m.value);
    for (auto& [family, metrics] : fam) {
      PlotSpec p;
      std::string upper = family;
      for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      p.title = upper + " over training";
      p.xlabel = "kimg";
      p.ylabel = upper;
      p.empty_message = "no metric-" + family + "*.jsonl results yet";
      double lo = 1e300, hi = -1e300;
      int color = 0;
      for (auto& [name, pts] : metrics) {
        std::sort(pts.begin(), pts.end());
        Series s;
        s.name = name;
        s.color = palette(color++);
        s.markers = true;
        for (auto& [k, v] : pts) {
          s.x.push_back(k);
          s.y.push_back(v);
          if (v > 0) lo = std::min(lo, v), hi = std::max(hi, v);
        }
        p.series.push_back(s);
      }
      p.log_y = family == "fid" && lo > 0 && hi / lo > 20;
      save("plot-" + family + ".png", p, upper + " of the snapshots (lower is better for FID and KID).", false);
    }
  }
  {
    PlotSpec p;
    p.title = "Training speed";
    p.xlabel = "kimg";
    p.ylabel = "sec/kimg";
    p.series = {series_of(h, "Timing/sec_per_kimg", "sec/kimg", 0)};
    save("plot-speed.png", p, "Seconds per thousand real images over each tick (the first tick includes start-up).");
  }

  // Images shown on the page: the newest fakes grid and the reals.
  auto page_image = [&](const std::string& name) -> std::string {
    if (name.empty() || !fs::exists(fs::path(run_dir) / name)) return "";
    if (same_dir) return name;
    fs::copy_file(fs::path(run_dir) / name, fs::path(out_dir) / name, fs::copy_options::overwrite_existing);
    return name;
  };
  std::string fakes = newest_numbered(run_dir, "fakes");
  if (fakes.empty()) fakes = fs::exists(fs::path(run_dir) / "fakes_init.png") ? "fakes_init.png" : "";
  const std::string fakes_src = page_image(fakes);
  const std::string reals_src = page_image("reals.png");

  std::ostringstream html;
  html << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>styleforge report: "
       << html_escape(run_name) << "</title>\n<style>\n"
       << "body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1000px;color:#222;padding:0 1em}\n"
       << "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left}\n"
       << "th{background:#f3f3f3}img{max-width:100%;border:1px solid #ddd}figure{margin:1em 0}\n"
       << "figcaption{color:#555;font-size:.9em}.state-running{color:#0a7a32}.state-stalled,.state-failed{color:#b00020}"
       << ".state-requeue{color:#a66300}pre{background:#f7f7f7;padding:.6em;overflow:auto;font-size:.85em}\n"
       << "</style></head><body>\n";
  const RunStatus& s = sum.status;
  html << "<h1>" << html_escape(run_name) << "</h1>\n<table>\n";
  auto row = [&](const std::string& k, const std::string& v, const std::string& cls = "") {
    html << "<tr><th>" << html_escape(k) << "</th><td" << (cls.empty() ? "" : " class=\"" + cls + "\"") << ">"
         << html_escape(v) << "</td></tr>\n";
  };
  row("state", sum.state + (sum.age_sec >= 0 ? " (status " + format_duration(sum.age_sec) + " old)" : ""), "state-" + sum.state);
  row("progress", num(s.kimg, "%.3f") + " / " + num(s.total_kimg, "%.3f") + " kimg");
  row("speed", s.sec_per_kimg > 0 ? num(s.sec_per_kimg) + " sec/kimg" : "-");
  row("ETA", sum.eta_sec >= 0 ? format_duration(sum.eta_sec) : "-");
  row("augment p / r_t", num(s.augment_p, "%.4f") + " / " + num(s.r_t, "%.4f"));
  for (const auto& m : sum.metrics) row(m.metric, num(m.value) + (m.snapshot.empty() ? "" : " (" + m.snapshot + ")"));
  row("last checkpoint", sum.checkpoint.empty() ? "-" : sum.checkpoint + " (" + format_duration(sum.checkpoint_age_sec) + " ago)");
  if (!h.resumes.empty()) row("resumed", std::to_string(h.resumes.size()) + " time(s)");
  row("run directory", fs::absolute(run_dir).lexically_normal().string());
  html << "</table>\n";

  html << "<h2>Plots</h2>\n";
  for (const auto& p : plots)
    html << "<figure><img src=\"" << html_escape(p.file) << "\" alt=\"" << html_escape(p.file) << "\"><figcaption>"
         << html_escape(p.caption) << "</figcaption></figure>\n";
  html << "<h2>Latest generated images</h2>\n";
  if (fakes_src.empty())
    html << "<p>No fakes grid yet.</p>\n";
  else
    html << "<figure><img src=\"" << html_escape(fakes_src) << "\" alt=\"fakes\"><figcaption>" << html_escape(fakes_src)
         << " (G_ema at the last snapshot)</figcaption></figure>\n";
  if (!reals_src.empty())
    html << "<details><summary>Training images (reals.png)</summary><img src=\"" << html_escape(reals_src)
         << "\" alt=\"reals\"></details>\n";
  if (!s.ranks.empty()) {
    html << "<h2>Ranks</h2>\n<table><tr><th>rank</th><th>host</th><th>step</th><th>heartbeat age</th><th>sec/kimg</th>"
            "<th>CPU mem (GiB)</th><th>GPU mem (GiB)</th></tr>\n";
    for (const auto& r : s.ranks)
      html << "<tr><td>" << r.rank << "</td><td>" << html_escape(r.host) << "</td><td>" << r.step << "</td><td>"
           << format_duration(now - r.unix_time) << "</td><td>" << num(r.sec_per_kimg) << "</td><td>"
           << num(r.cpu_mem_gb, "%.2f") << "</td><td>" << num(r.gpu_mem_gb, "%.2f") << "</td></tr>\n";
    html << "</table>\n";
  }
  if (!options.is_null())
    html << "<details><summary>Training options</summary><pre>" << html_escape(options.dump(2)) << "</pre></details>\n";
  {
    char when[64];
    std::time_t t = static_cast<std::time_t>(now);
    std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S %Z", std::localtime(&t));
    html << "<p style=\"color:#777;font-size:.85em\">Written by styleforge report at " << when << ".</p>\n";
  }
  html << "</body></html>\n";
  out.html = (fs::path(out_dir) / "report.html").string();
  {
    const std::string tmp = out.html + ".tmp";
    std::ofstream f(tmp, std::ios::trunc);
    f << html.str();
    f.close();
    if (!f) throw std::runtime_error(tmp + ": write failed");
    fs::rename(tmp, out.html);
  }
  return out;
}

}  // namespace sf::metrics
