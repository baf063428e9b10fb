// `styleforge generate`: images of a trained generator (G_ema of a checkpoint), torch-free header.
//
// Three modes:
//   seeds (default)   one image per seed (and class): seedNNNN.png in --outdir, or an HDF5 pack
//                     (--dest, data/pack.h) with class labels for conditional networks, plus
//                     grid.png of the first seeds (at most 8x8 unless --grid says otherwise).
//                     --class all: every seed for every class (classK/seedNNNN.png), the grid
//                     has one row per class.
//   style mixing      (--mix ROWS:COLS) as the reference's style_mixing.py: the ws of the row
//                     seed with the layers `mix_styles` (default 0-6) taken from the column seed;
//                     ROW-COL.png per pair, SEED-SEED.png per seed and grid.png with the
//                     column seeds on top and the row seeds on the left.
//   interpolation     (--interpolate N) N frames between consecutive seeds, linear in W:
//                     frameNNNNNN.png (seeds + (seeds - 1) * N frames) and interpolation.gif.
//
// Channels: PNGs, grid.png and interpolation.gif show an image of C channels as gray (C = 1), RGB
// (C = 3) or, for any other C, one gray panel per channel side by side (a C * W wide PNG per
// image, channel k at x offset k * W); `channels_to_rgb` ("0,1,3", or one index for gray) maps
// chosen channels to RGB instead (data::ChannelView). Packs (--dest) keep all C channels.
//
// Images are computed in batches of `batch` on the chosen device and written as they come, so
// memory does not grow with the number of seeds. z of a seed is numpy's RandomState(seed).randn
// as in the reference's generate.py, and each image depends only on its seed, class and the
// options, not on the batch it was computed in (with noise mode const or none; "random" noise is
// drawn per batch).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace sf::trainer {

inline constexpr int kAllClasses = -2;

struct GenerateRequest {
  std::string network;           // checkpoint path
  std::vector<int64_t> seeds;
  double truncation_psi = 1;
  int class_idx = -1;            // -1: none (unconditional networks); kAllClasses: every class
  std::string noise_mode = "const";
  std::string outdir;            // PNGs and grid.png; may be empty when dest is given
  std::string dest;              // an HDF5 pack (.h5) instead of one PNG per image
  bool force = false;            // replace an existing dest
  int batch = 0;                 // images per forward pass; 0: 32 on a GPU, 4 on the CPU
  int grid_cols = -1, grid_rows = -1;  // -1: automatic (at most 8x8); 0: no grid
  std::vector<int64_t> mix_rows, mix_cols;  // style mixing when both are given
  std::vector<int> mix_styles;   // ws layers taken from the column seed; empty: 0-6
  int interpolate = -1;          // >= 0: frames between consecutive seeds (interpolation mode)
  int fps = 25;                  // interpolation.gif frame rate
  std::string channels_to_rgb;   // PNG/GIF channel mapping (data::parse_channel_view); "": default view
  int threads = 0;
  std::string device = "auto";   // auto | cpu | cuda | cuda:N
  // Called after each batch with images done and in total (may be empty).
  std::function<void(int64_t done, int64_t total)> progress;
};

struct GenerateSummary {
  int64_t images = 0;            // images computed
  int resolution = 0, channels = 0;
  std::string device;            // describe_device()
  int batch = 0;                 // the batch size used
  std::string written;           // "10000 PNGs in out/" or "a pack out.h5 (10000 images, labels: class[2])"
  std::string grid;              // "grid.png 8x8" or "" without a grid
  std::string gif;               // "interpolation.gif (46 frames)" or ""
  double seconds = 0;            // generation (after loading the network)
};

// Throws std::invalid_argument (bad request: the message names the flag) or std::runtime_error.
// Returns the number of images.
int run_generate(const GenerateRequest& req, GenerateSummary* summary = nullptr);
// numpy's legacy np.random.RandomState(seed).randn(n) (the reference's generate.py draws z so).
std::vector<double> numpy_randn(uint32_t seed, int n);
// Parses "0-31", "1,5,7-9" into seeds; throws std::invalid_argument on bad text.
std::vector<int64_t> parse_seed_list(const std::string& text);
// Parses "COLSxROWS" (e.g. 8x4) or "none" (0x0); throws std::invalid_argument naming --grid.
std::pair<int, int> parse_grid_size(const std::string& text);

}  // namespace sf::trainer
