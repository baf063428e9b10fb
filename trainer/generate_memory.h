// Images of a generator for a list of seeds, kept in memory (torch-free header).
//
// The same path as `styleforge generate` (z = numpy RandomState(seed).randn, truncation psi, one-hot
// class, the given noise mode, G_ema of the checkpoint or of an imported .pkl), but the 8-bit images
// are returned instead of written, for callers that encode them themselves (`styleforge vtt`).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/image.h"

namespace sf::trainer {

struct GeneratorShape {
  int resolution = 0, channels = 0, c_dim = 0;
};
// Resolution, channels and number of classes of a checkpoint's (or .pkl's) generator.
GeneratorShape read_generator_shape(const std::string& network);

struct GenerateImagesRequest {
  std::string network;           // checkpoint or reference .pkl
  std::vector<int64_t> seeds;
  double truncation_psi = 1;
  int class_idx = -1;            // required for conditional networks; -1: none
  std::string noise_mode = "const";
  int threads = 0;               // LibTorch threads (0: all cores)
  std::string device = "auto";
};
// One image per seed, in the order of req.seeds. `progress(done, total)` is called after each one
// when given. Throws std::invalid_argument for a bad class or noise mode.
std::vector<data::Image> generate_images(const GenerateImagesRequest& req,
                                         const std::function<void(size_t, size_t)>& progress = {});

}  // namespace sf::trainer
