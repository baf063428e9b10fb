#include "sharding/sampler.h"

#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>
#include <utility>

namespace sf::sharding {

NumpyRandomState::NumpyRandomState(uint32_t seed) {
  mt_[0] = seed;
  for (int i = 1; i < 624; ++i) mt_[i] = 1812433253u * (mt_[i - 1] ^ (mt_[i - 1] >> 30)) + static_cast<uint32_t>(i);
  pos_ = 624;
}

uint32_t NumpyRandomState::next_u32() {
  if (pos_ >= 624) {
    for (int i = 0; i < 624; ++i) {
      uint32_t y = (mt_[i] & 0x80000000u) | (mt_[(i + 1) % 624] & 0x7fffffffu);
      mt_[i] = mt_[(i + 397) % 624] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
    }
    pos_ = 0;
  }
  uint32_t y = mt_[pos_++];
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= y >> 18;
  return y;
}

uint64_t NumpyRandomState::interval(uint64_t max) {
  if (max == 0) return 0;
  uint64_t mask = max;
  mask |= mask >> 1; mask |= mask >> 2; mask |= mask >> 4; mask |= mask >> 8; mask |= mask >> 16; mask |= mask >> 32;
  uint64_t v;
  if (max <= 0xffffffffu) {
    while ((v = (next_u32() & mask)) > max) {}
  } else {
    while ((v = (((uint64_t(next_u32()) << 32) | next_u32()) & mask)) > max) {}
  }
  return v;
}

void NumpyRandomState::shuffle(std::vector<int64_t>& v) {
  for (size_t i = v.size(); i-- > 1;) {
    size_t j = static_cast<size_t>(interval(i));
    std::swap(v[i], v[j]);
  }
}

InfiniteSampler::InfiniteSampler(int64_t dataset_size, int rank, int world, Options opts)
    : dataset_size_(dataset_size), rank_(rank), world_(world), opts_(opts), rnd_(opts.seed) {
  if (dataset_size <= 0) throw std::invalid_argument("sampler: empty dataset");
  if (world <= 0 || rank < 0 || rank >= world)
    throw std::invalid_argument("sampler: rank " + std::to_string(rank) + " not in [0, " + std::to_string(world) + ")");
  if (!(opts.window >= 0 && opts.window <= 1)) throw std::invalid_argument("sampler: window must be in [0, 1]");
  order_.resize(static_cast<size_t>(dataset_size * (opts.xflip ? 2 : 1)));
  std::iota(order_.begin(), order_.end(), 0);
  if (opts.shuffle) {
    rnd_.shuffle(order_);
    window_ = static_cast<int64_t>(std::nearbyint(static_cast<double>(order_.size()) * opts.window));
  }
}

void InfiniteSampler::advance() {
  const int64_t n = static_cast<int64_t>(order_.size());
  if (window_ >= 2) {
    int64_t i = idx_ % n;
    int64_t r = static_cast<int64_t>(rnd_.interval(static_cast<uint64_t>(window_ - 1)));
    int64_t j = opts_.reference_wrap ? ((i - r) % n + n) % n : i - (r % (i + 1));
    std::swap(order_[static_cast<size_t>(i)], order_[static_cast<size_t>(j)]);
  }
  ++idx_;
}

int64_t InfiniteSampler::next() {
  const int64_t n = static_cast<int64_t>(order_.size());
  while (idx_ % world_ != rank_) advance();
  int64_t out = order_[static_cast<size_t>(idx_ % n)];
  advance();
  return out;
}

std::vector<int64_t> InfiniteSampler::take(int64_t n) {
  std::vector<int64_t> out(static_cast<size_t>(n));
  for (auto& v : out) v = next();
  return out;
}

}  // namespace sf::sharding
