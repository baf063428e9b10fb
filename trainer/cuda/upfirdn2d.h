// Launch of the upfirdn2d kernel (upfirdn2d.cu): threads over output pixels and planes, the arithmetic
// of upfirdn2d_math.h, with 32-bit indices where every index fits (upfirdn2d_math::fits_int32).
// x: contiguous [planes, in_h, in_w]; out: contiguous [planes, out_h, out_w]; f: the filter (gain
// folded in) in the accumulation type, float for Float16 storage, else the storage type: fh * fw
// values, or fh (= fw) taps when separable. Torch-free: raw device pointers, a cudaStream_t as
// void*. Defined only in CUDA builds; throws std::runtime_error on a launch error.
#pragma once

#include <cstdint>

#include "trainer/cuda/upfirdn2d_math.h"

namespace sf::kernels {

enum class Upfirdn2dDtype { Float32, Float64, Float16 };

struct Upfirdn2dArgs {
  const void* x = nullptr;
  const void* f = nullptr;
  void* out = nullptr;
  int64_t planes = 0;
  sf::ops::upfirdn2d_math::Params p;
};

void upfirdn2d_device(const Upfirdn2dArgs& a, Upfirdn2dDtype dtype, void* stream);

}  // namespace sf::kernels
