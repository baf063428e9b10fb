// The element loops of the CPU reductions (ring allreduce, parameter servers), in one place.
// float_ops.cpp is compiled with -O3 (CMakeLists.txt): GCC's -O2 cost model leaves these loops
// scalar, which halves the bandwidth of a sum on one core.
#pragma once

#include <cstddef>

namespace sf::sharding {

// dst[i] += src[i] for i < n (the buffers do not overlap).
void add_into(float* dst, const float* src, size_t n);
// p[i] /= divisor for i < n, in float32 (the same bits as a tensor's div_ by that integer).
void divide_by(float* p, size_t n, int divisor);

}  // namespace sf::sharding
