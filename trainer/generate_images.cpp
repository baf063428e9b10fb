// `styleforge generate`: batched image generation, packs, grids, style mixing and interpolation
// (see generate.h).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>

#include <nlohmann/json.hpp>

#include "data/gif.h"
#include "data/grid.h"
#include "data/image.h"
#include "data/pack.h"
#include "trainer/batch_invariant.h"
#include "trainer/checkpoint.h"
#include "trainer/device.h"
#include "trainer/generate.h"
#include "trainer/import.h"
#include "trainer/optim.h"
#include "trainer/snapshot_images.h"

namespace fs = std::filesystem;

namespace sf::trainer {
namespace {

constexpr int kMaxBatch = 4096;
// --batch 0: a GPU needs large batches to be busy; on a CPU small ones are fastest (a 64x64
// network on one core: 4 -> 124 images/s, 32 -> 93, 64 -> 66).
constexpr int kAutoBatchGpu = 32, kAutoBatchCpu = 4;
constexpr int kAutoGridSide = 8;    // automatic grids show at most 8x8 images
constexpr int kAutoClassRows = 32;  // --class all: at most 32 class rows unless --grid says more
constexpr size_t kMaxMixSeeds = 256;  // per side of a style-mixing grid

std::string seed_name(int64_t seed) {
  char name[64];
  std::snprintf(name, sizeof name, "seed%04lld.png", static_cast<long long>(seed));
  return name;
}

// The reference's conversion of G's output to pixels: x * 127.5 + 128, clamped, truncated.
at::Tensor to_u8(const at::Tensor& img) {
  return (img * 127.5 + 128).clamp(0, 255).to(at::kByte).cpu().contiguous();
}

// A batch of one runs the synthesis' per-sample grouped convolutions as plain ones (groups 1),
// which round differently from any larger batch; a lone item is computed next to a copy of itself
// so that every image comes out of the same kernels. Returns f(x) (for one row: the first row of f
// on two copies).
template <class F>
at::Tensor batch_of_two_or_more(const at::Tensor& x, F f) {
  if (x.size(0) != 1) return f(x);
  return f(at::cat({x, x})).narrow(0, 0, 1);
}

// The network, ready to run on its device.
struct Net {
  CheckpointInfo info;
  std::unique_ptr<Generator> G;
  c10::Device dev = c10::Device(c10::kCPU);
  int res() const { return info.G.img_resolution; }
  int channels() const { return info.G.img_channels; }
  int c_dim() const { return info.G.c_dim; }
  data::ChannelView view;  // how PNGs and GIFs show the channels
  int z_dim() const { return info.G.z_dim; }
};

// z of seeds[begin, end) as numpy's RandomState(seed).randn, float32 on the device.
at::Tensor seed_z(const Net& net, const std::vector<int64_t>& seeds, size_t begin, size_t end) {
  const int zd = net.z_dim();
  at::Tensor z = at::empty({static_cast<int64_t>(end - begin), zd}, at::kFloat);
  float* p = z.data_ptr<float>();
  for (size_t i = begin; i < end; ++i) {
    const std::vector<double> v = numpy_randn(static_cast<uint32_t>(seeds[i]), zd);
    for (int k = 0; k < zd; ++k) *p++ = static_cast<float>(v[static_cast<size_t>(k)]);
  }
  return z.to(net.dev);
}

// One-hot labels (classes < 0: the zero vector of unconditional networks).
at::Tensor one_hot(const Net& net, const std::vector<int>& classes) {
  at::Tensor c = at::zeros({static_cast<int64_t>(classes.size()), net.c_dim()}, at::kFloat);
  for (size_t i = 0; i < classes.size(); ++i)
    if (classes[i] >= 0) c[static_cast<int64_t>(i)][classes[i]] = 1.0f;
  return c.to(net.dev);
}

// Where images go: one PNG each under outdir, or one pack.
class ImageSink {
 public:
  ImageSink(const GenerateRequest& req, const Net& net, bool labelled) : req_(req), labelled_(labelled), view_(net.view), view_desc_(net.view.describe(net.channels())) {
    if (!req.dest.empty()) {
      data::PackWriter::Options o;
      o.force = req.force;
      o.importer_json = nlohmann::json{{"source", fs::absolute(req.network).lexically_normal().string()},
                                       {"source_kind", "generate"},
                                       {"truncation_psi", req.truncation_psi},
                                       {"noise_mode", req.noise_mode}}
                            .dump();
      if (labelled)
        for (int k = 0; k < net.c_dim(); ++k) o.class_names.push_back(std::to_string(k));
      pack_ = std::make_unique<data::PackWriter>(req.dest, o);
    }
  }
  // u8: [n, C, H, W] CPU bytes, image i named names[i]; cls: their class (-1: none).
  void put_batch(const at::Tensor& u8, const std::vector<std::string>& names, int cls) {
    const int c = static_cast<int>(u8.size(1)), h = static_cast<int>(u8.size(2)), w = static_cast<int>(u8.size(3));
    const int64_t n = u8.size(0), bytes = static_cast<int64_t>(c) * h * w;
    const uint8_t* p = u8.data_ptr<uint8_t>();
    if (pack_) {
      data::Label l;
      if (labelled_) l.kind = data::LabelKind::Class, l.cls = cls;
      for (int64_t i = 0; i < n; ++i) pack_->add(p + i * bytes, c, h, names[static_cast<size_t>(i)], l);
    } else {
      std::vector<std::string> paths;
      for (const auto& name : names) {
        const fs::path path = fs::path(req_.outdir) / name;
        if (path.has_parent_path() && dirs_.insert(path.parent_path().string()).second)
          fs::create_directories(path.parent_path());
        paths.push_back(path.string());
      }
      // Encoded on LibTorch's threads (in parallel with --threads > 1) rather than on one while
      // the others wait.
      at::parallel_for(0, n, 1, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i)
          data::write_png_file(paths[static_cast<size_t>(i)], data::view_image(p + i * bytes, c, h, w, view_));
      });
    }
    n_ += n;
  }
  std::string finish() {
    if (!pack_) return std::to_string(n_) + (n_ == 1 ? " PNG" : " PNGs") + " in " + req_.outdir + " (" + view_desc_ + ")";
    const data::PackInfo info = pack_->commit();
    std::string labels = data::label_kind_name(info.label_kind);
    if (info.label_kind != data::LabelKind::None) labels += "[" + std::to_string(info.label_dim) + "]";
    return "the pack " + info.path + " (" + std::to_string(info.num_images) + (info.num_images == 1 ? " image" : " images") +
           ", labels: " + labels + ")";
  }

 private:
  const GenerateRequest& req_;
  bool labelled_;
  data::ChannelView view_;
  std::string view_desc_;
  std::unique_ptr<data::PackWriter> pack_;
  std::set<std::string> dirs_;
  int64_t n_ = 0;
};

// A grid being filled cell by cell (CPU bytes; cells never written stay black).
class Grid {
 public:
  Grid(int gw, int gh, int c, int r, const data::ChannelView& view) : gw_(gw), gh_(gh), view_(view) {
    if (gw > 0 && gh > 0) cells_ = at::zeros({static_cast<int64_t>(gw) * gh, c, r, r}, at::kByte);
  }
  bool on() const { return cells_.defined(); }
  void set(int64_t cell, const at::Tensor& chw) {
    if (on() && cell >= 0 && cell < cells_.size(0)) cells_[cell].copy_(chw);
  }
  std::string save(const std::string& outdir) const {
    if (!on() || outdir.empty()) return "";
    save_u8_grid(cells_, gw_, gh_, (fs::path(outdir) / "grid.png").string(), view_);
    return "grid.png " + std::to_string(gw_) + "x" + std::to_string(gh_);
  }

 private:
  int gw_, gh_;
  data::ChannelView view_;
  at::Tensor cells_;
};

void check_request(const GenerateRequest& req, const Net& net) {
  auto bad = [](const std::string& m) { throw std::invalid_argument(m); };
  if (req.batch < 0 || req.batch > kMaxBatch)
    bad("--batch " + std::to_string(req.batch) + ": must be in 1.." + std::to_string(kMaxBatch) + " (or 0: automatic)");
  const bool mix = !req.mix_rows.empty() || !req.mix_cols.empty(), interp = req.interpolate >= 0;
  if (mix && interp) bad("--mix and --interpolate: give one of them");
  if (mix && (req.mix_rows.empty() || req.mix_cols.empty())) bad("--mix: give row and column seeds as ROWS:COLS, e.g. 0-3:10-12");
  if (!mix && req.seeds.empty()) bad("--seeds: no seeds");
  if (req.dest.empty() && req.outdir.empty()) bad("--outdir (or --dest FILE.h5): where to write the images");
  if (!req.dest.empty() && (mix || interp)) bad("--dest: packs hold seed images; --mix and --interpolate write PNGs to --outdir");
  if (!req.dest.empty() && fs::exists(req.dest) && !req.force) bad("--dest " + req.dest + ": exists already (use --force to replace it)");
  if (!req.dest.empty() && (req.grid_cols > 0 || req.grid_rows > 0) && req.outdir.empty())
    bad("--grid: give --outdir for grid.png (with --dest the images go to the pack)");
  if (mix && (req.mix_rows.size() > kMaxMixSeeds || req.mix_cols.size() > kMaxMixSeeds))
    bad("--mix: at most " + std::to_string(kMaxMixSeeds) + " row and " + std::to_string(kMaxMixSeeds) + " column seeds");
  if (interp && req.seeds.size() < 2) bad("--interpolate: give at least two --seeds to move between");
  if (interp && (req.fps < 1 || req.fps > 50)) bad("--fps " + std::to_string(req.fps) + ": must be in 1..50");
  try {
    data::parse_channel_view(req.channels_to_rgb).check(net.channels());
  } catch (const std::exception& e) {
    bad("--channels-to-rgb '" + req.channels_to_rgb + "': " + e.what() + " (the network makes " +
        std::to_string(net.channels()) + "-channel images)");
  }
  if (req.class_idx == kAllClasses) {
    if (net.c_dim() == 0) bad("--class all: the network is unconditional");
    if (mix || interp) bad("--class all: only with seed images (not with --mix or --interpolate); give one class");
  } else if (net.c_dim() > 0) {
    if (req.class_idx < 0 || req.class_idx >= net.c_dim())
      bad("--class: the network is conditional; give a class in [0, " + std::to_string(net.c_dim()) + ") or all");
  } else if (req.class_idx >= 0) {
    std::cerr << "warning: --class=" << req.class_idx << " ignored when running an unconditional network\n";
  }
}

// --- the three modes --------------------------------------------------------------------------

int64_t generate_seeds(const GenerateRequest& req, Net& net, NoiseMode mode, GenerateSummary& sum) {
  const int64_t ns = static_cast<int64_t>(req.seeds.size());
  const bool all = req.class_idx == kAllClasses;
  std::vector<int> classes = all ? std::vector<int>() : std::vector<int>{net.c_dim() > 0 ? req.class_idx : -1};
  for (int k = 0; all && k < net.c_dim(); ++k) classes.push_back(k);
  const int64_t total = ns * static_cast<int64_t>(classes.size());

  // The grid: the first seeds (rows of gw), or with all classes a row per class.
  int gw = req.grid_cols, gh = req.grid_rows;
  if (gw < 0) {
    if (all) {
      gw = static_cast<int>(std::min<int64_t>(ns, kAutoGridSide));
      gh = std::min(net.c_dim(), kAutoClassRows);
    } else {
      const int64_t m = std::min<int64_t>(ns, kAutoGridSide * kAutoGridSide);
      gw = static_cast<int>(std::ceil(std::sqrt(static_cast<double>(m))));
      gh = static_cast<int>((m + gw - 1) / gw);
    }
  }
  Grid grid(req.outdir.empty() ? 0 : gw, gh, net.channels(), net.res(), net.view);
  ImageSink sink(req, net, net.c_dim() > 0);
  if (req.progress) req.progress(0, total);

  int64_t done = 0;
  for (size_t ci = 0; ci < classes.size(); ++ci) {
    for (int64_t b0 = 0; b0 < ns; b0 += req.batch) {
      // Batches never span two classes, so that the same seed lands at the same place in a
      // batch whatever the class; the image does not depend on the batch either way.
      const int64_t b1 = std::min<int64_t>(ns, b0 + req.batch);
      at::Tensor z = seed_z(net, req.seeds, static_cast<size_t>(b0), static_cast<size_t>(b1));
      at::Tensor c = one_hot(net, std::vector<int>(static_cast<size_t>(b1 - b0), classes[ci]));
      at::Tensor zc = at::cat({z, c}, 1);
      at::Tensor u8 = to_u8(batch_of_two_or_more(zc, [&](const at::Tensor& t) {
        return net.G->forward(t.narrow(1, 0, net.z_dim()), t.narrow(1, net.z_dim(), net.c_dim()), req.truncation_psi, -1, mode);
      }));
      std::vector<std::string> names;
      for (int64_t i = b0; i < b1; ++i)
        names.push_back(all ? "class" + std::to_string(classes[ci]) + "/" + seed_name(req.seeds[static_cast<size_t>(i)])
                            : seed_name(req.seeds[static_cast<size_t>(i)]));
      sink.put_batch(u8, names, classes[ci]);
      for (int64_t i = b0; i < b1; ++i) {
        if (!all) grid.set(i, u8[i - b0]);
        else if (i < gw && static_cast<int>(ci) < gh) grid.set(static_cast<int64_t>(ci) * gw + i, u8[i - b0]);
      }
      done += b1 - b0;
      if (req.progress) req.progress(done, total);
    }
  }
  sum.written = sink.finish();
  sum.grid = grid.save(req.outdir);
  return done;
}

int64_t generate_mix(const GenerateRequest& req, Net& net, NoiseMode mode, GenerateSummary& sum) {
  const int num_ws = net.G->num_ws();
  std::vector<int> styles = req.mix_styles;
  if (styles.empty()) {
    for (int l = 0; l <= 6 && l < num_ws; ++l) styles.push_back(l);
  } else {
    for (int l : styles)
      if (l < 0 || l >= num_ws)
        throw std::invalid_argument("--styles " + std::to_string(l) + ": the network has " + std::to_string(num_ws) +
                                    " ws layers (0-" + std::to_string(num_ws - 1) + ")");
  }
  std::vector<int64_t> uniq;
  std::map<int64_t, int64_t> index;
  for (const auto* list : {&req.mix_rows, &req.mix_cols})
    for (int64_t s : *list)
      if (index.emplace(s, static_cast<int64_t>(uniq.size())).second) uniq.push_back(s);
  const int64_t nu = static_cast<int64_t>(uniq.size()), nr = static_cast<int64_t>(req.mix_rows.size()),
                nc = static_cast<int64_t>(req.mix_cols.size());
  const int64_t total = nu + nr * nc;
  const int cls = net.c_dim() > 0 ? req.class_idx : -1;

  // ws of every seed (truncated, as the reference does before mixing).
  std::vector<at::Tensor> parts;
  for (int64_t b0 = 0; b0 < nu; b0 += req.batch) {
    const int64_t b1 = std::min<int64_t>(nu, b0 + req.batch);
    at::Tensor z = seed_z(net, uniq, static_cast<size_t>(b0), static_cast<size_t>(b1));
    parts.push_back(net.G->mapping(z, one_hot(net, std::vector<int>(static_cast<size_t>(b1 - b0), cls)), req.truncation_psi));
  }
  const at::Tensor ws = at::cat(parts);  // [U, num_ws, w_dim]
  at::Tensor mask = at::zeros({1, num_ws, 1}, at::kBool);
  for (int l : styles) mask[0][l][0] = true;
  mask = mask.to(net.dev);

  // Work items: (row seed index, column seed index) into uniq; the seeds themselves first.
  std::vector<std::pair<int64_t, int64_t>> items;
  for (int64_t u = 0; u < nu; ++u) items.emplace_back(u, u);
  for (int64_t r : req.mix_rows)
    for (int64_t c : req.mix_cols) items.emplace_back(index.at(r), index.at(c));

  ImageSink sink(req, net, false);
  if (req.progress) req.progress(0, total);
  const int gw = static_cast<int>(nc + 1), gh = static_cast<int>(nr + 1);
  Grid grid(gw, gh, net.channels(), net.res(), net.view);
  std::vector<at::Tensor> own(static_cast<size_t>(nu));  // each seed's own image, for the grid's edges
  int64_t done = 0;
  for (size_t b0 = 0; b0 < items.size(); b0 += static_cast<size_t>(req.batch)) {
    const size_t b1 = std::min(items.size(), b0 + static_cast<size_t>(req.batch));
    std::vector<int64_t> ri, ci;
    for (size_t i = b0; i < b1; ++i) ri.push_back(items[i].first), ci.push_back(items[i].second);
    at::Tensor w_row = ws.index_select(0, at::tensor(ri, at::kLong).to(net.dev));
    at::Tensor w_col = ws.index_select(0, at::tensor(ci, at::kLong).to(net.dev));
    at::Tensor u8 = to_u8(batch_of_two_or_more(at::where(mask, w_col, w_row),
                                               [&](const at::Tensor& w) { return net.G->synthesis(w, mode); }));
    std::vector<std::string> names;
    for (size_t i = b0; i < b1; ++i)
      names.push_back(std::to_string(uniq[static_cast<size_t>(items[i].first)]) + "-" +
                      std::to_string(uniq[static_cast<size_t>(items[i].second)]) + ".png");
    sink.put_batch(u8, names, -1);
    for (size_t i = b0; i < b1; ++i) {
      at::Tensor img = u8[static_cast<int64_t>(i - b0)];
      if (i < static_cast<size_t>(nu)) {
        own[i] = img.clone();
      } else {
        const int64_t k = static_cast<int64_t>(i) - nu;  // pairs are row-major: (row k / nc, column k % nc)
        grid.set((k / nc + 1) * gw + k % nc + 1, img);
      }
    }
    done += static_cast<int64_t>(b1 - b0);
    if (req.progress) req.progress(done, total);
  }
  // Grid: column seeds along the top, row seeds down the left, mixes inside.
  for (int64_t c = 0; c < nc; ++c) grid.set(1 + c, own[static_cast<size_t>(index.at(req.mix_cols[static_cast<size_t>(c)]))]);
  for (int64_t r = 0; r < nr; ++r) grid.set((r + 1) * gw, own[static_cast<size_t>(index.at(req.mix_rows[static_cast<size_t>(r)]))]);
  sum.written = sink.finish();
  sum.grid = grid.save(req.outdir);
  return done;
}

int64_t generate_interpolation(const GenerateRequest& req, Net& net, NoiseMode mode, GenerateSummary& sum) {
  const int64_t nk = static_cast<int64_t>(req.seeds.size()), steps = req.interpolate + 1;
  const int64_t total = nk + (nk - 1) * req.interpolate;
  const int cls = net.c_dim() > 0 ? req.class_idx : -1;
  std::vector<at::Tensor> parts;
  for (int64_t b0 = 0; b0 < nk; b0 += req.batch) {
    const int64_t b1 = std::min<int64_t>(nk, b0 + req.batch);
    at::Tensor z = seed_z(net, req.seeds, static_cast<size_t>(b0), static_cast<size_t>(b1));
    parts.push_back(net.G->mapping(z, one_hot(net, std::vector<int>(static_cast<size_t>(b1 - b0), cls)), req.truncation_psi));
  }
  const at::Tensor ws = at::cat(parts);  // [K, num_ws, w_dim]
  ImageSink sink(req, net, false);
  fs::create_directories(req.outdir);
  data::GifWriter gif((fs::path(req.outdir) / "interpolation.gif").string(), net.res() * net.view.panels(net.channels()),
                      net.res(), net.view.png_channels(net.channels()),
                      std::max(2, static_cast<int>(std::lround(100.0 / req.fps))));
  if (req.progress) req.progress(0, total);
  int64_t done = 0;
  for (int64_t f0 = 0; f0 < total; f0 += req.batch) {
    const int64_t f1 = std::min<int64_t>(total, f0 + req.batch);
    // Frame f lies in segment f / steps at t = (f % steps) / steps; the last frame is the last seed.
    std::vector<int64_t> a, b;
    std::vector<float> t;
    for (int64_t f = f0; f < f1; ++f) {
      const int64_t seg = std::min(f / steps, nk - 1);
      a.push_back(seg);
      b.push_back(std::min(seg + 1, nk - 1));
      t.push_back(seg == nk - 1 ? 0.0f : static_cast<float>(f % steps) / static_cast<float>(steps));
    }
    at::Tensor wa = ws.index_select(0, at::tensor(a, at::kLong).to(net.dev));
    at::Tensor wb = ws.index_select(0, at::tensor(b, at::kLong).to(net.dev));
    at::Tensor tt = at::tensor(t, at::kFloat).view({-1, 1, 1}).to(net.dev);
    at::Tensor u8 = to_u8(
        batch_of_two_or_more(at::lerp(wa, wb, tt), [&](const at::Tensor& w) { return net.G->synthesis(w, mode); }));
    std::vector<std::string> names;
    for (int64_t f = f0; f < f1; ++f) {
      char name[64];
      std::snprintf(name, sizeof name, "frame%06lld.png", static_cast<long long>(f));
      names.push_back(name);
    }
    sink.put_batch(u8, names, -1);
    for (int64_t f = f0; f < f1; ++f)
      gif.add(data::view_image(u8[f - f0].data_ptr<uint8_t>(), net.channels(), net.res(), net.res(), net.view));
    done += f1 - f0;
    if (req.progress) req.progress(done, total);
  }
  gif.close();
  sum.written = sink.finish();
  sum.gif = "interpolation.gif (" + std::to_string(gif.frames()) + " frames, " + std::to_string(req.fps) + " fps)";
  return done;
}

}  // namespace

int run_generate(const GenerateRequest& request, GenerateSummary* summary) {
  at::set_num_threads(request.threads > 0 ? request.threads
                                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  const NetworkFile file(request.network);  // a reference .pkl is imported on the fly
  if (file.imported())
    std::cout << request.network << ": reference network pickle, imported (" << file.import_result().summary() << ")\n";
  Net net;
  net.info = read_checkpoint_info(file.checkpoint());
  check_request(request, net);
  net.view = data::parse_channel_view(request.channels_to_rgb);
  const NoiseMode mode = parse_noise_mode(request.noise_mode);
  net.dev = resolve_device(request.device, 0, 1, true);
  GenerateRequest req = request;
  if (req.batch == 0) req.batch = net.dev.is_cuda() ? kAutoBatchGpu : kAutoBatchCpu;
  net.G = std::make_unique<Generator>(net.info.G);
  load_networks(file.checkpoint(), nullptr, nullptr, net.G.get());
  net.G->state().to(net.dev);
  net.G->train(false);
  set_trainable(net.G->state(), false);
  at::NoGradGuard no_grad;
  BatchInvariantGuard same_images_for_any_batch;
  if (!req.outdir.empty()) fs::create_directories(req.outdir);

  GenerateSummary sum;
  sum.device = describe_device(net.dev);
  sum.batch = req.batch;
  sum.resolution = net.res();
  sum.channels = net.channels();
  const auto t0 = std::chrono::steady_clock::now();
  if (!req.mix_rows.empty()) sum.images = generate_mix(req, net, mode, sum);
  else if (req.interpolate >= 0) sum.images = generate_interpolation(req, net, mode, sum);
  else sum.images = generate_seeds(req, net, mode, sum);
  sum.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (summary) *summary = sum;
  return static_cast<int>(sum.images);
}

std::pair<int, int> parse_grid_size(const std::string& text) {
  if (text == "none") return {0, 0};
  const size_t x = text.find('x');
  try {
    if (x != std::string::npos && x > 0) {
      size_t u1 = 0, u2 = 0;
      const int c = std::stoi(text.substr(0, x), &u1), r = std::stoi(text.substr(x + 1), &u2);
      if (u1 == x && u2 == text.size() - x - 1 && c >= 1 && r >= 1 && c <= 256 && r <= 256) return {c, r};
    }
  } catch (const std::logic_error&) {
  }
  throw std::invalid_argument("--grid '" + text + "': expected COLSxROWS with sizes in 1..256 (e.g. 8x4), or none");
}

}  // namespace sf::trainer
