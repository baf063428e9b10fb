// `styleforge generate` at scale (batches, packs, grids, --class all, style mixing, interpolation),
// the progress line shared by generate/pack/metrics, and the output wording of those commands.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "data/gif.h"
#include "data/image.h"
#include "data/import.h"
#include "data/pack.h"
#include "launcher/progress.h"
#include "test_data_util.h"
#include "trainer/batch_invariant.h"
#include "trainer/checkpoint.h"
#include "trainer/generate.h"
#include "trainer/networks.h"
#include "trainer/training_step.h"

namespace fs = std::filesystem;
using namespace sf;

namespace {

constexpr int kRes = 16, kClasses = 3;

trainer::GeneratorConfig tiny_config() {
  trainer::GeneratorConfig cfg;
  cfg.z_dim = 16;
  cfg.w_dim = 16;
  cfg.c_dim = kClasses;
  cfg.img_resolution = kRes;
  cfg.img_channels = 3;
  cfg.mapping_layers = 2;
  cfg.channel_base = 256;
  cfg.channel_max = 16;
  return cfg;
}

// Wide enough (512-d z and w, 64 channels) for matrix products whose rounding depends on the
// number of rows: the batch test fails here when generate computes batches plainly.
trainer::GeneratorConfig wide_config() {
  trainer::GeneratorConfig cfg;
  cfg.z_dim = 512;
  cfg.w_dim = 512;
  cfg.c_dim = 2;
  cfg.img_resolution = 32;
  cfg.img_channels = 1;
  cfg.mapping_layers = 2;
  cfg.channel_base = 2048;
  cfg.channel_max = 64;
  return cfg;
}

// A generator with seeded random weights, written as a network-only checkpoint once per test
// process and configuration.
std::string network(const trainer::GeneratorConfig& cfg, const std::string& tag) {
  static std::map<std::string, std::string> paths;
  static test::ScratchDir* dir = new test::ScratchDir("gen_net");  // kept for the process
  auto it = paths.find(tag);
  if (it != paths.end()) return it->second;
  trainer::Generator G(cfg, trainer::make_cpu_generator(5));
  trainer::CheckpointWrite w;
  w.G = &G;
  w.G_ema = &G;
  const std::string path = *dir / (tag + ".h5");
  trainer::write_checkpoint(path, w);
  return paths[tag] = path;
}
std::string tiny_network() { return network(tiny_config(), "tiny"); }

trainer::GenerateRequest request(const std::string& outdir) {
  trainer::GenerateRequest r;
  r.network = tiny_network();
  r.outdir = outdir;
  r.class_idx = 1;
  r.threads = 1;
  r.device = "cpu";
  return r;
}

std::vector<uint8_t> pixels(const fs::path& p) { return data::read_image_file(p.string()).pixels; }

int count_files(const fs::path& dir, const std::string& ext) {
  int n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ext) ++n;
  return n;
}

}  // namespace

TEST(Generate, BatchSizeDoesNotChangeImages) {
  test::ScratchDir dir("gen_batch");
  auto a = request(dir / "b1"), b = request(dir / "b7");
  a.network = b.network = network(wide_config(), "wide");
  a.seeds = b.seeds = trainer::parse_seed_list("0-39,100,3");
  a.batch = 1;
  b.batch = 7;
  a.grid_cols = b.grid_cols = 0;
  EXPECT_EQ(trainer::run_generate(a), 42);
  EXPECT_EQ(trainer::run_generate(b), 42);
  int same = 0;
  for (int64_t seed : a.seeds) {
    char name[32];
    std::snprintf(name, sizeof name, "seed%04lld.png", static_cast<long long>(seed));
    const auto pa = pixels(fs::path(a.outdir) / name), pb = pixels(fs::path(b.outdir) / name);
    ASSERT_EQ(pa.size(), 32u * 32u) << name;
    same += pa == pb;
    EXPECT_TRUE(pa == pb) << name << " differs between --batch 1 and --batch 7";
  }
  EXPECT_EQ(same, 42);
  // Different seeds give different images (the comparison above can fail).
  EXPECT_NE(pixels(fs::path(a.outdir) / "seed0000.png"), pixels(fs::path(a.outdir) / "seed0001.png"));
  EXPECT_FALSE(fs::exists(fs::path(a.outdir) / "grid.png"));  // --grid none
}

TEST(Generate, BatchInvariantDenseLayers) {
  // The mapping network of a batch of 7 under the guard gives each row as a batch of one does.
  trainer::Generator G(wide_config(), trainer::make_cpu_generator(3));
  G.train(false);
  at::NoGradGuard no_grad;
  at::Tensor z = at::randn({7, 512}, trainer::make_cpu_generator(4)), c = at::zeros({7, 2});
  c.select(1, 1).fill_(1);
  trainer::BatchInvariantGuard guard;
  const at::Tensor all = G.mapping(z, c);
  for (int64_t i = 0; i < 7; ++i)
    EXPECT_TRUE(at::equal(all[i], G.mapping(z.narrow(0, i, 1), c.narrow(0, i, 1))[0])) << "row " << i;
}

TEST(Generate, GridIsCappedAndSizedByFlag) {
  test::ScratchDir dir("gen_grid");
  auto r = request(dir / "many");
  r.seeds = trainer::parse_seed_list("0-99");
  r.batch = 50;
  trainer::GenerateSummary s;
  EXPECT_EQ(trainer::run_generate(r, &s), 100);
  EXPECT_EQ(count_files(r.outdir, ".png"), 101);
  data::Image g = data::read_image_file((fs::path(r.outdir) / "grid.png").string());
  EXPECT_EQ(g.width, 8 * kRes);  // 100 seeds: the first 64 in 8x8
  EXPECT_EQ(g.height, 8 * kRes);
  EXPECT_EQ(s.grid, "grid.png 8x8");
  // The grid's cell 10 (row 1, column 2) is seed 10.
  const auto seed10 = pixels(fs::path(r.outdir) / "seed0010.png");
  for (int y = 0; y < kRes; ++y)
    for (int x = 0; x < kRes * 3; ++x)
      ASSERT_EQ(g.row(kRes + y)[2 * kRes * 3 + x], seed10[static_cast<size_t>(y * kRes * 3 + x)]) << y << "," << x;

  auto few = request(dir / "few");
  few.seeds = {3, 4, 5, 6, 7};
  few.grid_cols = 3;
  few.grid_rows = 1;
  trainer::run_generate(few);
  g = data::read_image_file((fs::path(few.outdir) / "grid.png").string());
  EXPECT_EQ(g.width, 3 * kRes);
  EXPECT_EQ(g.height, kRes);
  EXPECT_EQ(trainer::parse_grid_size("8x4"), (std::pair<int, int>{8, 4}));
  EXPECT_EQ(trainer::parse_grid_size("none"), (std::pair<int, int>{0, 0}));
  for (const char* bad : {"0x3", "8", "x4", "8x", "3x4x", "-1x2", "300x2"})
    EXPECT_THROW(trainer::parse_grid_size(bad), std::invalid_argument) << bad;
}

TEST(Generate, PackHoldsTheImagesWithClassLabels) {
  test::ScratchDir dir("gen_pack");
  auto png = request(dir / "png");
  png.seeds = {0, 1, 2, 3, 4};
  png.class_idx = trainer::kAllClasses;
  trainer::GenerateSummary ps;
  EXPECT_EQ(trainer::run_generate(png, &ps), 5 * kClasses);
  // --class all: classK/seedNNNN.png, and a grid with a row per class.
  EXPECT_EQ(count_files(png.outdir, ".png"), 5 * kClasses + 1);
  data::Image g = data::read_image_file((fs::path(png.outdir) / "grid.png").string());
  EXPECT_EQ(g.width, 5 * kRes);
  EXPECT_EQ(g.height, kClasses * kRes);
  // Classes change the image of a seed.
  EXPECT_NE(pixels(fs::path(png.outdir) / "class0/seed0002.png"), pixels(fs::path(png.outdir) / "class2/seed0002.png"));

  auto pk = request("");
  pk.seeds = png.seeds;
  pk.class_idx = trainer::kAllClasses;
  pk.dest = dir / "synthetic.h5";
  pk.batch = 4;
  EXPECT_EQ(trainer::run_generate(pk), 5 * kClasses);
  data::PackReader pack(pk.dest);
  ASSERT_EQ(pack.size(), 5 * kClasses);
  EXPECT_EQ(pack.info().resolution, kRes);
  EXPECT_EQ(pack.info().channels, 3);
  EXPECT_EQ(pack.info().label_kind, data::LabelKind::Class);
  EXPECT_EQ(pack.info().label_dim, kClasses);
  const auto names = pack.names();
  std::vector<uint8_t> img(pack.info().image_bytes());
  for (int64_t i = 0; i < pack.size(); ++i) {
    const int cls = static_cast<int>(i / 5);
    EXPECT_EQ(pack.class_label(i), cls) << i;
    const std::string want = "class" + std::to_string(cls) + "/seed000" + std::to_string(i % 5) + ".png";
    EXPECT_EQ(names[static_cast<size_t>(i)], want);
    // The packed image is the PNG's, channel-planar.
    pack.read_image(i, img.data());
    data::Image p = data::read_image_file((fs::path(png.outdir) / want).string());
    std::vector<uint8_t> chw(img.size());
    data::hwc_to_chw(p, chw.data());
    EXPECT_TRUE(chw == img) << want;
  }
  // An existing pack is kept without --force.
  EXPECT_THROW(trainer::run_generate(pk), std::invalid_argument);
  pk.force = true;
  pk.class_idx = 2;
  pk.seeds = {7};
  EXPECT_EQ(trainer::run_generate(pk), 1);
  data::PackReader one(pk.dest);
  EXPECT_EQ(one.size(), 1);
  EXPECT_EQ(one.class_label(0), 2);
  EXPECT_EQ(one.info().label_dim, kClasses);  // the network's classes, not just those generated
}

TEST(Generate, StyleMixingTakesTheColumnLayers) {
  test::ScratchDir dir("gen_mix");
  auto r = request(dir / "mix");
  r.seeds.clear();
  r.mix_rows = {1, 2, 3};
  r.mix_cols = {4, 5};
  r.batch = 4;
  trainer::GenerateSummary s;
  EXPECT_EQ(trainer::run_generate(r, &s), 5 + 3 * 2);
  EXPECT_EQ(count_files(r.outdir, ".png"), 5 + 3 * 2 + 1);
  for (const char* f : {"1-1.png", "5-5.png", "1-4.png", "3-5.png"}) EXPECT_TRUE(fs::exists(fs::path(r.outdir) / f)) << f;
  data::Image g = data::read_image_file((fs::path(r.outdir) / "grid.png").string());
  EXPECT_EQ(g.width, 3 * kRes);  // a column of row seeds + 2 column seeds
  EXPECT_EQ(g.height, 4 * kRes);
  // The default layers 0-6 cover every layer of a 16x16 network (6 ws): the mix is the column seed.
  EXPECT_EQ(pixels(fs::path(r.outdir) / "2-5.png"), pixels(fs::path(r.outdir) / "5-5.png"));
  // Only the last layer from the column: neither the row's nor the column's image.
  auto fine = request(dir / "fine");
  fine.seeds.clear();
  fine.mix_rows = {1};
  fine.mix_cols = {4};
  fine.mix_styles = {5};
  trainer::run_generate(fine);
  const auto mixed = pixels(fs::path(fine.outdir) / "1-4.png");
  EXPECT_NE(mixed, pixels(fs::path(fine.outdir) / "1-1.png"));
  EXPECT_NE(mixed, pixels(fs::path(fine.outdir) / "4-4.png"));
  fine.mix_styles = {6};
  EXPECT_THROW(trainer::run_generate(fine), std::invalid_argument);
}

TEST(Generate, InterpolationFramesAndGif) {
  test::ScratchDir dir("gen_interp");
  auto seeds = request(dir / "seeds");
  seeds.seeds = {0, 1, 2};
  trainer::run_generate(seeds);
  auto r = request(dir / "interp");
  r.seeds = {0, 1, 2};
  r.interpolate = 3;
  r.batch = 5;
  trainer::GenerateSummary s;
  EXPECT_EQ(trainer::run_generate(r, &s), 3 + 2 * 3);
  EXPECT_EQ(count_files(r.outdir, ".png"), 9);
  const data::GifInfo gi = data::read_gif_info((fs::path(r.outdir) / "interpolation.gif").string());
  EXPECT_EQ(gi.frames, 9);
  EXPECT_EQ(gi.width, kRes);
  EXPECT_EQ(gi.height, kRes);
  // Frames 0, 4 and 8 are the seeds themselves; the ones between differ from both ends.
  EXPECT_EQ(pixels(fs::path(r.outdir) / "frame000000.png"), pixels(fs::path(seeds.outdir) / "seed0000.png"));
  EXPECT_EQ(pixels(fs::path(r.outdir) / "frame000004.png"), pixels(fs::path(seeds.outdir) / "seed0001.png"));
  EXPECT_EQ(pixels(fs::path(r.outdir) / "frame000008.png"), pixels(fs::path(seeds.outdir) / "seed0002.png"));
  EXPECT_NE(pixels(fs::path(r.outdir) / "frame000002.png"), pixels(fs::path(seeds.outdir) / "seed0000.png"));
  EXPECT_NE(pixels(fs::path(r.outdir) / "frame000002.png"), pixels(fs::path(seeds.outdir) / "seed0001.png"));
  r.seeds = {4};
  EXPECT_THROW(trainer::run_generate(r), std::invalid_argument);
}

TEST(Generate, AnyChannelCountPanelsMappingPackAndGif) {
  // A 4-channel network: PNGs show one gray panel per channel (or a chosen channel->RGB mapping),
  // the pack keeps the 4 channels, and the GIF uses the PNGs' layout.
  trainer::GeneratorConfig cfg = tiny_config();
  cfg.img_channels = 4;
  const std::string net = network(cfg, "four");
  test::ScratchDir dir("gen_nchan");
  auto png = request(dir / "panels");
  png.network = net;
  png.seeds = {0, 1, 2};
  trainer::GenerateSummary s;
  EXPECT_EQ(trainer::run_generate(png, &s), 3);
  EXPECT_EQ(s.channels, 4);
  EXPECT_NE(s.written.find("4 gray panels"), std::string::npos) << s.written;
  auto pk = request("");
  pk.network = net;
  pk.seeds = png.seeds;
  pk.dest = dir / "four.h5";
  EXPECT_EQ(trainer::run_generate(pk), 3);
  data::PackReader pack(pk.dest);
  ASSERT_EQ(pack.info().channels, 4);
  auto rgb = request(dir / "rgb");
  rgb.network = net;
  rgb.seeds = png.seeds;
  rgb.channels_to_rgb = "3,0,2";
  trainer::run_generate(rgb);
  std::vector<uint8_t> img(pack.info().image_bytes());
  const size_t plane = static_cast<size_t>(kRes) * kRes;
  for (int64_t i = 0; i < 3; ++i) {
    pack.read_image(i, img.data());
    const std::string name = "seed000" + std::to_string(i) + ".png";
    data::Image p = data::read_image_file((fs::path(png.outdir) / name).string());
    ASSERT_EQ(p.channels, 1);
    ASSERT_EQ(p.width, 4 * kRes);
    ASSERT_EQ(p.height, kRes);
    int differ = 0;  // the channels are not all alike (else the panel order would go untested)
    for (int y = 0; y < kRes; ++y)
      for (int x = 0; x < kRes; ++x)
        for (int ch = 0; ch < 4; ++ch) {
          const uint8_t want = img[ch * plane + static_cast<size_t>(y) * kRes + x];
          EXPECT_EQ(p.row(y)[ch * kRes + x], want);
          differ += want != img[static_cast<size_t>(y) * kRes + x];
        }
    EXPECT_GT(differ, 0);
    data::Image m = data::read_image_file((fs::path(rgb.outdir) / name).string());
    ASSERT_EQ(m.channels, 3);
    ASSERT_EQ(m.width, kRes);
    for (int y = 0; y < kRes; ++y)
      for (int x = 0; x < kRes; ++x) {
        const size_t at = static_cast<size_t>(y) * kRes + x;
        EXPECT_EQ(m.row(y)[3 * x + 0], img[3 * plane + at]);
        EXPECT_EQ(m.row(y)[3 * x + 1], img[0 * plane + at]);
        EXPECT_EQ(m.row(y)[3 * x + 2], img[2 * plane + at]);
      }
  }
  // grid.png: 2x2 cells of 4 panels each.
  data::Image g = data::read_image_file((fs::path(png.outdir) / "grid.png").string());
  EXPECT_EQ(g.channels, 1);
  EXPECT_EQ(g.width, 2 * 4 * kRes);
  EXPECT_EQ(g.height, 2 * kRes);
  EXPECT_EQ(data::read_image_file((fs::path(rgb.outdir) / "grid.png").string()).width, 2 * kRes);
  // Interpolation GIF: frames as wide as the PNGs.
  auto in = request(dir / "interp");
  in.network = net;
  in.seeds = {0, 1};
  in.interpolate = 1;
  EXPECT_EQ(trainer::run_generate(in), 3);
  const data::GifInfo gi = data::read_gif_info((fs::path(in.outdir) / "interpolation.gif").string());
  EXPECT_EQ(gi.frames, 3);
  EXPECT_EQ(gi.width, 4 * kRes);
  EXPECT_EQ(data::read_image_file((fs::path(in.outdir) / "frame000000.png").string()).width, 4 * kRes);
  // A mapping naming a channel the network lacks is refused before anything is written.
  auto bad = request(dir / "bad");
  bad.network = net;
  bad.channels_to_rgb = "0,1,4";
  EXPECT_THROW(trainer::run_generate(bad), std::invalid_argument);
  EXPECT_FALSE(fs::exists(dir / "bad"));
}

TEST(Generate, GifWriterGrayFrames) {
  test::ScratchDir dir("gen_gif");
  const std::string p = dir / "g.gif";
  {
    data::GifWriter w(p, 8, 4, 1, 4);
    data::Image f{8, 4, 1, std::vector<uint8_t>(32)};
    for (int i = 0; i < 3; ++i) {
      for (size_t k = 0; k < f.pixels.size(); ++k) f.pixels[k] = static_cast<uint8_t>(k * 8 + i);
      w.add(f);
    }
    EXPECT_THROW(w.add(data::Image{4, 4, 1, std::vector<uint8_t>(16)}), std::runtime_error);
    w.close();
  }
  const auto gi = data::read_gif_info(p);
  EXPECT_EQ(gi.frames, 3);
  EXPECT_EQ(gi.width, 8);
  EXPECT_EQ(gi.height, 4);
  {
    data::GifWriter w(dir / "dropped.gif", 8, 4, 1, 4);  // never closed: no file
  }
  EXPECT_FALSE(fs::exists(dir / "dropped.gif"));
  std::ofstream(dir / "bad.gif") << "GIF89a";
  EXPECT_THROW(data::read_gif_info(dir / "bad.gif"), std::runtime_error);
}

// ---- the progress line ----

namespace {
struct FakeClock {
  double t = 100;
  std::function<double()> fn() {
    return [this] { return t; };
  }
};
int count_lines(const std::string& s) { return static_cast<int>(std::count(s.begin(), s.end(), '\n')); }
}  // namespace

TEST(Progress, OneLinePerTenthOffATerminal) {
  std::ostringstream out;
  FakeClock clk;
  cli::Progress::Options o;
  o.out = &out;
  o.tty = 0;
  o.clock = clk.fn();
  cli::Progress p("generate", 1000, "images", o);
  p.update(0);
  for (int i = 1; i <= 1000; ++i) {
    clk.t += 0.01;  // 100 images/s
    p.update(i);
  }
  p.finish();  // already ended at 1000: nothing more
  const std::string s = out.str();
  EXPECT_EQ(count_lines(s), 10) << s;  // 10%, 20%, ... 90%, then the summary at 100%
  EXPECT_EQ(s.find('\r'), std::string::npos);
  EXPECT_NE(s.find(" 50%  500/1000 images  100 images/s  ETA 5.0s"), std::string::npos) << s;
  EXPECT_NE(s.find("100%  1000/1000 images  100 images/s  done in 10s"), std::string::npos) << s;
}

TEST(Progress, RedrawsInPlaceOnATerminal) {
  std::ostringstream out;
  FakeClock clk;
  cli::Progress::Options o;
  o.out = &out;
  o.tty = 1;
  o.clock = clk.fn();
  cli::Progress p("pack", 4, "volumes", o);
  p.update(0);
  clk.t += 2;
  p.update(1, "40 images");
  clk.t += 0.04;  // too soon to redraw
  p.update(2, "80 images");
  clk.t += 2;
  p.update(3, "120 images");
  p.finish();  // stopped early: the summary line says how far it got
  const std::string s = out.str();
  EXPECT_EQ(count_lines(s), 1) << s;
  EXPECT_EQ(s.back(), '\n');
  EXPECT_NE(s.find("\rpack [######..................]  25%  1/4 volumes (40 images)  0.50 volumes/s  ETA 6.0s"), std::string::npos) << s;
  EXPECT_EQ(s.find("80 images"), std::string::npos) << s;
  EXPECT_NE(s.find(" 75%  3/4 volumes (120 images)"), std::string::npos) << s;
  EXPECT_NE(s.find("done in 4.0s"), std::string::npos) << s;
}

TEST(Progress, UnknownTotalAndQuiet) {
  std::ostringstream out;
  FakeClock clk;
  cli::Progress::Options o;
  o.out = &out;
  o.tty = 0;
  o.clock = clk.fn();
  cli::Progress p("pack", -1, "images", o);
  p.update(0);
  clk.t += 4;
  p.update(40);  // 4 s after the first line: not yet
  clk.t += 11;
  p.update(150);
  p.finish();
  const std::string s = out.str();
  EXPECT_EQ(s.find('%'), std::string::npos) << s;
  EXPECT_NE(s.find("pack 150 images  10.0 images/s"), std::string::npos) << s;
  std::ostringstream quiet;
  o.out = &quiet;
  o.enabled = false;
  {
    cli::Progress q("x", 10, "images", o);
    q.update(10);
  }
  EXPECT_EQ(quiet.str(), "");
  // A bar dropped by an error: no summary; on a terminal the redrawn line is ended for the error
  // message.
  for (int tty : {0, 1}) {
    std::ostringstream dropped;
    o.out = &dropped;
    o.enabled = true;
    o.tty = tty;
    {
      cli::Progress d("generate", 10, "images", o);
      d.update(0);
      clk.t += 1;
      d.update(5);
    }
    EXPECT_EQ(dropped.str().find("done in"), std::string::npos) << dropped.str();
    EXPECT_EQ(count_lines(dropped.str()), 1) << dropped.str();  // off a terminal: the 50% line
    EXPECT_NE(dropped.str().find(" 50%  5/10 images"), std::string::npos) << dropped.str();
  }
  EXPECT_EQ(cli::format_duration(0.42), "0.4s");
  EXPECT_EQ(cli::format_duration(45), "45s");
  EXPECT_EQ(cli::format_duration(187), "3m07s");
  EXPECT_EQ(cli::format_duration(7500), "2h05m");
  EXPECT_EQ(cli::format_rate(301.4), "301");
  EXPECT_EQ(cli::format_rate(12.34), "12.3");
  EXPECT_EQ(cli::format_rate(0.4242), "0.42");
}

// ---- pack progress and wording ----

TEST(PackProgress, VolumesReportATotal) {
  test::ScratchDir dir("pack_progress");
  fs::create_directories(dir / "vols");
  for (const char* n : {"a.nii", "b.nii"}) fs::copy_file(test::fixture("real/anatomical.nii"), fs::path(dir / "vols") / n);
  data::ImportOptions o;
  o.source = dir / "vols";
  o.dest = dir / "v.h5";
  o.slice_begin = 5;
  o.slice_end = 10;
  std::vector<data::ImportProgress> seen;
  o.progress = [&](const data::ImportProgress& p) { seen.push_back(p); };
  auto s = data::pack_dataset(o);
  ASSERT_GE(seen.size(), 3u);
  EXPECT_EQ(std::string(seen.front().unit), "volumes");
  for (const auto& p : seen) EXPECT_EQ(p.total, 2);
  EXPECT_EQ(seen.front().done, 0);
  EXPECT_EQ(seen.back().done, 2);
  EXPECT_EQ(seen.back().images, 10);
  EXPECT_EQ(seen[5].done, 0);  // the fifth slice of the first volume
  EXPECT_EQ(seen[6].done, 1);  // the first of the second
  EXPECT_NE(s.line().find("packed 10 images "), std::string::npos) << s.line();

  // Image folders count images; one image is "1 image".
  fs::create_directories(dir / "one");
  data::write_png_file(dir / "one/x.png", data::Image{8, 8, 1, std::vector<uint8_t>(64, 7)});
  o.source = dir / "one";
  o.dest = dir / "one.h5";
  seen.clear();
  s = data::pack_dataset(o);
  EXPECT_EQ(std::string(seen.back().unit), "images");
  EXPECT_EQ(seen.back().total, 1);
  EXPECT_EQ(seen.back().done, 1);
  EXPECT_NE(s.line().find("packed 1 image 8x8x1"), std::string::npos) << s.line();
}

#ifdef STYLEFORGE_BINARY
TEST(GenerateCli, SummaryErrorsAndHelpText) {
  test::ScratchDir dir("gen_cli");
  const std::string net = tiny_network();
  auto r = test::run_styleforge("generate --network " + net + " --seeds 0-19 --class all --batch 8 --threads 1 --device cpu --dest " +
                                (dir / "s.h5") + " --outdir " + (dir / "o") + "");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("generated 60 images 16x16x3 on cpu (batch 8)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("the pack " + (dir / "s.h5") + " (60 images, labels: class[3])"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("grid.png 8x3"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("peak RSS"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("generate [########################] 100%  60/60 images"), std::string::npos) << r.out;
  EXPECT_EQ(data::PackReader(dir / "s.h5").size(), 60);
  // --channels-to-rgb 2,1,0 swaps R and B of the RGB network's PNGs.
  auto pl = test::run_styleforge("generate --network " + net + " --seeds 3 --class 1 --threads 1 --device cpu --quiet "
                                 "--outdir " + (dir / "plain"));
  ASSERT_EQ(pl.rc, 0) << pl.out;
  EXPECT_NE(pl.out.find("(RGB)"), std::string::npos) << pl.out;
  auto sw = test::run_styleforge("generate --network " + net + " --seeds 3 --class 1 --threads 1 --device cpu --quiet "
                                 "--channels-to-rgb 2,1,0 --outdir " + (dir / "swapped"));
  ASSERT_EQ(sw.rc, 0) << sw.out;
  EXPECT_NE(sw.out.find("(RGB from channels 2,1,0)"), std::string::npos) << sw.out;
  {
    data::Image plain = data::read_image_file((fs::path(dir / "plain") / "seed0003.png").string());
    data::Image swapped = data::read_image_file((fs::path(dir / "swapped") / "seed0003.png").string());
    ASSERT_EQ(plain.pixels.size(), swapped.pixels.size());
    for (size_t k = 0; k + 2 < plain.pixels.size(); k += 3) {
      EXPECT_EQ(swapped.pixels[k], plain.pixels[k + 2]);
      EXPECT_EQ(swapped.pixels[k + 1], plain.pixels[k + 1]);
      EXPECT_EQ(swapped.pixels[k + 2], plain.pixels[k]);
    }
  }

  for (const auto& [flags, says] : std::vector<std::pair<std::string, std::string>>{
           {"--class 3 --outdir x", "--class"},
           {"--class two --outdir x", "--class 'two'"},
           {"--class 1 --grid 0x3 --outdir x", "--grid '0x3'"},
           {"--class 1 --mix 1,2 --outdir x", "--mix '1,2'"},
           {"--class 1 --styles 0-3 --outdir x", "--styles applies to --mix only"},
           {"--class 1 --batch -1 --outdir x", "--batch -1"},
           {"--class 1", "--outdir"},
           {"--class 1 --interpolate 2 --seeds 5 --outdir x", "--interpolate"},
           {"--class 1 --dest " + (dir / "s.h5"), "exists already"},
           {"--class 1 --channels-to-rgb 0,1 --outdir x", "--channels-to-rgb '0,1'"},
           {"--class 1 --channels-to-rgb 0,1,3 --outdir x", "--channels-to-rgb '0,1,3'"},
       }) {
    auto e = test::run_styleforge("generate --network " + net + " " + flags + "");
    EXPECT_EQ(e.rc, 2) << flags << ": " << e.out;
    EXPECT_EQ(count_lines(e.out), 1) << flags << ": " << e.out;
    EXPECT_NE(e.out.find(says), std::string::npos) << flags << ": " << e.out;
  }
}

TEST(OutputWording, NumbersPrintAsWritten) {
  auto h = test::run_styleforge("phantoms --help");
  EXPECT_NE(h.out.find("--noise arg (=0.03)"), std::string::npos) << h.out;
  EXPECT_EQ(h.out.find("0.0299"), std::string::npos) << h.out;
  test::ScratchDir dir("wording");
  auto t = test::run_styleforge("train --data " + test::tiny_pack(3) + " --outdir " + (dir / "runs") +
                                " --kimg 0.1 --dry-run --threads 1");
  EXPECT_EQ(t.rc, 0) << t.out;
  EXPECT_NE(t.out.find("Training duration:  0.1 kimg\n"), std::string::npos) << t.out;
}
#endif
