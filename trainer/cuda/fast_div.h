// Division by a divisor fixed for a whole launch, without a divide: one multiply-high, an add and a
// shift (the round-up method of Granlund and Montgomery, "Division by invariant integers using
// multiplication", 1994, that compilers use for constant divisors). A GPU has no integer divider:
// a plain 32-bit division by a run-time value costs it about twenty instructions. Shared by the
// CUDA kernels and the CPU tests that check every quotient against n / d. Torch-free.
#pragma once

#include <cstdint>

#include "trainer/cuda/host_device.h"

namespace sf::kernels {

// Quotients and remainders of n / d for 0 <= n < 2^31 and 1 <= d < 2^31.
struct FastDiv {
  uint32_t d = 1, m = 1, s = 0;

  FastDiv() = default;
  explicit FastDiv(uint32_t divisor) : d(divisor) {
    s = 0;
    while ((uint64_t(1) << s) < divisor) ++s;  // s = ceil(log2(d))
    m = static_cast<uint32_t>(((uint64_t(1) << 32) * ((uint64_t(1) << s) - divisor)) / divisor + 1);
  }

  SF_HD static uint32_t mulhi(uint32_t a, uint32_t b) {
#if defined(__CUDA_ARCH__)
    return __umulhi(a, b);
#else
    return static_cast<uint32_t>((static_cast<uint64_t>(a) * b) >> 32);
#endif
  }
  // t <= n < 2^31, so t + n does not overflow.
  SF_HD uint32_t div(uint32_t n) const { return (mulhi(n, m) + n) >> s; }
  SF_HD uint32_t mod(uint32_t n) const { return n - div(n) * d; }
};

}  // namespace sf::kernels
