// Launch of the fused bias_act element-wise kernels (bias_act.cu), one per mode:
//   0 forward:  out = y(x + b)
//   1 grad:     out = dy * g(x + b)
//   2 grad2:    out = ddx * dy * g2(x + b)
// with the arithmetic of bias_act_math.h. Every tensor is contiguous with `n` elements; b (may be
// null) has `channels` entries and runs along the dimension whose trailing size is `inner`
// (b index = (i / inner) % channels). Torch-free: raw device pointers, a cudaStream_t as void*.
// Defined only in CUDA builds; throws std::runtime_error on a launch error.
#pragma once

#include <cstdint>

namespace sf::kernels {

enum class BiasActDtype { Float32, Float64, Float16 };

struct BiasActArgs {
  int mode = 0;
  const void* x = nullptr;
  const void* b = nullptr;
  const void* dy = nullptr;
  const void* ddx = nullptr;
  void* out = nullptr;
  int64_t n = 0, inner = 1, channels = 1;
  int act = 0;
  double alpha = 0, gain = 1, clamp = -1;
};

void bias_act_device(const BiasActArgs& a, BiasActDtype dtype, void* stream);

}  // namespace sf::kernels
