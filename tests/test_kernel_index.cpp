// Index arithmetic of the CUDA kernels, checked on the CPU: FastDiv (trainer/cuda/fast_div.h), the
// bias_act kernel's bias index (i / inner) % channels in its 32-bit path.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "trainer/cuda/fast_div.h"

using sf::kernels::FastDiv;

namespace {

// Every n in [0, count) and `random` more drawn up to 2^31 - 1, and the ends of the range.
void expect_quotients(uint32_t d, uint32_t count, int random, std::mt19937& rng) {
  const FastDiv f(d);
  std::vector<uint32_t> ns;
  for (uint32_t n = 0; n < count; ++n) ns.push_back(n);
  std::uniform_int_distribution<uint32_t> any(0, 0x7fffffffu);
  for (int k = 0; k < random; ++k) ns.push_back(any(rng));
  for (uint32_t n : {0x7fffffffu, 0x7ffffffeu, 0x40000000u, 0x3fffffffu}) ns.push_back(n);
  for (uint32_t k = 1; k <= 4; ++k) {  // around multiples of d
    const uint64_t q = uint64_t(0x7fffffffu) / d / k * d;
    for (int64_t e = -1; e <= 1; ++e)
      if (int64_t(q) + e >= 0 && int64_t(q) + e <= 0x7fffffff) ns.push_back(static_cast<uint32_t>(q + e));
  }
  int bad = 0;
  for (uint32_t n : ns) {
    if (f.div(n) != n / d || f.mod(n) != n % d) {
      if (++bad <= 3) ADD_FAILURE() << n << " / " << d << ": " << f.div(n) << " r " << f.mod(n) << ", not " << n / d;
    }
  }
  EXPECT_EQ(bad, 0) << "divisor " << d;
}

}  // namespace

TEST(FastDiv, EqualsDivisionForEveryDivisorShape) {
  std::mt19937 rng(5);
  // Small divisors (channel counts, widths), powers of two and their neighbours, and large ones.
  for (uint32_t d = 1; d <= 1100; ++d) expect_quotients(d, 4096, 64, rng);
  for (int s = 1; s < 31; ++s)
    for (int64_t e : {-1, 0, 1}) {
      const int64_t d = (int64_t(1) << s) + e;
      if (d >= 1 && d <= 0x7fffffff) expect_quotients(static_cast<uint32_t>(d), 64, 256, rng);
    }
  std::uniform_int_distribution<uint32_t> divisors(1, 0x7fffffffu);
  for (int k = 0; k < 300; ++k) expect_quotients(divisors(rng), 16, 256, rng);
  expect_quotients(0x7fffffffu, 16, 256, rng);
}

// The bias index of the 32-bit path equals (i / inner) % channels over whole tensors of the shapes
// bias_act sees (bias along dim 1 of NCHW, along the last dim, and a 2-D [N, C]).
TEST(FastDiv, BiasIndexOfTheKernel) {
  struct Shape {
    int64_t n, inner, channels;
  };
  for (const Shape& s : std::vector<Shape>{{8 * 512 * 4 * 4, 16, 512},
                                           {4 * 3 * 67 * 45, 67 * 45, 3},
                                           {7 * 9 * 13, 1, 13},
                                           {32 * 512, 1, 512},
                                           {2 * 5 * 11 * 1, 11, 5}}) {
    const FastDiv inner(static_cast<uint32_t>(s.inner)), ch(static_cast<uint32_t>(s.channels));
    int64_t bad = 0;
    for (int64_t i = 0; i < s.n; ++i)
      bad += ch.mod(inner.div(static_cast<uint32_t>(i))) != static_cast<uint32_t>((i / s.inner) % s.channels);
    EXPECT_EQ(bad, 0) << s.n << " elements, inner " << s.inner << ", channels " << s.channels;
  }
}
