// `styleforge bench-ops`: the CLI wrapper of trainer::run_bench_ops (trainer/bench_ops.h).
#include <iostream>

#include "launcher/cli.h"
#include "trainer/bench_ops.h"

namespace po = boost::program_options;

namespace sf::cli {

int cmd_bench_ops(const std::vector<std::string>& args) {
  trainer::BenchOpsOptions o;
  po::options_description desc("options");
  desc.add_options()
      ("device", po::value(&o.device)->default_value("cpu"), "auto | cpu | cuda | cuda:N")
      ("threads", po::value(&o.threads)->default_value(1), "LibTorch threads")
      ("iters", po::value(&o.iters)->default_value(9), "timed repetitions per path (median reported)")
      ("shapes", po::value(&o.shapes)->default_value("auto"),
       "auto (small on the CPU, large on CUDA) | small (the CPU bench's layers) | large (256x256 --cfg auto's)")
      ("only", po::value(&o.only)->default_value(""), "run only the cases whose name contains this");
  po::variables_map vm;
  if (int rc = parse_options("bench-ops", "[--device cpu|cuda] [--threads 1] [--iters 9]", args, desc, vm); rc >= 0)
    return rc;
  return trainer::run_bench_ops(o, std::cout);
}

}  // namespace sf::cli
