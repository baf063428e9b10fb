// `styleforge report RUN_DIR [--out DIR]`: PNG plots and report.html of a run (metrics/report.h).
#include <iostream>

#include "launcher/cli.h"
#include "metrics/report.h"

namespace po = boost::program_options;

namespace sf::cli {

int cmd_report(const std::vector<std::string>& args) {
  std::string run_dir, out;
  po::options_description desc("options");
  desc.add_options()
      ("run-dir", po::value(&run_dir), "the run directory (also positional)")
      ("out", po::value(&out), "where the plots and report.html go (default: the run directory)");
  po::positional_options_description pos;
  pos.add("run-dir", 1);
  po::variables_map vm;
  if (int rc = parse_options("report", "RUN_DIR [--out DIR]", args, desc, vm, &pos); rc >= 0) return rc;
  if (run_dir.empty()) {
    std::cerr << "styleforge report: give a run directory (see styleforge report --help)\n";
    return kUsage;
  }
  const metrics::ReportFiles files = metrics::write_report(run_dir, out);
  for (const auto& p : files.plots) std::cout << p << "\n";
  std::cout << files.html << "\n";
  return kOk;
}

}  // namespace sf::cli
