// `styleforge phantoms`: the CLI wrapper of data::write_phantom_folder (data/phantom.h), a folder
// of MRI-like head phantoms with dataset.json labels that `styleforge pack` turns into a pack.
#include <cstdio>
#include <iostream>

#include "data/phantom.h"
#include "launcher/cli.h"
#include "launcher/progress.h"

namespace po = boost::program_options;

namespace sf::cli {

int cmd_phantoms(const std::vector<std::string>& args) {
  data::PhantomOptions o;
  std::string dest, weighting;
  int64_t count = 1000;
  bool force = false, quiet = false;
  po::options_description desc("options");
  desc.add_options()
      ("dest", po::value(&dest)->required(), "the folder to write (img00000000.png ... and dataset.json)")
      ("count", po::value(&count)->default_value(1000), "number of images")
      ("resolution", po::value(&o.resolution)->default_value(64), "image size in pixels, a power of two (8..4096)")
      ("seed", po::value(&o.seed)->default_value(0), "random seed; image i depends only on (seed, i) and the options")
      ("lesion-fraction", po::value(&o.lesion_fraction)->default_value(0.5, "0.5"), "probability of a lesion (label 1) per image")
      ("noise", po::value(&o.noise)->default_value(0.03, "0.03"), "Rician noise sigma relative to full scale")
      ("weighting", po::value(&weighting)->default_value("t1"), "t1 | t2: tissue contrast")
      ("force", po::bool_switch(&force), "replace an existing non-empty folder")
      ("quiet", po::bool_switch(&quiet), "no progress bar");
  po::variables_map vm;
  if (int rc = parse_options("phantoms", "--dest DIR [--count 1000] [--resolution 64] [--seed 0] [options]", args, desc, vm);
      rc >= 0)
    return rc;
  auto usage = [](const std::string& msg) {
    std::cerr << "styleforge phantoms: " << msg << " (see styleforge phantoms --help)\n";
    return kUsage;
  };
  if (o.resolution < 8 || o.resolution > 4096 || (o.resolution & (o.resolution - 1)))
    return usage("--resolution must be a power of two in [8, 4096]");
  if (count < 1 || count > 99999999) return usage("--count must be in [1, 99999999]");
  if (!(o.lesion_fraction >= 0 && o.lesion_fraction <= 1)) return usage("--lesion-fraction must be in [0, 1]");
  if (!(o.noise >= 0 && o.noise <= 1)) return usage("--noise must be in [0, 1]");
  try {
    o.weighting = data::parse_weighting(weighting);
  } catch (const data::PhantomError& e) {
    return usage(std::string("--weighting: ") + e.what());
  }
  Progress bar("phantoms", count, "images", Progress::enabled_if(!quiet));
  data::PhantomFolderSummary s =
      data::write_phantom_folder(dest, count, o, force, [&bar](int64_t done, int64_t total) { bar.update(done); });
  std::printf("wrote %lld phantoms %dx%d (%lld with a lesion, label 1) to %s in %.2f s\n", static_cast<long long>(s.count),
              o.resolution, o.resolution, static_cast<long long>(s.lesions), dest.c_str(), s.seconds);
  return kOk;
}

}  // namespace sf::cli
