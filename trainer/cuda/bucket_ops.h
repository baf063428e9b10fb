// Element-wise work on flat gradient buckets, one body for host and device.
//
// The per-element arithmetic is an inline function usable from host and device code; the CPU loop
// below and the CUDA kernel in bucket_ops.cu both run it, so CPU tests check the arithmetic the GPU
// runs (only launch configuration is left to a GPU). Torch-free: raw pointers, a cudaStream_t passed
// as void*. Thread-safe (no state).
#pragma once

#include <cmath>
#include <cstddef>

#if defined(__CUDACC__)
#define SF_HOST_DEVICE __host__ __device__
#else
#define SF_HOST_DEVICE
#endif

namespace sf::kernels {

// The reference's gradient clean-up, torch.nan_to_num(g, nan=0, posinf=1e5, neginf=-1e5).
SF_HOST_DEVICE inline float sanitize_gradient(float v) {
  if (v != v) return 0.0f;
  if (v == INFINITY) return 1e5f;
  if (v == -INFINITY) return -1e5f;
  return v;
}

inline void sanitize_gradients_host(float* data, size_t count) {
  for (size_t i = 0; i < count; ++i) data[i] = sanitize_gradient(data[i]);
}

// Launches the same clean-up over `count` floats of device memory on `stream` (a cudaStream_t).
// Defined only in CUDA builds (bucket_ops.cu); throws std::runtime_error on a launch error.
void sanitize_gradients_device(float* data, size_t count, void* stream);

}  // namespace sf::kernels
