// ParamStore: the named parameters and buffers of one network, under the reference's state_dict keys.
//
// Layers register every tensor they own here with its full key (e.g. "synthesis.b64.conv0.weight",
// "mapping.w_avg"), so that saving, loading, gradient bucketing and parameter broadcast all see
// the same ordered list. Layers keep shallow handles to the registered tensors; loading copies
// values in place, so the handles stay valid. Freeze-D layers register their weights as
// non-trainable (no gradient), still under the same key.
// Not thread-safe; owned by the network that creates it.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

namespace sf::trainer {

struct NamedTensor {
  std::string name;
  at::Tensor tensor;
  bool is_buffer = false;   // a buffer is state that is not optimised (w_avg, noise_const, filters)
  bool trainable = true;    // parameters only: false for frozen layers
};

class ParamStore {
 public:
  // Registers a parameter; trainable ones get requires_grad. Throws on a duplicate key.
  at::Tensor param(const std::string& name, at::Tensor init, bool trainable = true);
  at::Tensor buffer(const std::string& name, at::Tensor init);

  const std::vector<NamedTensor>& entries() const { return entries_; }
  // The tensors the optimiser updates, in registration order.
  std::vector<at::Tensor> trainable_parameters() const;
  std::vector<std::string> trainable_names() const;
  // Null when absent.
  const NamedTensor* find(const std::string& name) const;
  const at::Tensor& at(const std::string& name) const;  // throws std::out_of_range naming the key
  // Copies every value of `other` (same keys and shapes) into this store, in place.
  void copy_from(const ParamStore& other);
  void zero_grad();
  // Moves every tensor to `device` in place (the handles held by layers see the moved data).
  void to(c10::Device device);

 private:
  std::vector<NamedTensor> entries_;
};

}  // namespace sf::trainer
