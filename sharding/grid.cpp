#include "sharding/grid.h"

#include <algorithm>
#include <map>
#include <numeric>
#include <stdexcept>
#include <string>

#include "sharding/sampler.h"

namespace sf::sharding {

GridPlan snapshot_grid(int64_t dataset_size, int resolution_w, int resolution_h,
                       const std::vector<std::vector<float>>* labels, uint32_t seed) {
  if (dataset_size <= 0) throw std::invalid_argument("snapshot grid: empty dataset");
  if (resolution_w <= 0 || resolution_h <= 0)
    throw std::invalid_argument("snapshot grid: bad resolution " + std::to_string(resolution_w) + "x" +
                                std::to_string(resolution_h));
  GridPlan plan;
  plan.gw = std::clamp(7680 / resolution_w, 7, 32);
  plan.gh = std::clamp(4320 / resolution_h, 4, 32);
  const int64_t cells = static_cast<int64_t>(plan.gw) * plan.gh;
  NumpyRandomState rnd(seed);
  plan.indices.reserve(static_cast<size_t>(cells));

  if (!labels || labels->empty()) {
    std::vector<int64_t> all(static_cast<size_t>(dataset_size));
    std::iota(all.begin(), all.end(), 0);
    rnd.shuffle(all);
    for (int64_t i = 0; i < cells; ++i) plan.indices.push_back(all[static_cast<size_t>(i % dataset_size)]);
    return plan;
  }

  const int64_t nl = static_cast<int64_t>(labels->size());
  if (nl > dataset_size || dataset_size % nl != 0)
    throw std::invalid_argument("snapshot grid: " + std::to_string(nl) + " labels for a dataset of " +
                                std::to_string(dataset_size));
  // Python compares the label tuples element by element; std::map's key order on a vector is the
  // same lexicographic order (and, like the tuples, treats -0.0 and 0.0 as one label).
  std::map<std::vector<float>, std::vector<int64_t>> groups;
  for (int64_t idx = 0; idx < dataset_size; ++idx) {
    const auto& raw = (*labels)[static_cast<size_t>(idx % nl)];
    groups[std::vector<float>(raw.rbegin(), raw.rend())].push_back(idx);
  }
  std::vector<std::vector<int64_t>*> order;
  for (auto& [key, members] : groups) {
    rnd.shuffle(members);
    order.push_back(&members);
  }
  for (int y = 0; y < plan.gh; ++y) {
    std::vector<int64_t>& members = *order[static_cast<size_t>(y) % order.size()];
    const size_t n = members.size();
    for (int x = 0; x < plan.gw; ++x) plan.indices.push_back(members[static_cast<size_t>(x) % n]);
    std::rotate(members.begin(), members.begin() + static_cast<std::ptrdiff_t>(plan.gw % n), members.end());
  }
  return plan;
}

}  // namespace sf::sharding
