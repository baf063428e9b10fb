// `styleforge bench-data`: images/s of the pack reader (HDF5, one image per chunk) against
// decoding the same images from a folder of PNG files through our PNG path (the kind of loader
// the reference uses), for 1..k reader ranks. Each reader rank is a separate process (fork) that
// opens its files itself and reads the indices of its shard (sharding::InfiniteSampler is not
// needed here: rank r reads images r, r+W, ... in batches), as training ranks do.
//
// Also makes synthetic packs (smooth random images) for benchmarks. Functions are blocking and
// reentrant; errors throw std::runtime_error.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

namespace sf::data {

struct BenchOptions {
  std::string pack;
  int batch = 32;
  int64_t max_images = 512;       // images used (a prefix of the pack)
  std::vector<int> ranks{1, 2};   // reader rank counts to measure
  double seconds = 2.0;           // measuring time per case
  int png_compress_level = 0;     // the reference's dataset_tool writes level-0 PNGs
  std::string png_dir;            // "" makes a temporary folder from the pack
  bool checksum_cost = true;      // also read without verifying checksums (the verification's cost)
};

struct BenchResult {
  int ranks = 0;
  double hdf5_images_per_s = 0, png_images_per_s = 0;
  double hdf5_unverified_images_per_s = 0;  // checksums not verified (0 when not measured)
  // Median over alternated pairs of (1 - verified / unverified), every read verified (the worst
  // case: training verifies an image on its first read only).
  double checksum_cost = 0;
  std::vector<double> checksum_cost_pairs;
};

std::vector<BenchResult> bench_data(const BenchOptions& opts, std::ostream& log);

// Writes a pack of `n` smooth random images (res x res, 1 or 3 channels) to `dest`.
void make_synthetic_pack(const std::string& dest, int64_t n, int res, int channels, uint32_t seed, bool force);

}  // namespace sf::data
