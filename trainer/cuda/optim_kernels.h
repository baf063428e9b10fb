// Multi-tensor CUDA launches of the optimiser updates (optim_kernels.cu), one launch for a whole
// list of tensors, with the per-element arithmetic of optim_math.h:
//   adam_multi_tensor_device     Adam on float32 param/exp_avg/exp_avg_sq, float32 or float16 grad
//   ema_multi_tensor_device      dst = lerp(src, dst, beta), or dst = src for copied entries
//   nan_to_num_multi_tensor_device   float32 in place
// Every tensor is a dense run of `n` elements (all tensors of one entry share the same layout);
// n = 0 entries are skipped. The launcher splits the tensors into chunks, copies the chunk table
// into `workspace` (device memory of at least optim_workspace_bytes() bytes, owned by the caller,
// not reused by it before the launch is done on `stream`) and launches once on `stream` (a
// cudaStream_t as void*). Host side only reads the arguments. Torch-free; defined only in CUDA
// builds; throws std::runtime_error on a CUDA error.
#pragma once

#include <cstddef>
#include <cstdint>

namespace sf::kernels {

enum class OptimGradDtype { Float32, Float16 };

// One Adam tensor; the per-tensor scalars are optim_math::AdamCoef's, rounded to float.
struct AdamTensor {
  float* param = nullptr;
  const void* grad = nullptr;  // float or __half, see OptimGradDtype
  float* exp_avg = nullptr;
  float* exp_avg_sq = nullptr;
  int64_t n = 0;
  float neg_step_size = 0, bc2_sqrt = 1;  // differ between tensors with different step counts
};
// The scalars shared by every tensor of one launch.
struct AdamShared {
  float lerp_weight = 1, beta2 = 0.99f, one_minus_beta2 = 0.01f, eps = 1e-8f;
};

struct EmaTensor {
  float* dst = nullptr;
  const float* src = nullptr;
  int64_t n = 0;
  bool copy = false;  // buffers: dst = src
};

struct SanitizeTensor {
  float* data = nullptr;
  int64_t n = 0;
};

// Elements per chunk (one CUDA block each).
constexpr int64_t kOptimChunk = 16384;

// Device workspace needed by a launch over tensors of these element counts.
size_t optim_workspace_bytes(const int64_t* numels, size_t count);

void adam_multi_tensor_device(const AdamTensor* tensors, size_t count, const AdamShared& shared,
                              OptimGradDtype grad_dtype, void* workspace, size_t workspace_bytes, void* stream);
void ema_multi_tensor_device(const EmaTensor* tensors, size_t count, float beta, void* workspace,
                             size_t workspace_bytes, void* stream);
void nan_to_num_multi_tensor_device(const SanitizeTensor* tensors, size_t count, void* workspace,
                                    size_t workspace_bytes, void* stream);

}  // namespace sf::kernels
