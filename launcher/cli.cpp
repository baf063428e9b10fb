#include "launcher/cli.h"

#include <cstdio>
#include <cstring>
#include <exception>
#include <iostream>

namespace po = boost::program_options;

namespace sf::cli {

const std::vector<Subcommand>& subcommands() {
  static const std::vector<Subcommand> table = {
      {"train", "train StyleGAN2-ADA on a dataset pack (or continue a run with --resume)", cmd_train},
      {"generate", "write images of a trained generator for a list of seeds", cmd_generate},
      {"bench", "time the training step on reals held in memory (sec/kimg)", cmd_bench},
      {"bench-ops", "each fused op against the ATen formulation it replaces (ms, alternating)", cmd_bench_ops},
      {"bench-comm", "bus bandwidth of the gradient sync against a raw MPI_Allreduce (under mpirun)", cmd_bench_comm},
      {"status", "one line per run: state, kimg, speed, ETA, p, FID/KID, slowest rank, last checkpoint", cmd_status},
      {"report", "PNG plots (losses, p and r_t, FID/KID, sec/kimg) and report.html of a run", cmd_report},
      {"import", "convert a reference network pickle (.pkl) to a checkpoint, executing nothing", cmd_import},
      {"export", "write a checkpoint as a reference network pickle (.pkl) for stylegan2-ada-pytorch's tools", cmd_export},
      {"pack", "pack images, TFRecords, NIfTI or DICOM into an HDF5 dataset pack", cmd_pack},
      {"phantoms", "write a folder of MRI-like head phantoms (labels: lesion or not)", cmd_phantoms},
      {"bench-data", "images/s of the pack reader against decoding PNG files", cmd_bench_data},
      {"classify", "ResNet-18/50 classifier on a pack's labels: real-only against real + synthetic images", cmd_classify},
      {"metrics", "FID/KID of a checkpoint against a dataset pack (offline, single rank)", cmd_metrics},
      {"vtt", "Visual Turing Test: one offline page of real and generated images for readers, and its key", cmd_vtt},
      {"vtt-score", "score readers' Visual Turing Test answers: accuracy, sensitivity, specificity, kappas", cmd_vtt_score},
      {"embed", "PCA and t-SNE maps (CSV, PNG) of detector features of real and generated images", cmd_embed},
      {"selftest", "recompute every reference fixture in a folder and compare", cmd_selftest},
      {"version", "print the versions of styleforge and the libraries it was built with", cmd_version},
  };
  return table;
}

static void print_help(std::FILE* out) {
  std::fprintf(out,
               "styleforge: StyleGAN2-ADA training on many MPI ranks\n\n"
               "usage: styleforge <subcommand> [options]   (styleforge <subcommand> --help for its options)\n\n"
               "subcommands:\n");
  for (const auto& s : subcommands()) std::fprintf(out, "  %-10s %s\n", s.name, s.summary);
}

int parse_options(const std::string& command, const std::string& usage, const std::vector<std::string>& args,
                  const po::options_description& desc, po::variables_map& vm,
                  const po::positional_options_description* pos) {
  po::options_description all(desc);
  all.add_options()("help,h", "print this help");
  try {
    po::command_line_parser parser(args);
    parser.options(all);
    if (pos) parser.positional(*pos);
    po::store(parser.run(), vm);
    if (vm.count("help")) {
      std::cout << "usage: styleforge " << command << " " << usage << "\n\n" << all << "\n";
      return kOk;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    std::cerr << "styleforge " << command << ": " << e.what() << " (see styleforge " << command << " --help)\n";
    return kUsage;
  }
  return -1;
}

int real_main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
    print_help(stdout);
    return argc < 2 ? kUsage : kOk;
  }
  if (!std::strcmp(argv[1], "--version")) return cmd_version({});
  std::string name = argv[1];
  std::vector<std::string> args(argv + 2, argv + argc);
  for (const auto& s : subcommands()) {
    if (name != s.name) continue;
    try {
      return s.run(args);
    } catch (const std::exception& e) {
      std::cerr << "styleforge " << name << ": error: " << e.what() << "\n";
      return kFailure;
    }
  }
  std::cerr << "styleforge: unknown subcommand '" << name << "' (styleforge --help lists them)\n";
  return kUsage;
}

}  // namespace sf::cli
