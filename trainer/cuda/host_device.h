// SF_HD marks the per-element arithmetic of the fused kernels (trainer/cuda/*_math.h): compiled for
// host and device by nvcc, always inlined on the host so that the CPU loops that call it vectorise.
#pragma once

#if defined(__CUDACC__)
#define SF_HD __host__ __device__ __forceinline__
#elif defined(__GNUC__)
#define SF_HD inline __attribute__((always_inline))
#else
#define SF_HD inline
#endif
