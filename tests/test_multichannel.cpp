// Training on images of any channel count end to end: a 4-channel pack (modalities stacked as
// channels) trains with ADA on the CPU, writes snapshot grids (one gray panel per channel, or a
// chosen channel->RGB mapping) and checkpoints, resumes, and starts from an RGB network.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>

#include "data/image.h"
#include "data/pack.h"
#include "sharding/communicator.h"
#include "test_data_util.h"
#include "trainer/checkpoint.h"
#include "trainer/training_loop.h"

namespace fs = std::filesystem;
using namespace sf;

namespace {

constexpr int kChannels = 4, kRes = 16, kImages = 12;

// Smooth random images; each channel its own pattern so that the channels differ.
void make_pack(const std::string& dest) {
  data::PackWriter::Options o;
  o.force = true;
  o.channel_names = {"t1", "t1ce", "t2", "flair"};
  data::PackWriter w(dest, o);
  std::mt19937 rng(17);
  std::vector<uint8_t> img(static_cast<size_t>(kChannels) * kRes * kRes);
  for (int i = 0; i < kImages; ++i) {
    for (int c = 0; c < kChannels; ++c) {
      const int fx = 1 + static_cast<int>(rng() % 3), fy = 1 + static_cast<int>(rng() % 3), off = static_cast<int>(rng() % 64);
      for (int y = 0; y < kRes; ++y)
        for (int x = 0; x < kRes; ++x)
          img[(static_cast<size_t>(c) * kRes + y) * kRes + x] =
              static_cast<uint8_t>((off + 40 * c + 7 * (fx * x + fy * y)) % 256);
    }
    w.add(img.data(), kChannels, kRes, "img" + std::to_string(i), data::Label{});
  }
  w.commit();
}

trainer::TrainOptions options(const std::string& pack, const std::string& outdir) {
  trainer::TrainOptions o;
  o.data = pack;
  o.outdir = outdir;
  o.aug = "ada";
  o.augpipe = "bgc";  // blit, geometry and colour (image-space filtering needs 32 pixels)
  o.batch_override = 4;
  o.cbase_override = 256;
  o.cmax_override = 32;
  o.kimg_override = 0.008;  // two iterations
  o.threads = 1;
  o.snap = 1;
  o.kimg_per_tick = 0.004;
  o.grid_cols = o.grid_rows = 2;
  return o;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

TEST(Multichannel, FourChannelTrainingSnapshotsResumeAndTransferFromRgb) {
  test::ScratchDir dir("multichannel");
  const std::string pack = dir / "mri.h5";
  make_pack(pack);
  sharding::LocalCommunicator comm;

  // Train from scratch with ADA: grids show one gray panel per channel.
  trainer::TrainRequest a;
  a.options = options(pack, dir / "runs");
  ASSERT_EQ(trainer::run_training(a, comm), 0);
  const std::string run = trainer::last_run_dir();
  auto snaps = trainer::list_snapshots(run);
  ASSERT_FALSE(snaps.empty());
  auto info = trainer::read_checkpoint_info(snaps.back());
  EXPECT_EQ(info.G.img_channels, kChannels);
  EXPECT_EQ(info.D.img_channels, kChannels);
  EXPECT_EQ(info.counters.cur_nimg, 8);
  for (const char* grid : {"reals.png", "fakes_init.png"}) {
    data::Image g = data::read_image_file((fs::path(run) / grid).string());
    EXPECT_EQ(g.channels, 1) << grid;
    EXPECT_EQ(g.width, 2 * kChannels * kRes) << grid;
    EXPECT_EQ(g.height, 2 * kRes) << grid;
  }
  bool fakes = false;
  for (const auto& e : fs::directory_iterator(run))
    fakes = fakes || (e.path().filename().string().rfind("fakes0", 0) == 0 && e.path().extension() == ".png");
  EXPECT_TRUE(fakes);
  // The first cell of reals.png is a pack image, its channels left to right.
  {
    data::Image g = data::read_image_file((fs::path(run) / "reals.png").string());
    std::vector<uint8_t> cell(static_cast<size_t>(kChannels) * kRes * kRes);
    for (int c = 0; c < kChannels; ++c)
      for (int y = 0; y < kRes; ++y)
        for (int x = 0; x < kRes; ++x) cell[(static_cast<size_t>(c) * kRes + y) * kRes + x] = g.row(y)[c * kRes + x];
    data::PackReader r(pack);
    std::vector<uint8_t> img(r.info().image_bytes());
    bool found = false;
    for (int64_t i = 0; i < r.size() && !found; ++i) {
      r.read_image(i, img.data());
      found = img == cell;
    }
    EXPECT_TRUE(found);
  }

  // Resume from the checkpoint.
  trainer::TrainRequest b;
  b.options.kimg_override = 0.016;
  b.options.threads = 1;
  b.resume = snaps.back();
  ASSERT_EQ(trainer::run_training(b, comm), 0);
  EXPECT_EQ(trainer::last_run_dir(), run);
  auto resumed = trainer::read_checkpoint_info(trainer::list_snapshots(run).back());
  EXPECT_EQ(resumed.counters.cur_nimg, 16);
  EXPECT_EQ(resumed.G.img_channels, kChannels);

  // Start from the reference-format RGB fixture network (3 channels, 32x32) on the 4-channel
  // 16x16 pack, with the grids mapped to RGB from channels 3, 0, 2.
  trainer::TrainRequest t;
  t.options = options(pack, dir / "transfer");
  t.options.cbase_override.reset();
  t.options.cmax_override.reset();
  t.options.snapshot_rgb = "3,0,2";
  t.resume = test::fixture("snapshot_res32.pkl");
  ASSERT_EQ(trainer::run_training(t, comm), 0);
  const std::string trun = trainer::last_run_dir();
  auto tinfo = trainer::read_checkpoint_info(trainer::list_snapshots(trun).back());
  EXPECT_EQ(tinfo.G.img_channels, kChannels);
  EXPECT_EQ(tinfo.D.img_channels, kChannels);
  EXPECT_EQ(tinfo.G.img_resolution, kRes);
  EXPECT_EQ(tinfo.counters.cur_nimg, 8);
  EXPECT_NE(read_text(fs::path(trun) / "log.txt").find("Transfer from"), std::string::npos);
  data::Image rgb = data::read_image_file((fs::path(trun) / "fakes_init.png").string());
  EXPECT_EQ(rgb.channels, 3);
  EXPECT_EQ(rgb.width, 2 * kRes);
  // Straight after the transfer every channel of G_ema's output is the same image, so the mapped
  // RGB grid is gray.
  for (size_t k = 0; k + 2 < rgb.pixels.size(); k += 3) {
    ASSERT_EQ(rgb.pixels[k], rgb.pixels[k + 1]) << k;
    ASSERT_EQ(rgb.pixels[k], rgb.pixels[k + 2]) << k;
  }

  // A mapping naming a channel the data lacks is refused before training.
  trainer::TrainRequest bad;
  bad.options = options(pack, dir / "bad");
  bad.options.snapshot_rgb = "0,1,4";
  try {
    trainer::run_training(bad, comm);
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("--snapshot-rgb"), std::string::npos) << e.what();
  }
}

#ifdef STYLEFORGE_BINARY
TEST(Multichannel, SnapshotRgbFlag) {
  test::ScratchDir dir("multichannel_cli");
  const std::string pack = dir / "mri.h5";
  make_pack(pack);
  auto ok = test::run_styleforge("train --data " + pack + " --outdir " + (dir / "runs") +
                                 " --kimg 0.1 --dry-run --threads 1 --snapshot-rgb 3,0,2");
  EXPECT_EQ(ok.rc, 0) << ok.out;
  EXPECT_NE(ok.out.find("\"snapshot_rgb\": \"3,0,2\""), std::string::npos) << ok.out;
  for (const char* bad : {"0,1", "0,1,4", "x"}) {
    auto e = test::run_styleforge("train --data " + pack + " --outdir " + (dir / "runs") +
                                  " --kimg 0.1 --dry-run --threads 1 --snapshot-rgb " + bad);
    EXPECT_NE(e.rc, 0) << bad << ": " << e.out;
    EXPECT_NE(e.out.find("--snapshot-rgb"), std::string::npos) << bad << ": " << e.out;
    EXPECT_EQ(std::count(e.out.begin(), e.out.end(), '\n'), 1) << bad << ": " << e.out;
  }
}
#endif
