// Named tensor I/O: a network's full state to and from an HDF5 group, one dataset per reference key.
//
// The layout is that of the fixtures' `params/` group: dataset names are state_dict keys
// ("synthesis.b4.conv1.affine.weight"), float32, in the tensor's shape (a scalar is an HDF5 scalar).
// A strict load fails on missing, unexpected or mis-shaped keys with one message that names every
// offending key and both shapes; a partial load copies what matches and reports the rest.
// Not thread-safe (HDF5 is serial here).
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "data/h5.h"
#include "trainer/param_store.h"

namespace sf::trainer {

// Reads a numeric dataset as a CPU tensor of `dtype` (float32 by default; float64 and int64 supported).
at::Tensor read_tensor(const h5::Handle& loc, const std::string& name, at::ScalarType dtype = at::kFloat);
// Writes a tensor (float32, float64, int64 or uint8; moved to the CPU and made contiguous).
void write_tensor(const h5::Handle& loc, const std::string& name, const at::Tensor& t);

void save_state(const ParamStore& store, const h5::Handle& group);

struct LoadReport {
  std::vector<std::string> missing;     // in the network, not in the file
  std::vector<std::string> unexpected;  // in the file, not in the network
  std::vector<std::string> mismatched;  // "key: file [..] vs network [..]"
  bool clean() const { return missing.empty() && unexpected.empty() && mismatched.empty(); }
  std::string summary() const;
};

// Copies every matching dataset of `group` into `store` in place. Without `partial`, any problem
// throws std::runtime_error naming the group and every offending key (and nothing is modified).
LoadReport load_state(ParamStore& store, const h5::Handle& group, bool partial = false);

}  // namespace sf::trainer
