// `styleforge metrics`: FID/KID of a checkpoint's G_ema, offline and single rank (metrics/metrics.h).
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "launcher/cli.h"
#include "launcher/progress.h"
#include "metrics/metrics.h"

namespace po = boost::program_options;

namespace sf::cli {

int cmd_metrics(const std::vector<std::string>& args) {
  metrics::MetricsCommandOptions o;
  std::string names;
  bool no_cache = false, quiet = false;
  bool mirror = false;
  po::options_description desc("options");
  desc.add_options()
      ("network", po::value(&o.network)->required(), "styleforge checkpoint, or a reference network pickle (.pkl, imported on the fly); its G_ema is evaluated")
      ("data", po::value(&o.data), "dataset pack of the reals (default: the run's, from the checkpoint)")
      ("metrics", po::value(&names)->default_value("fid50k_full"), "comma-separated metric names")
      ("detector", po::value(&o.detector),
       "TorchScript feature detector (default: $STYLEFORGE_DETECTOR, then <cache dir>/inception-2015-12-05.pt)")
      ("num-gen", po::value(&o.num_gen)->default_value(0), "generated images per metric (0: as the name says)")
      ("seed", po::value(&o.seed)->default_value(0), "seed of z, labels, noise and KID subsets")
      ("mirror", po::value(&mirror), "the run trained with x-flips (default: as the checkpoint says)")
      ("run-dir", po::value(&o.run_dir),
       "append metric-<name>.jsonl here (default: the checkpoint's folder when it holds training_options.json)")
      ("cache-dir", po::value(&o.cache_dir), "cache folder (default: $STYLEFORGE_CACHE or ~/.cache/styleforge)")
      ("no-cache", po::bool_switch(&no_cache), "neither read nor write the real-statistics cache")
      ("batch", po::value(&o.batch)->default_value(64), "images per detector call")
      ("batch-gen", po::value(&o.batch_gen)->default_value(4), "images per generator call (divides --batch)")
      ("threads", po::value(&o.threads)->default_value(0), "LibTorch threads (0: library default)")
      ("device", po::value(&o.device)->default_value("auto"), "auto | cpu | cuda | cuda:N (generator and detector)")
      ("quiet,q", po::bool_switch(&quiet), "no progress bar");
  po::variables_map vm;
  std::ostringstream usage;
  usage << "--network CKPT [--data PACK] [--metrics fid50k_full,kid50k_full] [options]\n\nmetrics:";
  for (const auto& d : metrics::describe_metrics()) usage << "\n  " << d;
  if (int rc = parse_options("metrics", usage.str(), args, desc, vm); rc >= 0) return rc;
  if (vm.count("mirror")) o.mirror = mirror;
  o.use_cache = !no_cache;
  for (size_t pos = 0; pos <= names.size();) {
    size_t next = names.find(',', pos);
    std::string n = names.substr(pos, next == std::string::npos ? std::string::npos : next - pos);
    if (!n.empty()) o.metrics.push_back(n);
    if (next == std::string::npos) break;
    pos = next + 1;
  }
  if (std::string err = metrics::check_metric_names(o.metrics); !err.empty()) {
    std::cerr << "styleforge metrics: --metrics: " << err << "\n";
    return kUsage;
  }
  if (o.num_gen < 0 || o.batch < 1 || o.batch_gen < 1 || o.batch % o.batch_gen != 0) {
    std::cerr << "styleforge metrics: --num-gen must be >= 0 and --batch a positive multiple of --batch-gen\n";
    return kUsage;
  }
  if (!o.run_dir.empty() && !std::filesystem::is_directory(o.run_dir)) {
    std::cerr << "styleforge metrics: --run-dir " << o.run_dir << ": not a directory\n";
    return kUsage;
  }
  // One bar per stage ("reals", "generated"); a new stage starts a new bar.
  auto bar = std::make_shared<Progress>("", 0, "images", Progress::enabled_if(!quiet));
  auto stage_of = std::make_shared<std::string>();
  o.progress = [bar, stage_of](const std::string& stage, int64_t done, int64_t total) {
    if (stage != *stage_of) {
      *stage_of = stage;
      bar->restart(stage, total, "images");
    }
    bar->set_total(total);
    bar->update(done);
  };
  o.log = [](const std::string& line) { std::cerr << line << "\n"; };
  return metrics::run_metrics_command(o) == 0 ? kOk : kFailure;
}

}  // namespace sf::cli
