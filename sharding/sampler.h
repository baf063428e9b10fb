// The infinite training sampler, with the semantics of the reference's InfiniteSampler
// (stylegan2-ada-pytorch torch_utils/misc.py): one global order, a permutation of the dataset
// drawn from `seed` (numpy's legacy RandomState: MT19937 seeded with init_genrand, Fisher-Yates
// shuffle with masked rejection sampling), that keeps changing as it is walked: after position i
// is visited it is swapped with a random earlier position inside a rolling window of
// round(window * size) slots. The global stream is cut between ranks: rank r takes the positions
// congruent to r modulo the world size. With x-flip the dataset is doubled (indices size..2*size-1
// stand for the same images mirrored), as the reference's Dataset does with xflip=True.
//
// One deliberate difference, on by default: in the reference a swap partner i - r (r < window)
// wraps around to the end of the order when r > i, so a position not yet visited in this pass can
// receive an index already handed out, and one pass over the order (an "epoch") may repeat some
// indices and miss others. Here, unless Options::reference_wrap is set, the partner is
// i - (r mod (i + 1)): the same random draw, but never past the start of the pass. Every epoch of
// N*(1+xflip) global positions is then an exact permutation, split disjointly across ranks.
// With reference_wrap the stream equals the reference's for the same seed, index for index.
//
// Every rank walks the whole global stream (cheap: one swap per position), so the stream, and
// with it each rank's share, is a pure function of (size, seed, window, rank, world).
// Not thread-safe; each rank owns its sampler. Torch-free and MPI-free.
#pragma once

#include <cstdint>
#include <vector>

namespace sf::sharding {

// MT19937 with numpy's legacy seeding and bounded draws (bit-identical to np.random.RandomState).
class NumpyRandomState {
 public:
  explicit NumpyRandomState(uint32_t seed);
  uint32_t next_u32();
  // Uniform integer in [0, max] by masked rejection (numpy's random_interval / randint path).
  uint64_t interval(uint64_t max);
  // In-place shuffle as RandomState.shuffle does for a 1-D array.
  void shuffle(std::vector<int64_t>& v);

 private:
  uint32_t mt_[624];
  int pos_;
};

class InfiniteSampler {
 public:
  struct Options {
    bool shuffle = true;
    uint32_t seed = 0;
    double window = 0.5;
    bool xflip = false;  // double the dataset with mirrored copies
    bool reference_wrap = false;  // reproduce the reference's wrap-around swaps exactly
  };
  InfiniteSampler(int64_t dataset_size, int rank, int world, Options opts);
  InfiniteSampler(int64_t dataset_size, int rank, int world) : InfiniteSampler(dataset_size, rank, world, Options{}) {}

  // Length of the (possibly doubled) index space: dataset_size * (xflip ? 2 : 1).
  int64_t length() const { return static_cast<int64_t>(order_.size()); }
  // The next index of this rank, in [0, length()). Index >= dataset_size means "mirrored".
  int64_t next();
  // Splits an index into the image index and whether to mirror it.
  int64_t image_index(int64_t idx) const { return idx % dataset_size_; }
  bool is_flipped(int64_t idx) const { return idx >= dataset_size_; }
  // Convenience: the next `n` indices of this rank.
  std::vector<int64_t> take(int64_t n);

 private:
  void advance();  // performs the swap for the current global position and moves on
  int64_t dataset_size_;
  int rank_, world_;
  Options opts_;
  std::vector<int64_t> order_;
  NumpyRandomState rnd_;
  int64_t window_ = 0;
  int64_t idx_ = 0;  // global position
};

}  // namespace sf::sharding
