// Training loop: exact resume, the ADA controller, options, checkpoints, generate.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/GradMode.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "data/bench.h"
#include "data/h5.h"
#include "sharding/communicator.h"
#include "test_data_util.h"
#include "trainer/checkpoint.h"
#include "trainer/tensor_io.h"
#include "trainer/training_loop.h"
#include "trainer/training_step.h"

namespace fs = std::filesystem;
using namespace sf;

namespace {

// A tiny run: 16x16 gray, small channels, batch 4.
trainer::TrainOptions tiny_options(const std::string& pack, const std::string& outdir) {
  trainer::TrainOptions o;
  o.data = pack;
  o.outdir = outdir;
  o.batch_override = 4;
  o.cbase_override = 256;
  o.cmax_override = 32;
  o.threads = 1;
  o.snap = 1000;
  o.kimg_per_tick = 0.008;
  return o;
}

const std::string& tiny_pack() { return test::tiny_pack(7); }

// Every dataset of a checkpoint file, by path, as raw bytes (float/int/uint8 all compared bitwise).
void collect(const h5::Handle& g, const std::string& prefix, std::map<std::string, at::Tensor>& out) {
  for (const auto& n : h5::members(g)) {
    if (h5::is_group(g, n)) {
      collect(h5::open_group(g, n), prefix + n + "/", out);
    } else {
      std::vector<int64_t> shape = h5::dataset_shape(g, n);
      at::ScalarType t = (prefix.rfind("state/rng", 0) == 0) ? at::kByte
                         : (prefix.find("/step/") != std::string::npos) ? at::kLong
                                                                         : at::kFloat;
      out[prefix + n] = trainer::read_tensor(g, n, t);
    }
  }
}

std::map<std::string, at::Tensor> checkpoint_tensors(const std::string& path) {
  std::map<std::string, at::Tensor> out;
  h5::Handle f = h5::open_file(path);
  collect(f, "", out);
  return out;
}

}  // namespace

TEST(Training, ExactResumeMatchesUninterruptedRun) {
  test::ScratchDir dir("resume");
  sharding::LocalCommunicator comm;
  // 3 + 3 iterations of batch 4 = 0.012 + 0.012 kimg; ADA on (accumulators carry across the cut
  // at iteration 3, the first adjustment happens at 4), Greg at 0 and 4, Dreg at 0.
  trainer::TrainRequest a;
  a.options = tiny_options(tiny_pack(), dir / "a");
  a.options.kimg_override = 0.012;
  ASSERT_EQ(trainer::run_training(a, comm), 0);
  const std::string run_a = trainer::last_run_dir();
  auto snaps_a = trainer::list_snapshots(run_a);
  ASSERT_FALSE(snaps_a.empty());

  trainer::TrainRequest a2;
  a2.options.kimg_override = 0.024;
  a2.options.threads = 1;
  a2.resume = snaps_a.back();
  ASSERT_EQ(trainer::run_training(a2, comm), 0);
  EXPECT_EQ(trainer::last_run_dir(), run_a);

  trainer::TrainRequest b;
  b.options = tiny_options(tiny_pack(), dir / "b");
  b.options.kimg_override = 0.024;
  ASSERT_EQ(trainer::run_training(b, comm), 0);
  const std::string run_b = trainer::last_run_dir();

  // Snapshots at 0, 12 and 24 images share kimg 0: none replaced another, and they sort by images.
  auto snaps = trainer::list_snapshots(run_a);
  ASSERT_EQ(snaps.size(), 3u);
  EXPECT_EQ(fs::path(snaps[0]).filename(), "network-snapshot-000000.h5");
  EXPECT_EQ(fs::path(snaps[1]).filename(), "network-snapshot-000000-000000012.h5");
  EXPECT_EQ(fs::path(snaps[2]).filename(), "network-snapshot-000000-000000024.h5");
  auto ta = checkpoint_tensors(trainer::list_snapshots(run_a).back());
  auto tb = checkpoint_tensors(trainer::list_snapshots(run_b).back());
  ASSERT_EQ(ta.size(), tb.size());
  int groups_seen = 0;
  for (const char* g : {"G/", "D/", "G_ema/", "G_opt/exp_avg_sq/", "D_opt/exp_avg_sq/", "state/rng/", "augment_pipe/"})
    for (const auto& [k, v] : ta)
      if (k.rfind(g, 0) == 0) {
        ++groups_seen;
        break;
      }
  EXPECT_EQ(groups_seen, 7);
  for (const auto& [k, v] : ta) {
    ASSERT_TRUE(tb.count(k)) << k;
    EXPECT_TRUE(at::equal(v, tb.at(k))) << "differs after resume: " << k;
  }
  auto ia = trainer::read_checkpoint_info(trainer::list_snapshots(run_a).back());
  auto ib = trainer::read_checkpoint_info(trainer::list_snapshots(run_b).back());
  EXPECT_EQ(ia.counters.cur_nimg, 24);
  EXPECT_EQ(ia.counters.cur_nimg, ib.counters.cur_nimg);
  EXPECT_EQ(ia.counters.batch_idx, ib.counters.batch_idx);
  EXPECT_EQ(ia.counters.augment_p, ib.counters.augment_p);
  EXPECT_EQ(ia.counters.pl_mean, ib.counters.pl_mean);
  EXPECT_EQ(ia.counters.ada_sign_sum, ib.counters.ada_sign_sum);
  EXPECT_GT(ia.counters.pl_mean, 0);
  // The training changed the networks: G differs from a fresh G of the same seed.
  EXPECT_FALSE(at::equal(ta.at("G/synthesis.b16.conv1.weight"), ta.at("G_ema/synthesis.b16.conv1.weight")));

  // stats.jsonl: one line per tick with the reference's names; the resumed run appended.
  std::ifstream f(fs::path(run_a) / "stats.jsonl");
  std::string line;
  int lines = 0;
  while (std::getline(f, line)) {
    auto j = nlohmann::json::parse(line);
    EXPECT_TRUE(j.contains("Loss/G/loss")) << line;
    EXPECT_TRUE(j.contains("Loss/D/loss"));
    EXPECT_TRUE(j.contains("Loss/signs/real"));
    EXPECT_TRUE(j.contains("Progress/augment"));
    EXPECT_TRUE(j.contains("Timing/sec_per_kimg"));
    EXPECT_TRUE(j.contains("timestamp"));
    ++lines;
  }
  EXPECT_GE(lines, 3);
  for (const char* name : {"training_options.json", "log.txt", "reals.png", "fakes_init.png", "fakes000000.png"})
    EXPECT_TRUE(fs::exists(fs::path(run_a) / name)) << name;

  // generate: images from the checkpoint, the same for the same seed.
  trainer::GenerateRequest g;
  g.network = trainer::list_snapshots(run_a).back();
  g.seeds = {0, 1, 1};
  g.outdir = dir / "gen";
  EXPECT_EQ(trainer::run_generate(g), 3);
  EXPECT_TRUE(fs::exists(fs::path(g.outdir) / "seed0001.png"));
  EXPECT_TRUE(fs::exists(fs::path(g.outdir) / "grid.png"));
}

TEST(Training, AdaControllerFollowsForcedSigns) {
  // p moves by batch * interval / (ada_kimg * 1000) per adjustment: up while sign(D(real)) = +1,
  // down while it is -1, and never below 0.
  test::ScratchDir dir("ada");
  trainer::TrainOptions o = tiny_options(tiny_pack(), dir / "x");
  o.resolve(16, 1, 0, 24, 1);
  o.ada_kimg = 1;  // a step of 4 * 4 / 1000 = 0.016
  sharding::LocalCommunicator comm;
  trainer::TrainingStep step(o, comm, {});
  at::Tensor reals = at::randint(0, 256, {4, 1, 16, 16}, at::kByte);
  const double step_p = 4.0 * 4 / 1000;
  auto force = [&](double v) {
    at::NoGradGuard ng;
    const_cast<at::Tensor&>(step.D().state().at("b4.out.bias")).fill_(v);
  };
  std::vector<double> ps;
  for (int i = 0; i < 24; ++i) {
    force(i < 12 ? 1e4 : -1e4);
    step.iteration(reals, at::Tensor());
    ps.push_back(step.augment_p());
  }
  // Up at iterations 4, 8, 12 (after the 4th, 8th, 12th batch), then down at 16, 20, 24.
  for (int i = 0; i < 24; ++i) {
    const int n = i + 1;
    double expect = n < 4 ? 0 : (n < 8 ? 1 : (n < 12 ? 2 : 3)) * step_p;
    if (n >= 16) expect = std::max(0.0, 3 * step_p - (n / 4 - 3) * step_p);
    EXPECT_NEAR(ps[i], expect, 1e-12) << "iteration " << n;
    EXPECT_GE(ps[i], 0);
  }
  // Keep forcing -1: p stays at 0.
  for (int i = 0; i < 8; ++i) {
    force(-1e4);
    step.iteration(reals, at::Tensor());
    EXPECT_EQ(step.augment_p(), 0);
  }
}

TEST(Training, AdaRuleMatchesReference) {
  trainer::AdaController c;
  c.target = 0.6;
  c.interval = 4;
  c.ada_kimg = 500;
  c.batch_size = 64;
  const double adjust = 64.0 * 4 / (500 * 1000);
  EXPECT_DOUBLE_EQ(c.next_p(0.1, 0.9 * 256, 256), 0.1 + adjust);
  EXPECT_DOUBLE_EQ(c.next_p(0.1, 0.2 * 256, 256), 0.1 - adjust);
  EXPECT_DOUBLE_EQ(c.next_p(0.0, -256, 256), 0.0);
  EXPECT_DOUBLE_EQ(c.next_p(0.3, 0, 0), 0.3);  // nothing reported: unchanged
}

TEST(Training, PresetsFollowTheReference) {
  trainer::TrainOptions o;
  o.resolve(256, 3, 0, 1000, 1);  // auto, 1 GPU
  EXPECT_EQ(o.batch_size, 16);
  EXPECT_EQ(o.D.mbstd_group_size, 4);
  EXPECT_EQ(o.G.channel_base, 16384);
  EXPECT_DOUBLE_EQ(o.lrate, 0.0025);
  EXPECT_DOUBLE_EQ(o.r1_gamma, 0.0002 * 256 * 256 / 16);
  EXPECT_DOUBLE_EQ(o.ema_kimg, 16 * 10.0 / 32);
  EXPECT_EQ(o.G.mapping_layers, 2);
  ASSERT_TRUE(o.ada_target.has_value());
  EXPECT_DOUBLE_EQ(*o.ada_target, 0.6);
  trainer::TrainOptions p;
  p.cfg = "paper256";
  p.resolve(256, 3, 0, 1000, 1);
  EXPECT_EQ(p.batch_size, 64);
  EXPECT_EQ(p.batch_gpu, 8);
  EXPECT_DOUBLE_EQ(p.r1_gamma, 1);
  EXPECT_EQ(p.G.mapping_layers, 8);
  trainer::TrainOptions c;
  c.cfg = "cifar";
  c.resolve(32, 3, 0, 1000, 1);
  EXPECT_EQ(c.pl_weight, 0);
  EXPECT_EQ(c.style_mixing_prob, 0);
  EXPECT_EQ(c.D.architecture, "orig");
  // JSON round trip keeps every resolved value.
  auto j = p.to_json();
  EXPECT_EQ(trainer::TrainOptions::from_json(j).to_json(), j);
}

TEST(Training, BadOptionsAreOneLineErrors) {
  auto fails = [](auto edit, const std::string& needle) {
    trainer::TrainOptions o;
    edit(o);
    try {
      o.resolve(64, 1, 0, 100, 1);
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos);
      return;
    }
    ADD_FAILURE() << "no error for " << needle;
  };
  fails([](auto& o) { o.cfg = "paper2048"; }, "--cfg");
  fails([](auto& o) { o.aug = "fixed"; }, "--p");
  fails([](auto& o) { o.aug = "sometimes"; }, "--aug");
  fails([](auto& o) { o.gamma_override = -1; }, "--gamma");
  fails([](auto& o) { o.cond = true; }, "--cond");
  fails([](auto& o) { o.batch_override = 6, o.batch_gpu_override = 4; }, "--batch-gpu");
}

TEST(Training, SeedListsParse) {
  EXPECT_EQ(trainer::parse_seed_list("0-3"), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(trainer::parse_seed_list("5,7-8,1"), (std::vector<int64_t>{5, 7, 8, 1}));
  EXPECT_THROW(trainer::parse_seed_list("3-1"), std::invalid_argument);
  EXPECT_THROW(trainer::parse_seed_list("a"), std::invalid_argument);
  EXPECT_THROW(trainer::parse_seed_list("1,,2"), std::invalid_argument);
}

TEST(Training, NumpyRandnMatchesNumpy) {
  // np.random.RandomState(0).randn(5) and RandomState(42).randn(2)
  auto a = trainer::numpy_randn(0, 5);
  const double ea[] = {1.764052345967664, 0.4001572083672233, 0.9787379841057392, 2.240893199201458,
                       1.8675579901499675};
  for (int i = 0; i < 5; ++i) EXPECT_NEAR(a[i], ea[i], 1e-15);
  auto b = trainer::numpy_randn(42, 2);
  EXPECT_NEAR(b[0], 0.4967141530112327, 1e-15);
  EXPECT_NEAR(b[1], -0.13826430117118466, 1e-15);
}

TEST(Training, BadCheckpointsNameTheFile) {
  test::ScratchDir dir("badckpt");
  const std::string junk = dir / "junk.h5";
  std::ofstream(junk) << "not hdf5";
  try {
    trainer::read_checkpoint_info(junk);
    FAIL();
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("junk.h5"), std::string::npos) << e.what();
  }
  try {
    trainer::read_checkpoint_info(dir / "missing.h5");
    FAIL();
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("missing.h5"), std::string::npos) << e.what();
  }
  // A pack is HDF5 but not a checkpoint.
  try {
    trainer::read_checkpoint_info(tiny_pack());
    FAIL();
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("not a styleforge checkpoint"), std::string::npos) << e.what();
  }
}
