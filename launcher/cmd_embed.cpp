// `styleforge embed`: PCA and t-SNE maps of detector features of real and generated images
// (metrics/embed.h).
#include <iostream>
#include <stdexcept>

#include "launcher/cli.h"
#include "metrics/embed.h"

namespace po = boost::program_options;

namespace sf::cli {

int cmd_embed(const std::vector<std::string>& args) {
  metrics::EmbedCommandOptions o;
  std::string methods;
  po::options_description desc("options");
  desc.add_options()
      ("reals", po::value(&o.reals)->required(), "dataset pack of the real images")
      ("network", po::value(&o.network)->required(), "styleforge checkpoint (or reference .pkl); its G_ema generates")
      ("detector", po::value(&o.detector),
       "TorchScript feature detector (default: $STYLEFORGE_DETECTOR, then <cache dir>/inception-2015-12-05.pt)")
      ("count", po::value(&o.count)->required(), "real images, and generated images, each (t-SNE: at most 2500)")
      ("dest", po::value(&o.dest)->required(), "output folder: embed-<method>.csv and embed-<method>.png")
      ("method", po::value(&methods)->default_value("pca,tsne"), "comma-separated: pca, tsne")
      ("perplexity", po::value(&o.tsne.perplexity)->default_value(30), "t-SNE perplexity (below 2 x --count)")
      ("iterations", po::value(&o.tsne.iterations)->default_value(1000), "t-SNE iterations (250 of them exaggerated)")
      ("init", po::value(&o.tsne.init)->default_value("pca"), "t-SNE initialisation: pca | random (from --seed)")
      ("seed", po::value(&o.seed)->default_value(0), "seed of the real subset, z, labels, noise and random init")
      ("class", po::value(&o.cls)->default_value("all"), "all, or one class (index or name): its reals, and a conditional generator's images of it")
      ("trunc", po::value(&o.truncation_psi)->default_value(1), "truncation psi of the generated images")
      ("save-features", po::bool_switch(&o.save_features), "also write the features as features.csv")
      ("size", po::value(&o.size)->default_value(800), "PNG side in pixels")
      ("cache-dir", po::value(&o.cache_dir), "cache folder where the detector is looked for (default: $STYLEFORGE_CACHE or ~/.cache/styleforge)")
      ("batch", po::value(&o.batch)->default_value(64), "images per detector call")
      ("batch-gen", po::value(&o.batch_gen)->default_value(4), "images per generator call")
      ("threads", po::value(&o.threads)->default_value(0), "LibTorch threads (0: library default)")
      ("device", po::value(&o.device)->default_value("auto"), "auto | cpu | cuda | cuda:N (generator and detector)");
  po::variables_map vm;
  if (int rc = parse_options("embed", "--reals PACK --network CKPT --count N --dest DIR [--method pca,tsne] [options]",
                             args, desc, vm);
      rc >= 0)
    return rc;
  o.methods.clear();
  for (size_t pos = 0; pos <= methods.size();) {
    const size_t next = methods.find(',', pos);
    std::string m = methods.substr(pos, next == std::string::npos ? std::string::npos : next - pos);
    if (!m.empty()) o.methods.push_back(m);
    if (next == std::string::npos) break;
    pos = next + 1;
  }
  o.log = [](const std::string& line) { std::cerr << line << "\n"; };
  try {
    return metrics::run_embed_command(o) == 0 ? kOk : kFailure;
  } catch (const std::invalid_argument& e) {
    std::cerr << "styleforge embed: " << e.what() << "\n";
    return kUsage;
  }
}

}  // namespace sf::cli
