// `styleforge selftest`: the reference fixtures check (see trainer/selftest.h).
#include <cstdlib>
#include <iostream>

#include "launcher/cli.h"
#include "metrics/metrics.h"
#include "trainer/selftest.h"

namespace po = boost::program_options;

namespace sf::cli {

int cmd_selftest(const std::vector<std::string>& args) {
  trainer::SelftestOptions o;
  const char* env = std::getenv("STYLEFORGE_FIXTURES");
  std::string kinds;
  po::options_description desc("options");
  desc.add_options()
      ("fixtures", po::value(&o.fixtures_dir)->default_value(env ? env : "../shared/fixtures"),
       "folder of reference fixtures (env STYLEFORGE_FIXTURES)")
      ("tolerance", po::value(&o.tolerance)->default_value(1e-5), "largest accepted relative error")
      ("threads", po::value(&o.threads)->default_value(0), "LibTorch threads (0: library default)")
      ("kinds", po::value(&kinds), "comma-separated kinds to check (default: all known)")
      ("verbose,v", po::bool_switch(&o.verbose), "print the error of every compared dataset")
      ("strict", po::bool_switch(&o.strict),
       "fail on any error above the tolerance, even where a one-ulp change of the inputs moves our own result more")
      ("float64", po::bool_switch(&o.float64),
       "recompute in float64: shows how much of a difference is float32 rounding alone")
      ("conv", po::value(&o.conv)->default_value("auto"),
       "CPU 3x3 convolutions: auto (as training: Winograd where faster), aten (oneDNN, the reference's kernels) "
       "or winograd");
  po::variables_map vm;
  if (int rc = parse_options("selftest", "[--fixtures DIR]", args, desc, vm); rc >= 0) return rc;
  size_t pos = 0;
  while (!kinds.empty() && pos != std::string::npos) {
    size_t next = kinds.find(',', pos);
    o.kinds.push_back(kinds.substr(pos, next == std::string::npos ? next : next - pos));
    pos = next == std::string::npos ? next : next + 1;
  }
  metrics::register_selftest_kinds();
  return trainer::run_selftest(o) == 0 ? kOk : kFailure;
}

}  // namespace sf::cli
