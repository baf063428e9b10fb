// Which dataset images a run's snapshot grid (reals.png, fakes*.png) shows, by the reference's
// rules (stylegan2-ada-pytorch training_loop.setup_snapshot_image_grid), index for index:
//   gw = clip(7680 // W, 7, 32) columns, gh = clip(4320 // H, 4, 32) rows;
//   no labels: a numpy RandomState(seed) shuffle of range(N), taken cyclically for gw * gh cells;
//   labels: images grouped by their raw label read back to front (the reference's
//     tuple(raw_label.flat[::-1])), each group shuffled by the same RandomState in sorted label
//     order, then one label per row (labels cycle when there are more rows than labels), each row
//     the next gw images of its group, taken cyclically.
// It lives in sharding/ because it needs the bit-exact numpy RandomState of sharding/sampler.h
// (data/ may not depend on sharding/); the PNG writer is data/grid.h. Pure functions, reentrant.
#pragma once

#include <cstdint>
#include <vector>

namespace sf::sharding {

struct GridPlan {
  int gw = 0, gh = 0;            // columns, rows
  std::vector<int64_t> indices;  // gw * gh dataset indices, row-major
};

// dataset_size is the reference's len(training_set): with x-flip it is twice the number of images
// (indices >= the image count are mirrored copies). `labels` are the *raw* labels (a class pack's
// class index as a one-element vector, not the one-hot vector training sees; a vector pack's
// vector as stored); null or empty means unconditional. When labels->size() is smaller than
// dataset_size it must divide it, and index i has label (*labels)[i % labels->size()] (x-flip).
// Throws std::invalid_argument for an empty dataset, a bad resolution or a bad label count.
GridPlan snapshot_grid(int64_t dataset_size, int resolution_w, int resolution_h,
                       const std::vector<std::vector<float>>* labels, uint32_t seed = 0);

}  // namespace sf::sharding
