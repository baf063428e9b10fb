// `styleforge generate`: images of a trained generator for a list of seeds, as PNGs or a pack,
// style mixing and latent interpolation (CLI wrapper of trainer::run_generate, see
// trainer/generate.h).
#include <sys/resource.h>

#include <cstdio>
#include <iostream>
#include <memory>
#include <tuple>

#include "launcher/cli.h"
#include "launcher/progress.h"
#include "trainer/generate.h"

namespace po = boost::program_options;

namespace sf::cli {
namespace {

// Peak resident memory of this process in MiB (Linux reports ru_maxrss in KiB).
double peak_rss_mib() {
  struct rusage ru {};
  ::getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_maxrss) / 1024.0;
}

std::vector<int> to_layers(const std::vector<int64_t>& v) { return std::vector<int>(v.begin(), v.end()); }

}  // namespace

int cmd_generate(const std::vector<std::string>& args) {
  trainer::GenerateRequest r;
  std::string seeds, cls, grid, mix, styles;
  bool quiet = false;
  po::options_description desc("options");
  desc.add_options()
      ("network", po::value(&r.network)->required(), "checkpoint (network-snapshot-*.h5) or a reference network pickle (.pkl, imported on the fly)")
      ("seeds", po::value(&seeds)->default_value("0-31"), "seeds, e.g. 0-31 or 1,5,7-9 (z as numpy RandomState(seed).randn)")
      ("trunc", po::value(&r.truncation_psi)->default_value(1.0, "1"), "truncation psi")
      ("class", po::value(&cls), "class of a conditional network: K, or all (every seed for every class)")
      ("noise-mode", po::value(&r.noise_mode)->default_value("const"), "const | random | none")
      ("outdir", po::value(&r.outdir), "where seedNNNN.png and grid.png are written")
      ("dest", po::value(&r.dest), "write the images into this pack (FILE.h5, see `styleforge pack`) instead of PNGs; "
                                   "conditional networks give class labels")
      ("force", po::bool_switch(&r.force), "replace an existing --dest pack")
      ("batch", po::value(&r.batch)->default_value(0), "images per forward pass (0: 32 on a GPU, 4 on the CPU); never changes an image")
      ("grid", po::value(&grid)->default_value("auto"),
       "grid.png of the first seeds: COLSxROWS, none, or auto (at most 8x8; --class all: a row per class)")
      ("mix", po::value(&mix), "style mixing ROWS:COLS, e.g. 85,100,75:55,821 (as the reference's style_mixing.py)")
      ("styles", po::value(&styles)->default_value("0-6"), "--mix: ws layers taken from the column seeds")
      ("interpolate", po::value(&r.interpolate), "N frames between consecutive --seeds, linear in W (frameNNNNNN.png, interpolation.gif)")
      ("fps", po::value(&r.fps)->default_value(25), "--interpolate: frames per second of interpolation.gif")
      ("channels-to-rgb", po::value(&r.channels_to_rgb), "PNGs/GIF of images with C channels: channels shown as R,G,B, e.g. 0,1,3 (one index: gray); default: gray for C = 1, RGB for C = 3, one gray panel per channel side by side otherwise")
      ("threads", po::value(&r.threads)->default_value(0), "LibTorch threads (0: all cores)")
      ("device", po::value(&r.device)->default_value("auto"), "auto | cpu | cuda | cuda:N")
      ("quiet", po::bool_switch(&quiet), "no progress bar");
  po::variables_map vm;
  if (int rc = parse_options("generate", "--network CKPT --seeds 0-31 (--outdir DIR | --dest FILE.h5) [options]", args,
                             desc, vm);
      rc >= 0)
    return rc;
  auto usage = [](const std::string& msg) {
    std::cerr << "styleforge generate: " << msg << " (see styleforge generate --help)\n";
    return kUsage;
  };
  try {
    r.seeds = trainer::parse_seed_list(seeds);
    if (vm.count("class")) {
      if (cls == "all") {
        r.class_idx = trainer::kAllClasses;
      } else {
        size_t used = 0;
        try {
          r.class_idx = std::stoi(cls, &used);
        } catch (const std::logic_error&) {
          used = 0;
        }
        if (used != cls.size() || cls.empty() || r.class_idx < 0) return usage("--class '" + cls + "': expected a class index or all");
      }
    }
    if (grid != "auto") std::tie(r.grid_cols, r.grid_rows) = trainer::parse_grid_size(grid);
    if (vm.count("mix")) {
      const size_t colon = mix.find(':');
      if (colon == std::string::npos) return usage("--mix '" + mix + "': expected ROWS:COLS seed lists, e.g. 0-3:10-12");
      try {
        r.mix_rows = trainer::parse_seed_list(mix.substr(0, colon));
        r.mix_cols = trainer::parse_seed_list(mix.substr(colon + 1));
      } catch (const std::invalid_argument&) {
        return usage("--mix '" + mix + "': expected ROWS:COLS seed lists, e.g. 0-3:10-12");
      }
      if (!vm["styles"].defaulted()) {
        try {
          r.mix_styles = to_layers(trainer::parse_seed_list(styles));
        } catch (const std::invalid_argument&) {
          return usage("--styles '" + styles + "': expected layer indices, e.g. 0-6 or 8,9");
        }
      }
    } else if (!vm["styles"].defaulted()) {
      return usage("--styles applies to --mix only");
    }
    if (vm.count("interpolate") && r.interpolate < 0) return usage("--interpolate must be >= 0");
  } catch (const std::invalid_argument& e) {
    return usage(e.what());
  }

  std::unique_ptr<Progress> bar;
  r.progress = [&](int64_t done, int64_t total) {
    if (quiet) return;
    if (!bar) bar = std::make_unique<Progress>("generate", total, "images");
    bar->update(done);
  };
  trainer::GenerateSummary s;
  try {
    trainer::run_generate(r, &s);
  } catch (const std::invalid_argument& e) {
    std::cerr << "styleforge generate: " << e.what() << "\n";
    return kUsage;
  }
  if (bar) bar->finish();
  std::string where = s.written;
  if (!s.grid.empty()) where += ", " + s.grid;
  if (!s.gif.empty()) where += ", " + s.gif;
  std::printf("generated %lld %s %dx%dx%d on %s (batch %d) in %s (%s images/s): %s; peak RSS %.0f MiB\n",
              static_cast<long long>(s.images), s.images == 1 ? "image" : "images", s.resolution, s.resolution, s.channels,
              s.device.c_str(), s.batch, format_duration(s.seconds).c_str(),
              format_rate(s.seconds > 0 ? static_cast<double>(s.images) / s.seconds : 0).c_str(), where.c_str(), peak_rss_mib());
  return kOk;
}

}  // namespace sf::cli
