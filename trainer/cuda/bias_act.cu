#include "trainer/cuda/bias_act.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <atomic>
#include <stdexcept>
#include <string>

#include "trainer/cuda/bias_act_math.h"
#include "trainer/cuda/fast_div.h"
#include "trainer/cuda/index_width.h"

namespace sf::kernels {
namespace {

namespace m = sf::ops::bias_act_math;

template <typename S> struct Compute { using type = S; };
template <> struct Compute<__half> { using type = float; };  // float16 is computed in float

template <typename S> __device__ __forceinline__ typename Compute<S>::type load(const S* p, int64_t i) {
  return static_cast<typename Compute<S>::type>(p[i]);
}
template <> __device__ __forceinline__ float load<__half>(const __half* p, int64_t i) { return __half2float(p[i]); }
template <typename S> __device__ __forceinline__ void store(S* p, int64_t i, typename Compute<S>::type v) {
  p[i] = static_cast<S>(v);
}
template <> __device__ __forceinline__ void store<__half>(__half* p, int64_t i, float v) { p[i] = __float2half_rn(v); }

std::atomic<bool> g_wide_index{false};

// One thread per element (grid-stride); I is the index type (int32_t when it fits). The bias index
// (i / inner) % channels: by FastDiv in 32 bits, by division in 64.
template <typename S, typename I>
__global__ void bias_act_kernel(int mode, const S* x, const S* b, const S* dy, const S* ddx, S* out, I n, I inner,
                                I channels, FastDiv inner_div, FastDiv channel_div,
                                m::Params<typename Compute<S>::type> p) {
  using C = typename Compute<S>::type;
  const I stride = static_cast<I>(gridDim.x) * static_cast<I>(blockDim.x);
  for (I i = static_cast<I>(blockIdx.x) * static_cast<I>(blockDim.x) + static_cast<I>(threadIdx.x); i < n; i += stride) {
    C v = load(x, i);
    if (b) {
      if constexpr (sizeof(I) == 4)
        v += load(b, static_cast<I>(channel_div.mod(inner_div.div(static_cast<uint32_t>(i)))));
      else
        v += load(b, (i / inner) % channels);
    }
    C r;
    if (mode == 0) r = m::forward(p, v);
    else if (mode == 1) r = m::grad1(p, v, load(dy, i));
    else r = m::grad2(p, v, load(dy, i), load(ddx, i));
    store(out, i, r);
  }
}

template <typename S, typename I> void launch(const BiasActArgs& a, cudaStream_t stream) {
  using C = typename Compute<S>::type;
  m::Params<C> p{a.act, static_cast<C>(a.alpha), static_cast<C>(a.gain), static_cast<C>(a.clamp)};
  constexpr unsigned kThreads = 256;
  const int64_t needed = (a.n + kThreads - 1) / kThreads;
  const unsigned blocks = static_cast<unsigned>(needed < 65535 ? needed : 65535);
  // Divisors only matter with a bias, where inner, channels <= n < 2^30 in the 32-bit path.
  const bool small = sizeof(I) == 4 && a.b != nullptr;
  const FastDiv inner_div(small ? static_cast<uint32_t>(a.inner) : 1u);
  const FastDiv channel_div(small ? static_cast<uint32_t>(a.channels) : 1u);
  bias_act_kernel<S, I><<<blocks, kThreads, 0, stream>>>(
      a.mode, static_cast<const S*>(a.x), static_cast<const S*>(a.b), static_cast<const S*>(a.dy),
      static_cast<const S*>(a.ddx), static_cast<S*>(a.out), static_cast<I>(a.n), static_cast<I>(a.inner),
      static_cast<I>(a.channels), inner_div, channel_div, p);
}

// 32-bit indices while n (and so inner and channels) stays below 2^30: a grid-stride step past the
// last element still fits.
template <typename S> void launch(const BiasActArgs& a, cudaStream_t stream) {
  if (!wide_index_forced() && a.n < (int64_t(1) << 30))
    launch<S, int32_t>(a, stream);
  else
    launch<S, int64_t>(a, stream);
}

}  // namespace

void force_wide_index(bool on) { g_wide_index.store(on); }
bool wide_index_forced() { return g_wide_index.load(); }

void bias_act_device(const BiasActArgs& a, BiasActDtype dtype, void* stream) {
  if (a.n == 0) return;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case BiasActDtype::Float32: launch<float>(a, s); break;
    case BiasActDtype::Float64: launch<double>(a, s); break;
    case BiasActDtype::Float16: launch<__half>(a, s); break;
  }
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("bias_act: kernel launch failed: ") + cudaGetErrorString(err));
}

}  // namespace sf::kernels
