// `styleforge status RUN_DIR...`: one line per run (state, progress, speed, ETA, p, FID/KID,
// slowest rank, last checkpoint), read from the files a run writes (metrics/monitor.h). Only
// reads, so it works on run directories of running jobs on a shared file system.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "launcher/cli.h"
#include "metrics/monitor.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace sf::cli {
namespace {

// A run directory as given, or the run directories inside a folder of runs (an --outdir); the
// argument itself when it holds none (summarize_run then says what is wrong with it).
std::vector<std::string> expand(const std::string& arg) {
  std::vector<std::string> out = metrics::find_run_directories(arg);
  if (out.empty()) out.push_back(arg);
  return out;
}

nlohmann::json summary_json(const metrics::RunSummary& r) {
  nlohmann::json j = metrics::status_to_json(r.status);
  j["run"] = r.name;
  j["run_dir"] = r.run_dir;
  j["state"] = r.state;
  j["status_age_sec"] = r.age_sec;
  j["eta_sec"] = r.eta_sec;
  j["checkpoint"] = r.checkpoint;
  j["checkpoint_age_sec"] = r.checkpoint_age_sec;
  j["metrics"] = nlohmann::json::object();
  for (const auto& m : r.metrics) j["metrics"][m.metric] = m.value;
  if (r.slowest_rank >= 0) {
    // A heartbeat age only while the ranks run (a finished run's ranks have stopped beating).
    const bool alive = r.state == "running" || r.state == "stalled";
    j["slowest_rank"] = {{"rank", r.slowest_rank}, {"host", r.slowest_host},
                         {"heartbeat_age_sec", alive ? nlohmann::json(r.slowest_age_sec) : nlohmann::json()},
                         {"sec_per_kimg", r.slowest_sec_per_kimg}};
  }
  return j;
}

}  // namespace

int cmd_status(const std::vector<std::string>& args) {
  std::vector<std::string> dirs;
  double stale_minutes = 30;
  double watch = 0;
  bool json = false, no_header = false;
  std::string set_state;
  po::options_description desc("options");
  desc.add_options()
      ("run-dir", po::value(&dirs)->multitoken(), "run directories (or folders of run directories); also positional")
      ("stale-minutes", po::value(&stale_minutes)->default_value(30),
       "a running run whose status is older than this (and than 3 ticks at its speed) is 'stalled'")
      ("json", po::bool_switch(&json), "print a JSON array instead of lines")
      ("no-header", po::bool_switch(&no_header), "omit the column header")
      ("watch", po::value(&watch)->default_value(0), "repeat every N seconds (0: once)")
      ("set-state", po::value(&set_state),
       "for job scripts: record STATE (failed, done, requeue, running) in each run's status.json and .prom, then print");
  po::positional_options_description pos;
  pos.add("run-dir", -1);
  po::variables_map vm;
  if (int rc = parse_options("status", "RUN_DIR... [--stale-minutes 30] [--json] [--watch N]", args, desc, vm, &pos); rc >= 0)
    return rc;
  if (dirs.empty()) {
    std::cerr << "styleforge status: give at least one run directory (see styleforge status --help)\n";
    return kUsage;
  }
  if (!set_state.empty()) {
    if (set_state != "failed" && set_state != "done" && set_state != "requeue" && set_state != "running") {
      std::cerr << "styleforge status: --set-state must be failed, done, requeue or running\n";
      return kUsage;
    }
    for (const auto& d : dirs) metrics::set_run_state(d, set_state);
  }
  int rc = kOk;
  while (true) {
    const double now = metrics::unix_now();
    nlohmann::json all = nlohmann::json::array();
    std::vector<metrics::RunSummary> runs;
    for (const auto& arg : dirs)
      for (const auto& d : expand(arg)) {
        try {
          runs.push_back(metrics::summarize_run(d, now, stale_minutes * 60));
          if (json) all.push_back(summary_json(runs.back()));
        } catch (const std::exception& e) {
          std::cerr << "styleforge status: " << e.what() << "\n";
          rc = kFailure;
        }
      }
    if (json)
      std::cout << all.dump(2) << "\n";
    else if (!runs.empty() || !no_header)
      for (const auto& line : metrics::status_table(runs, !no_header)) std::cout << line << "\n";
    std::cout.flush();
    if (watch <= 0) break;
    std::this_thread::sleep_for(std::chrono::duration<double>(watch));
    if (!json) std::cout << "\n";
  }
  return rc;
}

}  // namespace sf::cli
