// `styleforge generate`: images of a trained generator for a list of seeds (CLI wrapper of
// trainer::run_generate, see trainer/training_loop.h).
#include <iostream>

#include "launcher/cli.h"
#include "trainer/training_loop.h"

namespace po = boost::program_options;

namespace sf::cli {

int cmd_generate(const std::vector<std::string>& args) {
  trainer::GenerateRequest r;
  std::string seeds;
  po::options_description desc("options");
  desc.add_options()
      ("network", po::value(&r.network)->required(), "checkpoint (network-snapshot-*.h5)")
      ("seeds", po::value(&seeds)->default_value("0-31"), "seeds, e.g. 0-31 or 1,5,7-9 (z as numpy RandomState(seed).randn)")
      ("trunc", po::value(&r.truncation_psi)->default_value(1.0), "truncation psi")
      ("class", po::value(&r.class_idx)->default_value(-1), "class label of a conditional network")
      ("noise-mode", po::value(&r.noise_mode)->default_value("const"), "const | random | none")
      ("outdir", po::value(&r.outdir)->required(), "where seedNNNN.png and grid.png are written")
      ("threads", po::value(&r.threads)->default_value(0), "LibTorch threads (0: all cores)")
      ("device", po::value(&r.device)->default_value("auto"), "auto | cpu | cuda | cuda:N");
  po::variables_map vm;
  if (int rc = parse_options("generate", "--network CKPT --seeds 0-31 --outdir DIR [options]", args, desc, vm); rc >= 0)
    return rc;
  try {
    r.seeds = trainer::parse_seed_list(seeds);
    trainer::run_generate(r);
  } catch (const std::invalid_argument& e) {
    std::cerr << "styleforge generate: " << e.what() << "\n";
    return kUsage;
  }
  return kOk;
}

}  // namespace sf::cli
