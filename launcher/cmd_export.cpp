// `styleforge export`: a checkpoint to a network pickle in the reference's format (trainer/export.h).
#include <iostream>

#include "launcher/cli.h"
#include "trainer/export.h"

namespace po = boost::program_options;

namespace sf::cli {

int cmd_export(const std::vector<std::string>& args) {
  std::string source, dest;
  bool force = false;
  po::options_description desc(
      "Writes a dict with G, D, G_ema (torch.nn.Module), augment_pipe and training_set_kwargs, as the\n"
      "reference's network-snapshot-*.pkl. The pickle builds the networks from the reference's own\n"
      "classes (training.networks.Generator/Discriminator, training.augment.AugmentPipe), so it loads\n"
      "where a stylegan2-ada-pytorch checkout is importable with torch and numpy: its generate.py,\n"
      "projector.py and calc_metrics.py run from that checkout (legacy.load_network_pkl).\n\noptions");
  desc.add_options()
      ("source", po::value(&source)->required(), "the styleforge checkpoint (network-snapshot-*.h5)")
      ("dest", po::value(&dest)->required(), "the network pickle to write (FILE.pkl)")
      ("force", po::bool_switch(&force), "replace an existing destination");
  po::positional_options_description pos;
  pos.add("source", 1);
  po::variables_map vm;
  if (int rc = parse_options("export", "CKPT.h5 --dest network.pkl [--force]", args, desc, vm, &pos); rc >= 0)
    return rc;
  trainer::ExportResult r = trainer::export_network_pickle(source, dest, force);
  std::cout << source << ": " << r.summary() << "\n";
  std::cout << "Wrote " << r.dest << "\n";
  return kOk;
}

}  // namespace sf::cli
