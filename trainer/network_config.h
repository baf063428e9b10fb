// Construction settings of the generator and the discriminator, named as in the reference.
//
// Plain data (torch-free), so launcher/ and checkpoints can read and write them. from_json()
// accepts the reference's constructor names (z_dim, w_dim, c_dim, img_resolution, img_channels,
// architecture, channel_base, channel_max, conv_clamp (null = off), mapping_layers, mbstd_group_size,
// mbstd_num_channels, num_fp16_res, ...) and rejects unknown architectures or bad sizes with a
// one-line std::invalid_argument.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

namespace sf::trainer {

struct GeneratorConfig {
  int z_dim = 512;
  int c_dim = 0;
  int w_dim = 512;
  int img_resolution = 256;
  int img_channels = 3;
  // mapping network
  int mapping_layers = 8;
  double mapping_lr_multiplier = 0.01;
  std::optional<double> w_avg_beta = 0.995;
  // synthesis network
  std::string architecture = "skip";  // orig | skip | resnet
  int channel_base = 32768;
  int channel_max = 512;
  int num_fp16_res = 0;  // reduced precision for the top resolutions: GPU only, ignored on CPU
  std::optional<double> conv_clamp;
  bool use_noise = true;
  std::vector<float> resample_filter = {1, 3, 3, 1};

  int channels_at(int res) const { return std::min(channel_base / res, channel_max); }
  static GeneratorConfig from_json(const nlohmann::json& j);
  nlohmann::json to_json() const;
  void validate() const;
};

struct DiscriminatorConfig {
  int c_dim = 0;
  int img_resolution = 256;
  int img_channels = 3;
  std::string architecture = "resnet";  // orig | skip | resnet
  int channel_base = 32768;
  int channel_max = 512;
  int num_fp16_res = 0;
  std::optional<double> conv_clamp;
  int cmap_dim = -1;          // -1: channels at 4x4
  int mapping_layers = 8;     // conditioning mapping network
  int mbstd_group_size = 4;   // <= 0: whole minibatch
  int mbstd_num_channels = 1; // 0 disables the layer
  int freeze_layers = 0;      // Freeze-D: number of leading layers not trained
  std::vector<float> resample_filter = {1, 3, 3, 1};

  int channels_at(int res) const { return std::min(channel_base / res, channel_max); }
  static DiscriminatorConfig from_json(const nlohmann::json& j);
  nlohmann::json to_json() const;
  void validate() const;
};

}  // namespace sf::trainer
