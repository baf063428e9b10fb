#include "trainer/cuda/upfirdn2d.h"

#include "trainer/cuda/index_width.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

namespace sf::kernels {
namespace {

namespace m = sf::ops::upfirdn2d_math;

template <typename S> struct Acc { using type = S; };
template <> struct Acc<__half> { using type = float; };  // float16 is accumulated in float

template <typename S> __device__ __forceinline__ typename Acc<S>::type load(const S* p, int64_t i) { return p[i]; }
template <> __device__ __forceinline__ float load<__half>(const __half* p, int64_t i) { return __half2float(p[i]); }
template <typename S> __device__ __forceinline__ void store(S* p, int64_t i, typename Acc<S>::type v) { p[i] = v; }
template <> __device__ __forceinline__ void store<__half>(__half* p, int64_t i, float v) { p[i] = __float2half_rn(v); }

// One thread per output element (grid-stride); I is the index type (int32_t when it fits).
template <typename S, typename I>
__global__ void upfirdn2d_kernel(const S* x, const typename Acc<S>::type* f, S* out, I n, m::ParamsT<I> p) {
  using A = typename Acc<S>::type;
  const I stride = static_cast<I>(gridDim.x) * static_cast<I>(blockDim.x);
  const I plane_out = p.out_h * p.out_w, plane_in = p.in_h * p.in_w;
  for (I i = static_cast<I>(blockIdx.x) * static_cast<I>(blockDim.x) + static_cast<I>(threadIdx.x); i < n; i += stride) {
    const I plane = i / plane_out, r = i - plane * plane_out;
    const I oy = r / p.out_w, ox = r - oy * p.out_w;
    const S* xp = x + plane * plane_in;
    const I w = p.in_w;
    auto read = [xp, w](I iy, I ix) { return load(xp, iy * w + ix); };
    store(out, i, m::pixel<A>(p, f, oy, ox, read));
  }
}

template <typename S, typename I> void launch(const Upfirdn2dArgs& a, const m::ParamsT<I>& p, cudaStream_t stream) {
  using A = typename Acc<S>::type;
  const int64_t n = a.planes * a.p.out_h * a.p.out_w;
  constexpr unsigned kThreads = 256;
  const int64_t needed = (n + kThreads - 1) / kThreads;
  const unsigned blocks = static_cast<unsigned>(needed < 65535 ? needed : 65535);
  upfirdn2d_kernel<S, I><<<blocks, kThreads, 0, stream>>>(static_cast<const S*>(a.x), static_cast<const A*>(a.f),
                                                           static_cast<S*>(a.out), static_cast<I>(n), p);
}

template <typename S> void launch(const Upfirdn2dArgs& a, cudaStream_t stream) {
  if (!wide_index_forced() && m::fits_int32(a.p, a.planes))
    launch<S, int32_t>(a, m::narrow(a.p), stream);
  else
    launch<S, int64_t>(a, a.p, stream);
}

}  // namespace

void upfirdn2d_device(const Upfirdn2dArgs& a, Upfirdn2dDtype dtype, void* stream) {
  if (a.planes * a.p.out_h * a.p.out_w == 0) return;
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  switch (dtype) {
    case Upfirdn2dDtype::Float32: launch<float>(a, s); break;
    case Upfirdn2dDtype::Float64: launch<double>(a, s); break;
    case Upfirdn2dDtype::Float16: launch<__half>(a, s); break;
  }
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("upfirdn2d: kernel launch failed: ") + cudaGetErrorString(err));
}

}  // namespace sf::kernels
