#include "sharding/float_ops.h"

namespace sf::sharding {

void add_into(float* __restrict dst, const float* __restrict src, size_t n) {
  for (size_t i = 0; i < n; ++i) dst[i] += src[i];
}

void divide_by(float* p, size_t n, int divisor) {
  const float d = static_cast<float>(divisor);
  for (size_t i = 0; i < n; ++i) p[i] /= d;
}

}  // namespace sf::sharding
