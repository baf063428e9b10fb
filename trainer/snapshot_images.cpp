#include "trainer/snapshot_images.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/GradMode.h>

#include <algorithm>

#include "data/grid.h"
#include "data/loader.h"
#include "sharding/grid.h"
#include "trainer/training_step.h"

namespace sf::trainer {

SnapshotGrid make_snapshot_grid(const data::PackReader& pack, const TrainOptions& o, const std::vector<float>& labels) {
  const int64_t n_img = pack.size();
  const int64_t len = n_img * (o.mirror ? 2 : 1);
  std::vector<std::vector<float>> raw;
  if (o.label_dim > 0) {
    raw.resize(static_cast<size_t>(n_img));
    for (int64_t i = 0; i < n_img; ++i) {
      if (pack.info().label_kind == data::LabelKind::Class)
        raw[i] = {static_cast<float>(pack.class_label(i))};
      else
        raw[i].assign(labels.begin() + i * o.label_dim, labels.begin() + (i + 1) * o.label_dim);
    }
  }
  sharding::GridPlan plan = sharding::snapshot_grid(len, o.resolution, o.resolution, raw.empty() ? nullptr : &raw, 0);
  SnapshotGrid g;
  g.gw = plan.gw;
  g.gh = plan.gh;
  g.indices = plan.indices;
  g.view = data::parse_channel_view(o.snapshot_rgb);
  g.view.check(pack.info().channels);
  if (o.grid_cols > 0 || o.grid_rows > 0) {
    // A smaller grid: the top-left cells of the reference's plan (rows keep their labels).
    g.gw = o.grid_cols > 0 ? std::min(o.grid_cols, plan.gw) : plan.gw;
    g.gh = o.grid_rows > 0 ? std::min(o.grid_rows, plan.gh) : plan.gh;
    g.indices.clear();
    for (int y = 0; y < g.gh; ++y)
      for (int x = 0; x < g.gw; ++x) g.indices.push_back(plan.indices[static_cast<size_t>(y) * plan.gw + x]);
  }
  const int64_t n = static_cast<int64_t>(g.indices.size());
  at::Generator gen = make_cpu_generator(derive_seed(o.seed, 0, "grid"));
  g.z = at::randn({n, o.G.z_dim}, gen);
  g.c = at::zeros({n, o.label_dim});
  if (o.label_dim > 0) {
    at::Tensor table = at::from_blob(const_cast<float*>(labels.data()), {n_img, o.label_dim}, at::kFloat);
    at::Tensor idx = at::tensor(g.indices, at::kLong).remainder(n_img);
    g.c = table.index_select(0, idx).clone();
  }
  return g;
}

void save_reals_grid(const data::PackReader& pack, const SnapshotGrid& grid, const std::string& path) {
  const auto& info = pack.info();
  const size_t bytes = info.image_bytes();
  std::vector<uint8_t> buf(bytes * grid.indices.size());
  for (size_t k = 0; k < grid.indices.size(); ++k) {
    const int64_t idx = grid.indices[k];
    uint8_t* dst = buf.data() + k * bytes;
    pack.read_image(idx % pack.size(), dst);
    if (idx >= pack.size()) data::xflip_image(dst, info.channels, info.resolution);
  }
  data::write_image_grid(path, buf.data(), static_cast<int64_t>(grid.indices.size()), info.channels, info.resolution,
                         info.resolution, grid.gw, grid.gh, grid.view);
}

void save_fakes_grid(Generator& G_ema, const SnapshotGrid& grid, int batch, const std::string& path) {
  at::NoGradGuard no_grad;
  const bool was_training = G_ema.training();
  G_ema.train(false);
  std::vector<at::Tensor> parts;
  const int64_t n = grid.z.size(0);
  const c10::Device dev = G_ema.state().entries().front().tensor.device();  // the grid follows G_ema
  for (int64_t i = 0; i < n; i += batch) {
    const int64_t m = std::min<int64_t>(batch, n - i);
    parts.push_back(G_ema.forward(grid.z.narrow(0, i, m).to(dev), grid.c.narrow(0, i, m).to(dev), 1, -1,
                                  NoiseMode::Const));
  }
  G_ema.train(was_training);
  at::Tensor img = at::cat(parts).to(at::kFloat).cpu().contiguous();
  data::write_image_grid(path, img.data_ptr<float>(), n, static_cast<int>(img.size(1)), static_cast<int>(img.size(2)),
                         static_cast<int>(img.size(3)), -1.0f, 1.0f, grid.gw, grid.gh, grid.view);
}

void save_u8_grid(const at::Tensor& u8, int gw, int gh, const std::string& path, const data::ChannelView& view) {
  at::Tensor t = u8.to(at::kByte).contiguous();
  const int64_t n = t.size(0), cells = static_cast<int64_t>(gw) * gh;
  if (n < cells) {
    std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end());
    shape[0] = cells - n;
    t = at::cat({t, at::zeros(shape, t.options())}).contiguous();
  }
  data::write_image_grid(path, t.data_ptr<uint8_t>(), cells, static_cast<int>(t.size(1)), static_cast<int>(t.size(2)),
                         static_cast<int>(t.size(3)), gw, gh, view);
}

}  // namespace sf::trainer
