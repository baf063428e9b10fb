// `styleforge import`: a reference network pickle to a styleforge checkpoint (trainer/import.h).
// Nothing in the pickle is executed: it is parsed as data by trainer/pickle.h.
#include <iostream>

#include "launcher/cli.h"
#include "trainer/import.h"

namespace po = boost::program_options;

namespace sf::cli {

int cmd_import(const std::vector<std::string>& args) {
  std::string source, dest;
  bool force = false;
  po::options_description desc("options");
  desc.add_options()
      ("source", po::value(&source)->required(), "reference network pickle (network-snapshot-*.pkl, ffhq-*.pkl, ...)")
      ("dest", po::value(&dest)->required(), "the styleforge checkpoint to write (FILE.h5)")
      ("force", po::bool_switch(&force), "replace an existing destination");
  po::positional_options_description pos;
  pos.add("source", 1);
  po::variables_map vm;
  if (int rc = parse_options("import", "SOURCE.pkl --dest FILE.h5 [--force]", args, desc, vm, &pos); rc >= 0) return rc;
  trainer::ImportResult r = trainer::import_network_pickle(source, dest, force);
  std::cout << source << ": " << r.summary() << "\n";
  std::cout << "Wrote " << r.dest << "\n";
  return kOk;
}

}  // namespace sf::cli
