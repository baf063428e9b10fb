// Importing reference network pickles and transfer learning from them: the imported tensors are
// bitwise the reference's, hostile pickles are refused, named sources come from the cache, and
// runs start from the fixture network adapted to other resolutions, channels and conditioning.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/GradMode.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>

#include "data/bench.h"
#include "data/h5.h"
#include "data/pack.h"
#include "sharding/communicator.h"
#include "test_data_util.h"
#include "trainer/checkpoint.h"
#include "trainer/import.h"
#include "trainer/networks.h"
#include "trainer/tensor_io.h"
#include "trainer/training_loop.h"
#include "trainer/transfer.h"

namespace fs = std::filesystem;
using namespace sf;

namespace {

// The fixture pickle imported once per process.
const std::string& imported() {
  static test::ScratchDir dir("xfer_import");  // removed at exit
  static std::string path = [] {
    std::string p = dir / "snapshot_res32.h5";
    trainer::import_network_pickle(test::fixture("snapshot_res32.pkl"), p, /*overwrite=*/true);
    return p;
  }();
  return path;
}

std::map<std::string, std::vector<float>> group_values(const h5::Handle& f, const std::string& group,
                                                       std::map<std::string, std::vector<int64_t>>* shapes) {
  std::map<std::string, std::vector<float>> out;
  h5::Handle g = h5::open_group(f, group);
  for (const auto& n : h5::members(g)) {
    std::vector<int64_t> shape;
    out[n] = h5::read_f32(g, n, &shape);
    (*shapes)[n] = shape;
  }
  return out;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}


// The networks a run with this image shape would build from the imported fixture's architecture.
struct RunNets {
  std::unique_ptr<trainer::Generator> G, G_ema;
  std::unique_ptr<trainer::Discriminator> D;
};
RunNets run_nets(int res, int channels, int c_dim) {
  auto info = trainer::read_checkpoint_info(imported());
  trainer::GeneratorConfig g = info.G;
  trainer::DiscriminatorConfig d = info.D;
  g.img_resolution = d.img_resolution = res;
  g.img_channels = d.img_channels = channels;
  g.c_dim = d.c_dim = c_dim;
  at::Generator gen = at::detail::createCPUGenerator(123);
  RunNets n;
  n.G = std::make_unique<trainer::Generator>(g, gen);
  n.G_ema = std::make_unique<trainer::Generator>(g, gen);
  n.G_ema->state().copy_from(n.G->state());
  n.D = std::make_unique<trainer::Discriminator>(d, gen);
  return n;
}

std::map<std::string, at::Tensor> source_group(const std::string& path, const std::string& group) {
  std::map<std::string, at::Tensor> out;
  h5::Handle f = h5::open_file(path);
  h5::Handle g = h5::open_group(f, group);
  for (const auto& n : h5::members(g)) out[n] = trainer::read_tensor(g, n);
  return out;
}

// A pack of `n` smooth random images with class labels 0..classes-1.
void make_class_pack(const std::string& dest, int n, int res, int channels, int classes) {
  data::PackWriter::Options o;
  o.force = true;
  for (int k = 0; k < classes; ++k) o.class_names.push_back("class" + std::to_string(k));
  data::PackWriter w(dest, o);
  std::mt19937 rng(5);
  std::vector<uint8_t> img(static_cast<size_t>(channels) * res * res);
  for (int i = 0; i < n; ++i) {
    for (auto& p : img) p = static_cast<uint8_t>(rng() % 256);
    data::Label l;
    l.kind = data::LabelKind::Class;
    l.cls = i % classes;
    w.add(img.data(), channels, res, "img" + std::to_string(i) + ".png", l);
  }
  w.commit();
}

trainer::TrainOptions transfer_options(const std::string& pack, const std::string& outdir) {
  trainer::TrainOptions o;
  o.data = pack;
  o.outdir = outdir;
  o.batch_override = 4;
  o.kimg_override = 0.008;  // two iterations
  o.threads = 1;
  o.snap = 1000;
  o.kimg_per_tick = 0.008;
  o.grid_cols = o.grid_rows = 2;  // small snapshot grids: the runs are about the transfer, not the images
  return o;
}

// Trains from the imported fixture on `pack` and checks the run's checkpoint.
trainer::CheckpointInfo transfer_run(const std::string& pack, const std::string& outdir, int freezed = 0,
                                     bool cond = false) {
  sharding::LocalCommunicator comm;
  trainer::TrainRequest req;
  req.options = transfer_options(pack, outdir);
  req.options.freezed = freezed;
  req.options.cond = cond;
  req.resume = imported();
  EXPECT_EQ(trainer::run_training(req, comm), 0);
  const std::string run = trainer::last_run_dir();
  auto snaps = trainer::list_snapshots(run);
  EXPECT_FALSE(snaps.empty());
  if (snaps.empty()) return {};
  auto info = trainer::read_checkpoint_info(snaps.back());
  EXPECT_TRUE(info.has_training_state);
  EXPECT_EQ(info.counters.cur_nimg, 8);
  // The source's architecture, the dataset's shape, the reference's transfer settings.
  EXPECT_EQ(info.G.channel_base, 2048);
  EXPECT_EQ(info.G.channel_max, 64);
  EXPECT_EQ(info.G.mapping_layers, 2);
  EXPECT_EQ(info.G.z_dim, 64);
  EXPECT_EQ(info.D.mbstd_num_channels, 1);
  EXPECT_TRUE(info.options.has_value());
  if (info.options) {
    EXPECT_EQ(info.options->ada_kimg, 100);
    EXPECT_FALSE(info.options->ema_rampup.has_value());
    EXPECT_EQ(info.options->resume_source, imported());
  }
  std::ifstream log(fs::path(run) / "log.txt");
  std::stringstream ss;
  ss << log.rdbuf();
  EXPECT_NE(ss.str().find("Transfer from"), std::string::npos);
  return info;
}

}  // namespace

TEST(Import, FixtureTensorsAreBitwiseTheReferenceOnes) {
  h5::Handle a = h5::open_file(imported());
  h5::Handle b = h5::open_file(test::fixture("snapshot_res32_expected.h5"));
  int compared = 0;
  for (const char* net : {"G", "D", "G_ema", "augment_pipe"}) {
    std::map<std::string, std::vector<int64_t>> sa, sb;
    auto va = group_values(a, net, &sa);
    auto vb = group_values(b, std::string("params/") + net, &sb);
    ASSERT_EQ(va.size(), vb.size()) << net;
    for (const auto& [k, x] : vb) {
      ASSERT_TRUE(va.count(k)) << net << "/" << k;
      EXPECT_EQ(sa.at(k), sb.at(k)) << net << "/" << k;
      ASSERT_EQ(va.at(k).size(), x.size()) << net << "/" << k;
      EXPECT_EQ(std::memcmp(va.at(k).data(), x.data(), x.size() * sizeof(float)), 0) << "not bitwise equal: " << net
                                                                                       << "/" << k;
      ++compared;
    }
  }
  EXPECT_EQ(compared, 75 + 37 + 75 + 1);
  auto info = trainer::read_checkpoint_info(imported());
  EXPECT_FALSE(info.has_training_state);
  EXPECT_TRUE(info.has_D);
  EXPECT_EQ(info.G.img_resolution, 32);
  EXPECT_EQ(info.G.channel_base, 2048);
  EXPECT_EQ(info.G.mapping_layers, 2);
  EXPECT_FALSE(info.G.conv_clamp.has_value());
  EXPECT_EQ(info.D.architecture, "resnet");
  EXPECT_EQ(info.D.mbstd_group_size, 2);
  auto tsk = nlohmann::json::parse(h5::read_string_attr(a, "training_set_kwargs"));
  EXPECT_EQ(tsk.at("path"), "brain.zip");
  EXPECT_EQ(tsk.at("resolution"), 32);
}

TEST(Import, ImportedNetworksComputeWhatTheReferenceTensorsCompute) {
  auto info = trainer::read_checkpoint_info(imported());
  trainer::Generator ours(info.G), ref(info.G);
  trainer::Discriminator ours_d(info.D), ref_d(info.D);
  trainer::load_networks(imported(), nullptr, &ours_d, &ours);
  {
    h5::Handle f = h5::open_file(test::fixture("snapshot_res32_expected.h5"));
    trainer::load_state(ref.state(), h5::open_group(f, "params/G_ema"));
    trainer::load_state(ref_d.state(), h5::open_group(f, "params/D"));
  }
  ours.train(false);
  ref.train(false);
  at::Generator gen = at::detail::createCPUGenerator(7);
  at::Tensor z = at::randn({4, 64}, gen), c = at::zeros({4, 0});
  at::NoGradGuard no_grad;
  at::Tensor img = ours.forward(z, c, 0.7, -1, trainer::NoiseMode::Const);
  EXPECT_TRUE(at::equal(img, ref.forward(z, c, 0.7, -1, trainer::NoiseMode::Const)));
  EXPECT_EQ(img.sizes(), (std::vector<int64_t>{4, 3, 32, 32}));
  EXPECT_TRUE(at::equal(ours_d.forward(img, c), ref_d.forward(img, c)));
}

// test_transfer.cpp is built only with the styleforge binary (not in STYLEFORGE_DATA_ONLY).
TEST(Import, CommandLineImportThenGenerate) {
  using sf::test::run_styleforge;
  test::ScratchDir dir("xfer_cli");
  auto [rc, out] = run_styleforge("import " + test::fixture("snapshot_res32.pkl") + " --dest " + (dir / "net.h5"));
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("Wrote"), std::string::npos) << out;
  auto [rc3, out3] = run_styleforge("generate --network " + (dir / "net.h5") + " --seeds 0-3 --outdir " + (dir / "gen"));
  ASSERT_EQ(rc3, 0) << out3;
  for (const char* f : {"seed0000.png", "seed0003.png", "grid.png"}) EXPECT_TRUE(fs::exists(fs::path(dir / "gen") / f));
  // A hostile pickle: refused with the global's name, nothing written.
  {
    std::ofstream evil(dir / "evil.pkl", std::ios::binary);
    evil << std::string("\x80\x02", 2) << "cos\nsystem\n" << std::string("X\x05\x00\x00\x00", 5) << "touch" << "\x85R.";
  }
  auto [rc4, out4] = run_styleforge("import " + (dir / "evil.pkl") + " --dest " + (dir / "evil.h5"));
  EXPECT_EQ(rc4, 1);
  EXPECT_NE(out4.find("refusing global os.system (not on the allow-list)"), std::string::npos) << out4;
  EXPECT_FALSE(fs::exists(dir / "evil.h5"));
}

TEST(Import, HostilePicklesAreRefusedBeforeAnythingRuns) {
  test::ScratchDir dir("xfer_evil");
  const std::string marker = dir / "pwned";
  const std::string cmd = "touch " + marker;
  {
    std::ofstream f(dir / "eval.pkl", std::ios::binary);
    // protocol 4: STACK_GLOBAL builtins.eval, REDUCE with an expression that would run os.system.
    const std::string expr = "__import__('os').system('" + cmd + "')";
    f << std::string("\x80\x04", 2) << "\x8c\x08" << "builtins" << "\x8c\x04" << "eval" << "\x93"
      << "\x8c" << static_cast<char>(expr.size()) << expr << "\x85R.";
  }
  std::string e = error_of([&] { trainer::import_network_pickle(dir / "eval.pkl", dir / "out.h5"); });
  EXPECT_NE(e.find("eval.pkl: refusing global builtins.eval (not on the allow-list)"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(marker));
  EXPECT_FALSE(fs::exists(dir / "out.h5"));
  // No silent overwrite of an existing checkpoint.
  e = error_of([&] { trainer::import_network_pickle(test::fixture("snapshot_res32.pkl"), imported()); });
  EXPECT_NE(e.find("already exists"), std::string::npos) << e;
}

TEST(Transfer, NamedSourcesComeFromTheCache) {
  test::ScratchDir dir("xfer_cache");
  const std::string cache = dir / "cache", scratch = dir / "scratch";
  std::string e = error_of([&] { trainer::resolve_transfer_source("ffhq256", cache, scratch); });
  EXPECT_NE(e.find("https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/transfer-learning-source-nets/"
                   "ffhq-res256-mirror-paper256-noaug.pkl"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find(cache + "/ffhq-res256-mirror-paper256-noaug.pkl"), std::string::npos) << e;
  e = error_of([&] { trainer::resolve_transfer_source("brecahad", cache, scratch); });
  EXPECT_NE(e.find("pretrained/brecahad.pkl"), std::string::npos) << e;
  e = error_of([&] { trainer::resolve_transfer_source("ffhq-typo", cache, scratch); });
  EXPECT_NE(e.find("afhqwild"), std::string::npos) << e;

  // The downloaded pickle, put where the message says: imported into the scratch folder.
  fs::create_directories(cache);
  fs::copy_file(test::fixture("snapshot_res32.pkl"), fs::path(cache) / "afhqcat.pkl");
  std::string path = trainer::resolve_transfer_source("afhqcat", cache, scratch);
  EXPECT_EQ(fs::path(path).parent_path(), fs::path(scratch));
  EXPECT_EQ(trainer::read_checkpoint_info(path).G.channel_base, 2048);
  // An imported copy in the cache is used as is; so is any network-only .h5.
  fs::copy_file(imported(), fs::path(cache) / "afhqcat.h5");
  EXPECT_EQ(trainer::resolve_transfer_source("afhqcat", cache, scratch), cache + "/afhqcat.h5");
  EXPECT_EQ(trainer::resolve_transfer_source(imported(), cache, scratch), imported());
}

TEST(Transfer, ChannelMismatchListsEveryKey) {
  auto info = trainer::read_checkpoint_info(imported());
  trainer::GeneratorConfig g = info.G;
  trainer::DiscriminatorConfig d = info.D;
  g.channel_max = d.channel_max = 32;
  trainer::Generator G(g), G_ema(g);
  trainer::Discriminator D(d);
  at::Tensor before = G.state().at("synthesis.b8.conv0.weight").clone();
  std::string e = error_of([&] { trainer::transfer_networks(imported(), G, D, G_ema); });
  EXPECT_NE(e.find("G/synthesis.b8.conv0.weight: source [64, 64, 3, 3] vs run [32, 32, 3, 3]"), std::string::npos) << e;
  EXPECT_NE(e.find("D/b4.fc.weight"), std::string::npos);
  EXPECT_NE(e.find("G_ema/synthesis.b4.const: source [64, 4, 4] vs run [32, 4, 4]"), std::string::npos);
  EXPECT_TRUE(at::equal(before, G.state().at("synthesis.b8.conv0.weight")));  // nothing modified

  trainer::TrainOptions o;
  o.cbase_override = 4096;
  e = error_of([&] { trainer::adopt_source_architecture(imported(), o); });
  EXPECT_NE(e.find("--cbase 4096 contradicts the source network (2048)"), std::string::npos) << e;
}

TEST(Transfer, GrayFromRgbComputesTheGrayOfTheSource) {
  auto src = run_nets(32, 3, 0);
  trainer::load_networks(imported(), src.G.get(), src.D.get(), src.G_ema.get());
  auto dst = run_nets(32, 1, 0);
  std::string summary = trainer::transfer_networks(imported(), *dst.G, *dst.D, *dst.G_ema);
  EXPECT_NE(summary.find("adapted"), std::string::npos) << summary;
  at::NoGradGuard no_grad;
  // ToRGB rows averaged, FromRGB columns summed, everything else copied.
  auto s = source_group(imported(), "G_ema");
  EXPECT_TRUE(at::allclose(dst.G_ema->state().at("synthesis.b32.torgb.weight"),
                           s.at("synthesis.b32.torgb.weight").mean(0, true)));
  EXPECT_TRUE(at::equal(dst.G_ema->state().at("synthesis.b16.conv1.weight"), s.at("synthesis.b16.conv1.weight")));
  auto sd = source_group(imported(), "D");
  EXPECT_TRUE(at::allclose(dst.D->state().at("b32.fromrgb.weight"),
                           sd.at("b32.fromrgb.weight").sum(1, true) / std::sqrt(3.0)));  // gain 1/sqrt(C)
  // The gray generator draws the mean of the RGB generator's channels; the gray discriminator
  // scores a gray image as the RGB one scores it replicated to three channels.
  src.G_ema->train(false);
  dst.G_ema->train(false);
  at::Generator gen = at::detail::createCPUGenerator(3);
  at::Tensor z = at::randn({4, 64}, gen), c = at::zeros({4, 0});
  at::Tensor rgb = src.G_ema->forward(z, c, 1, -1, trainer::NoiseMode::Const);
  at::Tensor gray = dst.G_ema->forward(z, c, 1, -1, trainer::NoiseMode::Const);
  EXPECT_TRUE(at::allclose(gray, rgb.mean(1, true), 1e-4, 1e-5));
  at::Tensor logits_gray = dst.D->forward(gray, c);
  at::Tensor logits_rgb = src.D->forward(gray.expand({4, 3, 32, 32}).contiguous(), c);
  EXPECT_TRUE(at::allclose(logits_gray, logits_rgb, 1e-4, 1e-5)) << logits_gray << logits_rgb;

  // And back: RGB from gray replicates ToRGB and splits FromRGB, so replicated gray images
  // are scored as the gray network scored them.
  test::ScratchDir dir("xfer_gray");
  trainer::CheckpointWrite w;
  w.G = dst.G.get();
  w.D = dst.D.get();
  w.G_ema = dst.G_ema.get();
  trainer::write_checkpoint(dir / "gray.h5", w);
  auto back = run_nets(32, 3, 0);
  trainer::transfer_networks(dir / "gray.h5", *back.G, *back.D, *back.G_ema);
  at::Tensor t = back.G_ema->state().at("synthesis.b32.torgb.weight");
  EXPECT_TRUE(at::equal(t[0], t[2]));
  EXPECT_TRUE(at::allclose(back.D->forward(gray.expand({4, 3, 32, 32}).contiguous(), c), logits_gray, 1e-4, 1e-5));
}

TEST(Transfer, AnyChannelCountFromRgbAndBetweenCounts) {
  // RGB -> N (4 and 2): every ToRGB row is the mean of the source rows, so each of the N channels
  // draws the mean of the RGB channels; FromRGB spreads the summed columns over N, so an image
  // whose N channels all equal g is scored as the RGB discriminator scores g replicated to RGB.
  // Then N -> M between the transferred networks keeps both properties.
  auto src = run_nets(32, 3, 0);
  trainer::load_networks(imported(), src.G.get(), src.D.get(), src.G_ema.get());
  src.G_ema->train(false);
  at::NoGradGuard no_grad;
  at::Generator gen = at::detail::createCPUGenerator(4);
  at::Tensor z = at::randn({4, 64}, gen), c = at::zeros({4, 0});
  at::Tensor rgb = src.G_ema->forward(z, c, 1, -1, trainer::NoiseMode::Const);
  at::Tensor g = rgb.mean(1, true);
  at::Tensor logits_src = src.D->forward(g.expand({4, 3, 32, 32}).contiguous(), c);
  auto sd = source_group(imported(), "D");
  test::ScratchDir dir("xfer_nchan");
  std::string prev = imported();
  for (int n : {4, 2, 5}) {
    auto dst = run_nets(32, n, 0);
    std::string summary = trainer::transfer_networks(prev, *dst.G, *dst.D, *dst.G_ema);
    EXPECT_NE(summary.find("adapted"), std::string::npos) << summary;
    dst.G_ema->train(false);
    at::Tensor out = dst.G_ema->forward(z, c, 1, -1, trainer::NoiseMode::Const);
    ASSERT_EQ(out.size(1), n);
    for (int k = 0; k < n; ++k) EXPECT_TRUE(at::allclose(out.narrow(1, k, 1), g, 1e-4, 1e-5)) << n << " channel " << k;
    at::Tensor logits = dst.D->forward(g.expand({4, n, 32, 32}).contiguous(), c);
    EXPECT_TRUE(at::allclose(logits, logits_src, 1e-4, 1e-5)) << n << ": " << logits << logits_src;
    if (prev == imported()) {
      // The stored FromRGB columns: sum of the RGB columns * sqrt(N) / (N * sqrt(3)), all equal.
      at::Tensor w = dst.D->state().at("b32.fromrgb.weight");
      at::Tensor want = sd.at("b32.fromrgb.weight").sum(1, true) * (std::sqrt(double(n)) / n / std::sqrt(3.0));
      for (int k = 0; k < n; ++k) EXPECT_TRUE(at::allclose(w.narrow(1, k, 1), want, 1e-6, 1e-7)) << n << " " << k;
    }
    trainer::CheckpointWrite cw;
    cw.G = dst.G.get();
    cw.D = dst.D.get();
    cw.G_ema = dst.G_ema.get();
    prev = dir / ("n" + std::to_string(n) + ".h5");
    trainer::write_checkpoint(prev, cw);
  }
}

TEST(Transfer, ResolutionsAndConditioningAdapt) {
  auto s = source_group(imported(), "G");
  auto sd = source_group(imported(), "D");
  {  // 16: the top block dropped; D's new top block gets a fresh FromRGB
    auto n = run_nets(16, 3, 0);
    at::Tensor fresh = n.D->state().at("b16.fromrgb.weight").clone();
    std::string summary = trainer::transfer_networks(imported(), *n.G, *n.D, *n.G_ema);
    EXPECT_NE(summary.find("dropped"), std::string::npos) << summary;
    EXPECT_TRUE(at::equal(n.G->state().at("synthesis.b16.torgb.weight"), s.at("synthesis.b16.torgb.weight")));
    EXPECT_TRUE(at::equal(n.D->state().at("b16.conv0.weight"), sd.at("b16.conv0.weight")));
    EXPECT_TRUE(at::equal(n.D->state().at("b16.fromrgb.weight"), fresh));
  }
  {  // 64: a new top block, everything at 4..32 copied
    auto n = run_nets(64, 3, 0);
    at::Tensor fresh = n.G->state().at("synthesis.b64.conv0.weight").clone();
    std::string summary = trainer::transfer_networks(imported(), *n.G, *n.D, *n.G_ema);
    EXPECT_NE(summary.find("new: G/synthesis.b64"), std::string::npos) << summary;
    EXPECT_TRUE(at::equal(n.G->state().at("synthesis.b64.conv0.weight"), fresh));
    EXPECT_TRUE(at::equal(n.G->state().at("synthesis.b32.conv1.weight"), s.at("synthesis.b32.conv1.weight")));
    EXPECT_TRUE(at::equal(n.D->state().at("b32.conv1.weight"), sd.at("b32.conv1.weight")));
    EXPECT_TRUE(at::equal(n.G->state().at("mapping.w_avg"), s.at("mapping.w_avg")));
  }
  {  // 3 classes from an unconditional source: z columns of fc0 copied, embeddings fresh
    auto n = run_nets(32, 3, 3);
    at::Tensor fc0 = n.G->state().at("mapping.fc0.weight").clone();
    at::Tensor embed = n.G->state().at("mapping.embed.weight").clone();
    trainer::transfer_networks(imported(), *n.G, *n.D, *n.G_ema);
    at::Tensor now = n.G->state().at("mapping.fc0.weight");
    EXPECT_EQ(now.sizes(), (std::vector<int64_t>{64, 128}));
    EXPECT_TRUE(at::equal(now.narrow(1, 0, 64), s.at("mapping.fc0.weight")));
    EXPECT_TRUE(at::equal(now.narrow(1, 64, 64), fc0.narrow(1, 64, 64)));
    EXPECT_TRUE(at::equal(n.G->state().at("mapping.embed.weight"), embed));
    EXPECT_TRUE(at::equal(n.G_ema->state().at("mapping.embed.weight"), embed));  // G_ema = G where fresh
    EXPECT_NE(n.D->state().find("mapping.embed.weight"), nullptr);
    EXPECT_EQ(n.D->state().at("b4.out.weight").size(0), 64);
  }
}

TEST(Transfer, TrainsGray32WithFreezeD) {
  test::ScratchDir dir("xfer_gray32");
  data::make_synthetic_pack(dir / "brain.h5", 16, 32, 1, 11, true);
  auto info = transfer_run(dir / "brain.h5", dir / "runs", /*freezed=*/1);
  EXPECT_EQ(info.G.img_channels, 1);
  EXPECT_EQ(info.D.freeze_layers, 1);
  // D's frozen FromRGB is exactly the adapted source layer after training.
  auto sd = source_group(imported(), "D");
  auto d = source_group(info.path, "D");
  EXPECT_TRUE(at::allclose(d.at("b32.fromrgb.weight"), sd.at("b32.fromrgb.weight").sum(1, true) / std::sqrt(3.0)));
  EXPECT_FALSE(at::equal(d.at("b32.conv0.weight"), sd.at("b32.conv0.weight")));  // trained
}

TEST(Transfer, TrainsAt16) {
  test::ScratchDir dir("xfer_16");
  data::make_synthetic_pack(dir / "small.h5", 16, 16, 3, 12, true);
  auto info = transfer_run(dir / "small.h5", dir / "runs");
  EXPECT_EQ(info.G.img_resolution, 16);
  EXPECT_EQ(info.D.img_resolution, 16);
}

TEST(Transfer, TrainsConditionalWithThreeClasses) {
  test::ScratchDir dir("xfer_cond");
  make_class_pack(dir / "classes.h5", 12, 32, 3, 3);
  auto info = transfer_run(dir / "classes.h5", dir / "runs", 0, /*cond=*/true);
  EXPECT_EQ(info.G.c_dim, 3);
  EXPECT_EQ(info.D.c_dim, 3);
}

TEST(Transfer, TrainsAt64) {
  test::ScratchDir dir("xfer_64");
  data::make_synthetic_pack(dir / "large.h5", 16, 64, 3, 13, true);
  auto info = transfer_run(dir / "large.h5", dir / "runs");
  EXPECT_EQ(info.G.img_resolution, 64);
  EXPECT_EQ(info.D.img_resolution, 64);
}
