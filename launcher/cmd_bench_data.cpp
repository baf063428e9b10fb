// `styleforge bench-data`: the CLI wrapper of data::bench_data (data/bench.h).
#include <filesystem>
#include <iostream>

#include "data/bench.h"
#include "launcher/cli.h"

namespace po = boost::program_options;

namespace sf::cli {

int cmd_bench_data(const std::vector<std::string>& args) {
  data::BenchOptions o;
  int64_t synthetic = 0;
  int synthetic_res = 256, synthetic_channels = 1;
  po::options_description desc("options");
  desc.add_options()
      ("pack", po::value(&o.pack)->required(), "the pack to read")
      ("batch", po::value(&o.batch)->default_value(32), "images per batch")
      ("max-images", po::value(&o.max_images)->default_value(512), "images used (a prefix of the pack)")
      ("ranks", po::value(&o.ranks)->multitoken()->default_value(std::vector<int>{1, 2}, "1 2"), "reader rank counts to measure")
      ("seconds", po::value(&o.seconds)->default_value(2.0), "measuring time per case")
      ("png-compress", po::value(&o.png_compress_level)->default_value(0), "zlib level of the PNG copies (the reference writes 0)")
      ("png-dir", po::value(&o.png_dir)->default_value(""), "use this folder of img%08d.png files instead of making one")
      ("synthetic", po::value(&synthetic)->default_value(0), "first write a synthetic pack of this many images to --pack")
      ("synthetic-res", po::value(&synthetic_res)->default_value(256), "resolution of the synthetic pack")
      ("synthetic-channels", po::value(&synthetic_channels)->default_value(1), "channels of the synthetic pack (1 or 3)")
      ("checksum-cost", po::value(&o.checksum_cost)->default_value(true), "also read without verifying checksums and print the difference");
  po::variables_map vm;
  if (int rc = parse_options("bench-data", "--pack FILE.h5 [--batch 32] [options]", args, desc, vm); rc >= 0) return rc;
  if (synthetic > 0) data::make_synthetic_pack(o.pack, synthetic, synthetic_res, synthetic_channels, 1, true);
  for (const auto& r : data::bench_data(o, std::cerr)) {
    std::cout << "ranks " << r.ranks << "  hdf5 " << static_cast<int64_t>(r.hdf5_images_per_s) << " images/s  png "
              << static_cast<int64_t>(r.png_images_per_s) << " images/s  ratio "
              << r.hdf5_images_per_s / r.png_images_per_s;
    if (r.hdf5_unverified_images_per_s > 0)
      std::cout << "  unverified " << static_cast<int64_t>(r.hdf5_unverified_images_per_s) << " images/s  checksum cost "
                << 100.0 * r.checksum_cost << " %";
    std::cout << "\n";
  }
  return kOk;
}

}  // namespace sf::cli
