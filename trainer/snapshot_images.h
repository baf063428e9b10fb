// The image grids of a run: reals.png, fakes_init.png and fakesNNNNNN.png.
//
// The grid follows the reference's rules (its size from the resolution, the dataset indices
// shuffled by numpy's RandomState(0), one label per row for conditional data); the latent codes
// of the fakes are drawn once per run from a generator seeded by the run's seed, so every fakes
// grid of a run (also after a resume) shows the same z. Fakes use G_ema with constant noise.
// Reals and fakes are shown with the same data::ChannelView (--snapshot-rgb; default: gray for
// C = 1, RGB for C = 3, one gray panel per channel side by side for any other C).
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "data/grid.h"
#include "data/pack.h"
#include "trainer/networks.h"
#include "trainer/train_options.h"

namespace sf::trainer {

struct SnapshotGrid {
  int gw = 0, gh = 0;
  std::vector<int64_t> indices;  // dataset indices, row-major
  at::Tensor z, c;               // [gw*gh, z_dim], [gw*gh, c_dim]
  data::ChannelView view;        // how channels become PNG pixels (reals and fakes alike)
};

SnapshotGrid make_snapshot_grid(const data::PackReader& pack, const TrainOptions& o, const std::vector<float>& labels);
void save_reals_grid(const data::PackReader& pack, const SnapshotGrid& grid, const std::string& path);
void save_fakes_grid(Generator& G_ema, const SnapshotGrid& grid, int batch, const std::string& path);
// u8: [N, C, H, W] uint8 images tiled gw x gh (missing cells black).
void save_u8_grid(const at::Tensor& u8, int gw, int gh, const std::string& path, const data::ChannelView& view = {});

}  // namespace sf::trainer
