// `styleforge report`: PNG plots of a run's history and an HTML page that shows them.
//
// write_report(run_dir, out_dir) reads stats.jsonl, metric-*.jsonl, status.json (or what
// monitor.h's summarize_run derives without it), training_options.json and the newest
// fakesNNNNNN.png, and writes into out_dir (the run directory when empty):
//   plot-losses.png      Loss/G/loss and Loss/D/loss over kimg
//   plot-penalties.png   Loss/r1_penalty and Loss/pl_penalty over kimg
//   plot-augment.png     ADA's p and r_t (mean sign of D(real)), with the target as a dashed line
//   plot-fid.png, plot-kid.png, plot-<other>.png   each metric family of metric-*.jsonl over kimg
//   plot-speed.png       sec/kimg over kimg
//   report.html          the status summary, the plots, the latest fakes grid, ranks, options
// Resumes (a new process: Timing/total_sec starts over) show as dashed vertical lines; ticks a
// killed run wrote past its last checkpoint, and that the resumed run wrote again, are replaced
// by the newer ones. Only reads the run directory (besides writing out_dir). Throws
// std::runtime_error, writing nothing, when run_dir is not a run directory (is_run_directory of
// monitor.h: an empty folder, or a folder of runs). Torch-free.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace sf::metrics {

// The tick history of stats.jsonl: x = Progress/kimg, one series of means per stat name.
struct StatsHistory {
  std::vector<double> kimg;
  std::map<std::string, std::vector<double>> mean;  // name -> one value per tick (NaN when absent)
  std::vector<double> resumes;                      // kimg at which a later process continued
};
StatsHistory read_stats_history(const std::string& run_dir);

struct ReportFiles {
  std::vector<std::string> plots;  // paths of the PNGs written
  std::string html;                // path of report.html
};
ReportFiles write_report(const std::string& run_dir, const std::string& out_dir = "");

}  // namespace sf::metrics
