#include "trainer/network_config.h"

#include <stdexcept>

namespace sf::trainer {
namespace {

template <typename T>
void get(const nlohmann::json& j, const char* name, T& out) {
  if (j.contains(name) && !j.at(name).is_null()) out = j.at(name).get<T>();
}

void get_opt(const nlohmann::json& j, const char* name, std::optional<double>& out) {
  if (!j.contains(name)) return;
  if (j.at(name).is_null()) out.reset();
  else out = j.at(name).get<double>();
}

void check_arch(const std::string& a, const char* who) {
  if (a != "orig" && a != "skip" && a != "resnet")
    throw std::invalid_argument(std::string(who) + ": unknown architecture '" + a + "' (orig, skip, resnet)");
}

void check_res(int res, int min_res, const char* who) {
  if (res < min_res || res > 1024 || (res & (res - 1)) != 0)
    throw std::invalid_argument(std::string(who) + ": img_resolution " + std::to_string(res) +
                                " must be a power of two in [" + std::to_string(min_res) + ", 1024]");
}

nlohmann::json opt_json(const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); }

}  // namespace

GeneratorConfig GeneratorConfig::from_json(const nlohmann::json& j) {
  GeneratorConfig c;
  get(j, "z_dim", c.z_dim);
  get(j, "c_dim", c.c_dim);
  get(j, "w_dim", c.w_dim);
  get(j, "img_resolution", c.img_resolution);
  get(j, "img_channels", c.img_channels);
  get(j, "mapping_layers", c.mapping_layers);
  get(j, "mapping_lr_multiplier", c.mapping_lr_multiplier);
  get_opt(j, "w_avg_beta", c.w_avg_beta);
  get(j, "architecture", c.architecture);
  get(j, "channel_base", c.channel_base);
  get(j, "channel_max", c.channel_max);
  get(j, "num_fp16_res", c.num_fp16_res);
  get_opt(j, "conv_clamp", c.conv_clamp);
  get(j, "use_noise", c.use_noise);
  get(j, "resample_filter", c.resample_filter);
  c.validate();
  return c;
}

nlohmann::json GeneratorConfig::to_json() const {
  return {{"z_dim", z_dim},
          {"c_dim", c_dim},
          {"w_dim", w_dim},
          {"img_resolution", img_resolution},
          {"img_channels", img_channels},
          {"mapping_layers", mapping_layers},
          {"mapping_lr_multiplier", mapping_lr_multiplier},
          {"w_avg_beta", opt_json(w_avg_beta)},
          {"architecture", architecture},
          {"channel_base", channel_base},
          {"channel_max", channel_max},
          {"num_fp16_res", num_fp16_res},
          {"conv_clamp", opt_json(conv_clamp)},
          {"use_noise", use_noise},
          {"resample_filter", resample_filter}};
}

void GeneratorConfig::validate() const {
  check_arch(architecture, "generator");
  check_res(img_resolution, 4, "generator");
  if (img_channels < 1) throw std::invalid_argument("generator: img_channels must be >= 1");
  if (z_dim < 0 || c_dim < 0 || w_dim < 1 || (z_dim == 0 && c_dim == 0))
    throw std::invalid_argument("generator: bad z_dim/c_dim/w_dim");
  if (mapping_layers < 1) throw std::invalid_argument("generator: mapping_layers must be >= 1");
  if (channel_base < 1 || channel_max < 1) throw std::invalid_argument("generator: bad channel_base/channel_max");
}

DiscriminatorConfig DiscriminatorConfig::from_json(const nlohmann::json& j) {
  DiscriminatorConfig c;
  get(j, "c_dim", c.c_dim);
  get(j, "img_resolution", c.img_resolution);
  get(j, "img_channels", c.img_channels);
  get(j, "architecture", c.architecture);
  get(j, "channel_base", c.channel_base);
  get(j, "channel_max", c.channel_max);
  get(j, "num_fp16_res", c.num_fp16_res);
  get_opt(j, "conv_clamp", c.conv_clamp);
  get(j, "cmap_dim", c.cmap_dim);
  get(j, "mapping_layers", c.mapping_layers);
  if (j.contains("mbstd_group_size") && j.at("mbstd_group_size").is_null()) c.mbstd_group_size = 0;
  else get(j, "mbstd_group_size", c.mbstd_group_size);
  get(j, "mbstd_num_channels", c.mbstd_num_channels);
  get(j, "freeze_layers", c.freeze_layers);
  get(j, "resample_filter", c.resample_filter);
  c.validate();
  return c;
}

nlohmann::json DiscriminatorConfig::to_json() const {
  return {{"c_dim", c_dim},
          {"img_resolution", img_resolution},
          {"img_channels", img_channels},
          {"architecture", architecture},
          {"channel_base", channel_base},
          {"channel_max", channel_max},
          {"num_fp16_res", num_fp16_res},
          {"conv_clamp", opt_json(conv_clamp)},
          {"cmap_dim", cmap_dim},
          {"mapping_layers", mapping_layers},
          {"mbstd_group_size", mbstd_group_size},
          {"mbstd_num_channels", mbstd_num_channels},
          {"freeze_layers", freeze_layers},
          {"resample_filter", resample_filter}};
}

void DiscriminatorConfig::validate() const {
  check_arch(architecture, "discriminator");
  check_res(img_resolution, 8, "discriminator");
  if (img_channels < 1) throw std::invalid_argument("discriminator: img_channels must be >= 1");
  if (c_dim < 0 || mbstd_num_channels < 0 || freeze_layers < 0)
    throw std::invalid_argument("discriminator: bad c_dim/mbstd_num_channels/freeze_layers");
  if (channel_base < 1 || channel_max < 1) throw std::invalid_argument("discriminator: bad channel_base/channel_max");
}

}  // namespace sf::trainer
