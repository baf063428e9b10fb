// The infinite sampler: per-epoch partition across ranks, x-flip doubling, determinism, and the
// index stream of the reference semantics (numpy RandomState) for the same seed.
#include <gtest/gtest.h>

#include <cstdio>
#include <set>
#include <sstream>

#include "sharding/sampler.h"

using sf::sharding::InfiniteSampler;
using sf::sharding::NumpyRandomState;

namespace {

// One epoch of the global stream: world ranks take turns, N*(xflip?2:1) positions in all.
std::vector<std::vector<int64_t>> epoch(int64_t n, int world, uint32_t seed, bool xflip) {
  InfiniteSampler::Options o;
  o.seed = seed;
  o.xflip = xflip;
  int64_t len = n * (xflip ? 2 : 1);
  std::vector<std::vector<int64_t>> per_rank(static_cast<size_t>(world));
  for (int r = 0; r < world; ++r) {
    InfiniteSampler s(n, r, world, o);
    int64_t mine = len / world + (r < len % world ? 1 : 0);  // positions p < len with p % world == r
    per_rank[static_cast<size_t>(r)] = s.take(mine);
  }
  return per_rank;
}

TEST(Sampler, EpochIsDisjointAndCoversForWorldSizes1To8) {
  const int64_t n = 103;
  for (uint32_t seed : {0u, 12345u}) {
    for (bool xflip : {false, true}) {
      for (int world = 1; world <= 8; ++world) {
        SCOPED_TRACE("seed " + std::to_string(seed) + " world " + std::to_string(world) + (xflip ? " xflip" : ""));
        auto parts = epoch(n, world, seed, xflip);
        std::set<int64_t> seen;
        std::vector<int> per_image(static_cast<size_t>(n), 0), flipped(static_cast<size_t>(n), 0);
        size_t total = 0;
        for (const auto& p : parts) {
          for (int64_t idx : p) {
            EXPECT_TRUE(seen.insert(idx).second) << "index " << idx << " taken twice";
            ASSERT_GE(idx, 0);
            ASSERT_LT(idx, n * (xflip ? 2 : 1));
            ++per_image[static_cast<size_t>(idx % n)];
            if (idx >= n) ++flipped[static_cast<size_t>(idx % n)];
          }
          total += p.size();
        }
        EXPECT_EQ(total, static_cast<size_t>(n * (xflip ? 2 : 1)));
        for (int64_t i = 0; i < n; ++i) {
          EXPECT_EQ(per_image[static_cast<size_t>(i)], xflip ? 2 : 1) << "image " << i;
          if (xflip) EXPECT_EQ(flipped[static_cast<size_t>(i)], 1) << "image " << i;
        }
        // Same seed, same stream; another seed, another order.
        EXPECT_EQ(parts, epoch(n, world, seed, xflip));
      }
      EXPECT_NE(epoch(n, 1, seed, xflip), epoch(n, 1, seed + 1, xflip));
    }
  }
}

TEST(Sampler, RanksInterleaveTheGlobalStream) {
  // Rank r of world W yields exactly the global positions r, r+W, ... of the world-1 stream.
  const int64_t n = 50;
  InfiniteSampler global(n, 0, 1);
  auto g = global.take(400);
  for (int world : {2, 3, 8}) {
    for (int r = 0; r < world; ++r) {
      InfiniteSampler s(n, r, world);
      auto mine = s.take(400 / world);
      for (size_t k = 0; k < mine.size(); ++k) ASSERT_EQ(mine[k], g[static_cast<size_t>(r) + k * world]);
    }
  }
}

TEST(Sampler, MersenneTwisterMatchesPublishedValues) {
  // MT19937 reference output for init_genrand(5489): the first value is 3499211612 and the
  // 10000th is 4123659995 (C++ std::mt19937 uses the same definition).
  NumpyRandomState r(5489);
  EXPECT_EQ(r.next_u32(), 3499211612u);
  for (int i = 1; i < 9999; ++i) r.next_u32();
  EXPECT_EQ(r.next_u32(), 4123659995u);
}

std::vector<int64_t> python_stream(int64_t n, int rank, int world, uint32_t seed, int count, double window) {
  std::ostringstream cmd;
  cmd << "/usr/bin/python3 " << STYLEFORGE_SOURCE_DIR << "/tests/data_reference_sampler.py " << n << " " << rank << " "
      << world << " " << seed << " " << count << " " << window << " 2>&1";
  FILE* p = popen(cmd.str().c_str(), "r");
  std::string out;
  char buf[4096];
  while (p && fgets(buf, sizeof buf, p)) out += buf;
  int rc = p ? pclose(p) : -1;
  EXPECT_EQ(rc, 0) << "reference sampler script failed (needs /usr/bin/python3 with numpy, "
                      "installed by scripts/install-deps.sh): "
                   << out;
  std::istringstream in(out);
  std::vector<int64_t> v;
  int64_t x;
  while (in >> x) v.push_back(x);
  return v;
}

TEST(Sampler, MatchesReferenceStreamFromNumpy) {
  for (auto [n, world, seed, window] : std::vector<std::tuple<int64_t, int, uint32_t, double>>{
           {10, 1, 0, 0.5}, {37, 3, 7, 0.5}, {1000, 4, 123, 0.5}, {64, 2, 1, 0.0}, {5, 1, 99, 1.0}}) {
    for (int rank = 0; rank < world; ++rank) {
      SCOPED_TRACE("n " + std::to_string(n) + " rank " + std::to_string(rank) + "/" + std::to_string(world));
      InfiniteSampler::Options o;
      o.seed = seed;
      o.window = window;
      o.reference_wrap = true;
      InfiniteSampler s(n, rank, world, o);
      const int count = static_cast<int>(3 * n / world + 5);  // well past the first epoch
      auto want = python_stream(n, rank, world, seed, count, window);
      ASSERT_EQ(want.size(), static_cast<size_t>(count));
      EXPECT_EQ(s.take(count), want);
    }
  }
}

TEST(Sampler, DefaultDiffersFromReferenceOnlyWhereTheSwapWouldWrap) {
  // Same draws: the first epoch's prefix up to the first wrapped swap is identical, and in both
  // modes the stream stays a shuffle of the same index set; reference mode repeats within an epoch.
  const int64_t n = 200;
  InfiniteSampler::Options ref;
  ref.reference_wrap = true;
  InfiniteSampler a(n, 0, 1), b(n, 0, 1, ref);
  auto ea = a.take(n), eb = b.take(n);
  EXPECT_EQ(ea[0], eb[0]);
  EXPECT_EQ(std::set<int64_t>(ea.begin(), ea.end()).size(), static_cast<size_t>(n));
  EXPECT_LT(std::set<int64_t>(eb.begin(), eb.end()).size(), static_cast<size_t>(n));
  // Later epochs of the default mode stay exact permutations, and the order keeps changing.
  auto ea2 = a.take(n);
  EXPECT_EQ(std::set<int64_t>(ea2.begin(), ea2.end()).size(), static_cast<size_t>(n));
  EXPECT_NE(ea, ea2);
}

TEST(Sampler, RejectsBadArguments) {
  EXPECT_THROW(InfiniteSampler(0, 0, 1), std::invalid_argument);
  EXPECT_THROW(InfiniteSampler(10, 2, 2), std::invalid_argument);
  EXPECT_THROW(InfiniteSampler(10, -1, 2), std::invalid_argument);
}

}  // namespace
