// Adam and the generator's exponential moving average, with state that checkpoints exactly.
//
// Adam computes what torch.optim.Adam (single-tensor path, no weight decay, no amsgrad) computes:
// per parameter a step count, exp_avg and exp_avg_sq, created at the first step in which the
// parameter has a gradient. Its whole state is saved to and loaded from an HDF5 group (one
// dataset per parameter key under exp_avg/, exp_avg_sq/, step/), so a resumed run continues
// bit for bit. update_ema() is the reference's G_ema update: parameters lerp towards G with
// beta, buffers are copied.
//
// Adam::step, update_ema and sanitize_gradients have two implementations (optim_fused picks):
// torch.optim.Adam's ATen ops, one tensor at a time, or fused (arithmetic in cuda/optim_math.h):
// on the CPU one pass per tensor, on CUDA one multi-tensor launch for all float32 tensors of a
// device (cuda/optim_kernels.h). Fused results are bit for bit those of ATen's AVX2/AVX-512 CPU
// kernels, except that ATen's CPU sqrt is not correctly rounded (Adam's parameters then differ by
// about an ulp per step); CUDA and CPU fused results are the same bits. Tensors the fused path
// does not take (other dtypes, differing layouts) use the ATen ops. The checkpoint format is the
// same either way.
// Not thread-safe; the training thread owns both.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
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

// Which implementation runs. CPU defaults, each measured (Adam and G_ema over the bench networks'
// parameters): Adam and update_ema fused, sanitize_gradients ATen (its one vectorised pass is
// already as fast). CUDA: all fused when STYLEFORGE_FUSED_KERNELS=1 (opt-in until the kernels
// have run on a GPU in CI), else ATen.
enum class OptimOp { Adam, Ema, NanToNum };
bool optim_fused(bool cuda, OptimOp op);
// Process-wide: force every op on that device kind to the fused (true) or ATen (false) path, or
// back to the defaults above (nullopt; CUDA: the environment variable). Returns the previous value.
std::optional<bool> set_optim_cpu_path(std::optional<bool> fused);
std::optional<bool> set_optim_cuda_path(std::optional<bool> fused);

// Turns requires_grad of every trainable parameter on or off (frozen ones stay off).
void set_trainable(const ParamStore& store, bool on);

}  // namespace sf::trainer
