// In-memory images of a trained generator for a list of seeds and one class (what `styleforge
// generate` writes as PNG files, without files): z from numpy's RandomState(seed) as the
// reference's generate.py draws it, the class as a one-hot c for conditional networks.
// Torch-free interface; not thread-safe (serial HDF5 while loading the checkpoint).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sf::trainer {

struct GeneratorShape {
  int c_dim = 0, img_resolution = 0, img_channels = 0;
};
// Reads only the configuration of a checkpoint (or reference .pkl, imported on the fly).
GeneratorShape read_generator_shape(const std::string& network);

struct ClassImages {
  int channels = 0, resolution = 0;
  std::vector<uint8_t> pixels;  // [seeds.size(), channels, resolution, resolution]
};
// cls: the class for a conditional network (must be in [0, c_dim)), -1 for an unconditional one.
// noise_mode: random | const | none. Throws std::invalid_argument naming the file on a mismatch.
ClassImages generate_class_images(const std::string& network, int cls, const std::vector<int64_t>& seeds,
                                  double truncation_psi, const std::string& noise_mode, const std::string& device,
                                  int batch = 16, int threads = 0);  // threads > 0: LibTorch threads

}  // namespace sf::trainer
