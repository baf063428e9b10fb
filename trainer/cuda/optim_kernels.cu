#include "trainer/cuda/optim_kernels.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "trainer/cuda/optim_math.h"

namespace sf::kernels {
namespace {

namespace om = sf::kernels::optim_math;

// One chunk of at most kOptimChunk elements of one tensor: its pointers already advanced to the
// chunk, and the tensor's own scalars (Adam: -step_size, sqrt(bc2); EMA: copy flag).
struct Chunk {
  void* a;
  const void* b;
  void* c;
  void* d;
  int32_t n;
  float f0, f1;
  int32_t flag;
};

constexpr unsigned kThreads = 256;

__device__ __forceinline__ float load_grad(const float* g, int i) { return g[i]; }
__device__ __forceinline__ float load_grad(const __half* g, int i) { return __half2float(g[i]); }

template <typename G> __global__ void adam_kernel(const Chunk* chunks, AdamShared s) {
  const Chunk ch = chunks[blockIdx.x];
  float* p = static_cast<float*>(ch.a);
  const G* g = static_cast<const G*>(ch.b);
  float* m = static_cast<float*>(ch.c);
  float* v = static_cast<float*>(ch.d);
  const om::AdamCoef<float> c{s.lerp_weight, s.beta2, s.one_minus_beta2, ch.f0, ch.f1, s.eps};
  for (int i = static_cast<int>(threadIdx.x); i < ch.n; i += static_cast<int>(blockDim.x)) {
    float pi = p[i], mi = m[i], vi = v[i];
    om::adam(pi, load_grad(g, i), mi, vi, c);
    p[i] = pi;
    m[i] = mi;
    v[i] = vi;
  }
}

__global__ void ema_kernel(const Chunk* chunks, float beta) {
  const Chunk ch = chunks[blockIdx.x];
  float* dst = static_cast<float*>(ch.a);
  const float* src = static_cast<const float*>(ch.b);
  if (ch.flag) {
    for (int i = static_cast<int>(threadIdx.x); i < ch.n; i += static_cast<int>(blockDim.x)) dst[i] = src[i];
  } else {
    for (int i = static_cast<int>(threadIdx.x); i < ch.n; i += static_cast<int>(blockDim.x))
      dst[i] = om::ema(dst[i], src[i], beta);
  }
}

__global__ void nan_to_num_kernel(const Chunk* chunks) {
  const Chunk ch = chunks[blockIdx.x];
  float* x = static_cast<float*>(ch.a);
  for (int i = static_cast<int>(threadIdx.x); i < ch.n; i += static_cast<int>(blockDim.x)) x[i] = om::nan_to_num(x[i]);
}

int64_t chunks_of(int64_t n) { return n <= 0 ? 0 : (n + kOptimChunk - 1) / kOptimChunk; }

// Appends the chunks of one tensor; `elem` are the element sizes of pointers a..d (0: unused).
void split(std::vector<Chunk>& out, int64_t n, void* a, const void* b, void* c, void* d, const size_t (&elem)[4],
           float f0, float f1, int32_t flag) {
  for (int64_t off = 0; off < n; off += kOptimChunk) {
    const int64_t len = n - off < kOptimChunk ? n - off : kOptimChunk;
    auto adv = [&](const void* ptr, size_t es) -> char* {
      return ptr ? const_cast<char*>(static_cast<const char*>(ptr)) + off * static_cast<int64_t>(es) : nullptr;
    };
    out.push_back({adv(a, elem[0]), adv(b, elem[1]), adv(c, elem[2]), adv(d, elem[3]), static_cast<int32_t>(len), f0,
                   f1, flag});
  }
}

void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

// Copies the chunk table to the workspace and returns it as a device pointer. The table is pageable
// host memory: the driver stages it before cudaMemcpyAsync returns (CUDA's API synchronization
// behaviour), so it may be freed right after; the copy may wait for the stream's earlier work.
const Chunk* upload(const std::vector<Chunk>& chunks, void* workspace, size_t workspace_bytes, cudaStream_t stream,
                    const char* what) {
  const size_t bytes = chunks.size() * sizeof(Chunk);
  if (bytes > workspace_bytes || workspace == nullptr)
    throw std::runtime_error(std::string(what) + ": workspace of " + std::to_string(workspace_bytes) + " bytes, " +
                             std::to_string(bytes) + " needed");
  check(cudaMemcpyAsync(workspace, chunks.data(), bytes, cudaMemcpyHostToDevice, stream), what);
  return static_cast<const Chunk*>(workspace);
}

void after_launch(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": kernel launch failed: " + cudaGetErrorString(err));
}

unsigned grid_of(const std::vector<Chunk>& chunks, const char* what) {
  if (chunks.size() > 0x7fffffffu) throw std::runtime_error(std::string(what) + ": too many chunks");
  return static_cast<unsigned>(chunks.size());
}

}  // namespace

size_t optim_workspace_bytes(const int64_t* numels, size_t count) {
  int64_t total = 0;
  for (size_t i = 0; i < count; ++i) total += chunks_of(numels[i]);
  return static_cast<size_t>(total) * sizeof(Chunk);
}

void adam_multi_tensor_device(const AdamTensor* tensors, size_t count, const AdamShared& shared,
                              OptimGradDtype grad_dtype, void* workspace, size_t workspace_bytes, void* stream) {
  const char* what = "adam_multi_tensor_device";
  const size_t gsize = grad_dtype == OptimGradDtype::Float16 ? sizeof(__half) : sizeof(float);
  const size_t elem[4] = {sizeof(float), gsize, sizeof(float), sizeof(float)};
  std::vector<Chunk> chunks;
  for (size_t i = 0; i < count; ++i) {
    const AdamTensor& t = tensors[i];
    split(chunks, t.n, t.param, t.grad, t.exp_avg, t.exp_avg_sq, elem, t.neg_step_size, t.bc2_sqrt, 0);
  }
  if (chunks.empty()) return;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const Chunk* table = upload(chunks, workspace, workspace_bytes, s, what);
  const unsigned grid = grid_of(chunks, what);
  if (grad_dtype == OptimGradDtype::Float16)
    adam_kernel<__half><<<grid, kThreads, 0, s>>>(table, shared);
  else
    adam_kernel<float><<<grid, kThreads, 0, s>>>(table, shared);
  after_launch(what);
}

void ema_multi_tensor_device(const EmaTensor* tensors, size_t count, float beta, void* workspace,
                             size_t workspace_bytes, void* stream) {
  const char* what = "ema_multi_tensor_device";
  const size_t elem[4] = {sizeof(float), sizeof(float), 0, 0};
  std::vector<Chunk> chunks;
  for (size_t i = 0; i < count; ++i)
    split(chunks, tensors[i].n, tensors[i].dst, tensors[i].src, nullptr, nullptr, elem, 0, 0, tensors[i].copy ? 1 : 0);
  if (chunks.empty()) return;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const Chunk* table = upload(chunks, workspace, workspace_bytes, s, what);
  ema_kernel<<<grid_of(chunks, what), kThreads, 0, s>>>(table, beta);
  after_launch(what);
}

void nan_to_num_multi_tensor_device(const SanitizeTensor* tensors, size_t count, void* workspace,
                                    size_t workspace_bytes, void* stream) {
  const char* what = "nan_to_num_multi_tensor_device";
  const size_t elem[4] = {sizeof(float), 0, 0, 0};
  std::vector<Chunk> chunks;
  for (size_t i = 0; i < count; ++i)
    split(chunks, tensors[i].n, tensors[i].data, nullptr, nullptr, nullptr, elem, 0, 0, 0);
  if (chunks.empty()) return;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  const Chunk* table = upload(chunks, workspace, workspace_bytes, s, what);
  nan_to_num_kernel<<<grid_of(chunks, what), kThreads, 0, s>>>(table);
  after_launch(what);
}

}  // namespace sf::kernels
