#include "trainer/cuda/bucket_ops.h"

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace sf::kernels {
namespace {

__global__ void sanitize_kernel(float* data, size_t count) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride)
    data[i] = sanitize_gradient(data[i]);
}

}  // namespace

void sanitize_gradients_device(float* data, size_t count, void* stream) {
  if (count == 0) return;
  constexpr unsigned kThreads = 256;
  const size_t blocks_needed = (count + kThreads - 1) / kThreads;
  const unsigned blocks = static_cast<unsigned>(blocks_needed < 4096 ? blocks_needed : 4096);
  sanitize_kernel<<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(data, count);
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("sanitize_gradients_device: kernel launch failed: ") + cudaGetErrorString(err));
}

}  // namespace sf::kernels
