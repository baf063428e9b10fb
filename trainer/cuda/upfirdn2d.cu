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

// upfirdn2d_math::thread_work over a 3-D grid (ox, oy, plane; upfirdn2d_math::launch_of), so that
// no thread divides to find its pixel. UP and DOWN fix both axes' factors at compile time for the
// networks' cases (0: read from p), so taps_of's division and modulo by them fold to shifts and
// masks. I is the index type (int32_t where it fits).
template <typename S, typename I, int UP, int DOWN>
__global__ void upfirdn2d_kernel(const S* x, const typename Acc<S>::type* f, S* out, I planes, m::ParamsT<I> p,
                                 m::Launch l) {
  using A = typename Acc<S>::type;
  if (UP > 0) p.upx = p.upy = UP;
  if (DOWN > 0) p.downx = p.downy = DOWN;
  const m::Dim3 b{blockIdx.x, blockIdx.y, blockIdx.z}, t{threadIdx.x, threadIdx.y, threadIdx.z};
  m::thread_work<A>(p, f, x, planes, l, b, t, [](const S* q, I i) { return load(q, i); },
                    [out](I i, A v) { store(out, i, v); });
}

template <typename S, typename I, int UP, int DOWN>
void launch(const Upfirdn2dArgs& a, const m::ParamsT<I>& p, cudaStream_t stream) {
  using A = typename Acc<S>::type;
  const m::Launch l = m::launch_of(a.p.out_w, a.p.out_h, a.planes);
  if ((a.p.out_w + l.block.x - 1) / l.block.x > 0x7fffffff)
    throw std::runtime_error("upfirdn2d: output rows of " + std::to_string(a.p.out_w) + " pixels");
  const dim3 grid(l.grid.x, l.grid.y, l.grid.z), block(l.block.x, l.block.y, l.block.z);
  upfirdn2d_kernel<S, I, UP, DOWN><<<grid, block, 0, stream>>>(static_cast<const S*>(a.x), static_cast<const A*>(a.f),
                                                               static_cast<S*>(a.out), static_cast<I>(a.planes), p, l);
}

// The same factors on both axes: up 1 or 2 with down 1, or up 1 with down 2, fixed at compile time.
template <typename S, typename I> void launch_factors(const Upfirdn2dArgs& a, const m::ParamsT<I>& p, cudaStream_t s) {
  const bool same = p.upx == p.upy && p.downx == p.downy;
  if (same && p.upx == 1 && p.downx == 1) launch<S, I, 1, 1>(a, p, s);
  else if (same && p.upx == 2 && p.downx == 1) launch<S, I, 2, 1>(a, p, s);
  else if (same && p.upx == 1 && p.downx == 2) launch<S, I, 1, 2>(a, p, s);
  else launch<S, I, 0, 0>(a, p, s);
}

template <typename S> void launch(const Upfirdn2dArgs& a, cudaStream_t stream) {
  if (!wide_index_forced() && m::fits_int32(a.p, a.planes))
    launch_factors<S, int32_t>(a, m::narrow(a.p), stream);
  else
    launch_factors<S, int64_t>(a, a.p, stream);
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
