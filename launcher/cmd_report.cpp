// `styleforge report RUN_DIR [--out DIR]`: PNG plots and report.html of a run (metrics/report.h),
// or of each run in a folder of runs (an --outdir).
#include <filesystem>
#include <iostream>

#include "launcher/cli.h"
#include "metrics/monitor.h"
#include "metrics/report.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace sf::cli {

int cmd_report(const std::vector<std::string>& args) {
  std::string run_dir, out;
  po::options_description desc("options");
  desc.add_options()
      ("run-dir", po::value(&run_dir), "the run directory, or a folder of run directories (also positional)")
      ("out", po::value(&out), "where the plots and report.html go (default: the run directory; for a folder of runs, "
                               "one subfolder per run)");
  po::positional_options_description pos;
  pos.add("run-dir", 1);
  po::variables_map vm;
  if (int rc = parse_options("report", "RUN_DIR [--out DIR]", args, desc, vm, &pos); rc >= 0) return rc;
  if (run_dir.empty()) {
    std::cerr << "styleforge report: give a run directory (see styleforge report --help)\n";
    return kUsage;
  }
  std::error_code ec;
  if (!fs::is_directory(run_dir, ec)) {
    std::cerr << "styleforge report: " << run_dir << ": no such directory\n";
    return kFailure;
  }
  // A run directory, or a folder of them; anything else (an empty folder) is refused rather
  // than drawn as blank plots.
  const std::vector<std::string> runs = metrics::find_run_directories(run_dir);
  if (runs.empty()) {
    std::cerr << "styleforge report: " << run_dir
              << ": not a run directory and holds none (a run has stats.jsonl, training_options.json, status.json "
                 "or log.txt)\n";
    return kFailure;
  }
  const bool folder = runs.size() > 1 || !fs::equivalent(runs[0], run_dir, ec);
  int rc = kOk;
  for (const auto& r : runs) {
    const std::string to = out.empty() || !folder ? out : (fs::path(out) / fs::path(r).filename()).string();
    try {
      const metrics::ReportFiles files = metrics::write_report(r, to);
      for (const auto& p : files.plots) std::cout << p << "\n";
      std::cout << files.html << "\n";
    } catch (const std::exception& e) {
      std::cerr << "styleforge report: " << e.what() << "\n";
      rc = kFailure;
    }
  }
  if (folder) std::cout << "reported " << runs.size() << " run(s) of " << run_dir << "\n";
  return rc;
}

}  // namespace sf::cli
