// `styleforge import`: a reference network pickle (stylegan2-ada-pytorch's network-snapshot-*.pkl
// and the published FFHQ/AFHQ/BreCaHaD/MetFaces/... files) to a styleforge checkpoint.
//
// The pickle is read by trainer/pickle.h, which executes nothing from the file. The network
// configuration of G, D and G_ema comes from the persistent objects' init_kwargs (resolution,
// channels, channel_base/max, mapping layers, z/w/c dims, architectures, minibatch-std settings,
// conv_clamp, fp16 resolutions); our networks are built from it and every tensor of the file is
// copied into them by its state_dict key, so the configuration is checked against the tensor
// shapes: any missing, unexpected or mis-shaped key fails with one message naming all of them.
// The result is a network-only checkpoint (trainer/checkpoint.h: G/, D/, G_ema/, augment_pipe/p,
// config) with the pickle's training_set_kwargs (and its AugmentPipe's settings, augment_kwargs,
// when they are ones styleforge knows) as JSON attributes. Float32 tensors are copied
// bit for bit.
//
// Torch-free header (launcher/ calls it); blocking; errors throw std::runtime_error naming the file.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace sf::trainer {

struct ImportResult {
  std::string dest;
  nlohmann::json G_config, D_config;    // our GeneratorConfig/DiscriminatorConfig JSON (D: null when absent)
  nlohmann::json training_set_kwargs;   // null when the pickle has none
  int64_t G_tensors = 0, D_tensors = 0, G_ema_tensors = 0;
  bool has_D = false;
  double augment_p = 0;
  std::string summary() const;          // one line for logs
};

// Imports `pkl` into `dest` (written atomically; an existing dest is replaced only with `overwrite`).
ImportResult import_network_pickle(const std::string& pkl, const std::string& dest, bool overwrite = false);

// True when `path` starts like a pickle of protocol 2 or newer (the reference's network pickles).
bool looks_like_pickle(const std::string& path);

// The checkpoint to read for a --network argument: the file itself, or, for a reference network
// pickle, that pickle imported on the fly into a temporary checkpoint (under the system's temp
// folder) that is removed when this object goes away. Commands that take a network (generate,
// metrics) accept either through it.
class NetworkFile {
 public:
  explicit NetworkFile(const std::string& path);
  ~NetworkFile();
  NetworkFile(const NetworkFile&) = delete;
  NetworkFile& operator=(const NetworkFile&) = delete;
  const std::string& checkpoint() const { return checkpoint_; }
  bool imported() const { return !temp_dir_.empty(); }
  const ImportResult& import_result() const { return result_; }

 private:
  std::string checkpoint_, temp_dir_;
  ImportResult result_;
};

}  // namespace sf::trainer
