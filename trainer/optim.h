// Adam and the generator's exponential moving average, with state that checkpoints exactly.
//
// Adam computes what torch.optim.Adam (single-tensor path, no weight decay, no amsgrad) computes:
// per parameter a step count, exp_avg and exp_avg_sq, created at the first step in which the
// parameter has a gradient. Its whole state is saved to and loaded from an HDF5 group (one
// dataset per parameter key under exp_avg/, exp_avg_sq/, step/), so a resumed run continues
// bit for bit. update_ema() is the reference's G_ema update: parameters lerp towards G with
// beta, buffers are copied.
// Not thread-safe; the training thread owns both.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "data/h5.h"
#include "trainer/param_store.h"

namespace sf::trainer {

class Adam {
 public:
  struct Options {
    double lr = 0.002, beta1 = 0, beta2 = 0.99, eps = 1e-8;
  };
  // Optimises the trainable parameters of `store` (which must outlive the optimiser).
  Adam(const ParamStore& store, Options opts);
  const Options& options() const { return opts_; }
  // One step over every parameter that has a gradient; others are left untouched.
  void step();
  void save(const h5::Handle& group) const;
  // Strict: keys and shapes must match the parameters (std::runtime_error otherwise).
  void load(const h5::Handle& group);
  // All state tensors in a fixed order (for comparisons in tests).
  std::vector<std::pair<std::string, at::Tensor>> state_tensors() const;

 private:
  struct Slot {
    std::string name;
    at::Tensor param, exp_avg, exp_avg_sq;
    int64_t step = 0;
  };
  Options opts_;
  std::vector<Slot> slots_;
};

// G_ema <- lerp(G, G_ema, beta) for parameters; buffers copied. Same keys in both stores.
void update_ema(ParamStore& ema, const ParamStore& src, double beta);

// Replaces NaN by 0 and +-inf by +-1e5 in every gradient of `store`, in place.
void sanitize_gradients(const ParamStore& store);

// Turns requires_grad of every trainable parameter on or off (frozen ones stay off).
void set_trainable(const ParamStore& store, bool on);

}  // namespace sf::trainer
