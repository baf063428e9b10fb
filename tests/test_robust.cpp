// Robustness of training, checkpoints and the CLI against hostile or unlucky input (issue 18):
// bad flags, --resume conflicts, damaged and incomplete checkpoints, NaN weights, a full disk
// during a checkpoint write, a 200k-deep pickle, and SIGUSR1 as early as the process can catch
// it. Risky calls run in forked children (with an alarm), so a crash or hang is reported as such.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <thread>

#include "data/h5.h"
#include "sharding/communicator.h"
#include "test_child_util.h"
#include "test_data_util.h"
#include "trainer/checkpoint.h"
#include "trainer/pickle.h"
#include "trainer/tensor_io.h"
#include "trainer/train_options_validate.h"
#include "trainer/training_loop.h"

namespace fs = std::filesystem;
using namespace sf;
using sf::test::Child;
using sf::test::file_bytes;
using sf::test::in_child;
using sf::test::one_line;
using sf::test::put_bytes;

namespace {

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

// One tiny training run per test process: a training checkpoint (G, D, G_ema, Adam, RNG).
const std::string& tiny_checkpoint() {
  static std::string path;
  static test::ScratchDir* dir = nullptr;
  if (path.empty()) {
    dir = new test::ScratchDir("robust_run");  // kept for the process (tests copy from it)
    sharding::LocalCommunicator comm;
    trainer::TrainRequest r;
    r.options = tiny_options(test::tiny_pack(7), *dir / "runs");
    r.options.kimg_override = 0.004;
    if (trainer::run_training(r, comm) != 0) return path;
    auto snaps = trainer::list_snapshots(trainer::last_run_dir());
    if (!snaps.empty()) path = snaps.back();
  }
  return path;
}

// Every dataset of a checkpoint, by path (bitwise comparison).
void collect(const h5::Handle& g, const std::string& prefix, std::map<std::string, at::Tensor>& out) {
  for (const auto& n : h5::members(g)) {
    if (h5::is_group(g, n)) {
      collect(h5::open_group(g, n), prefix + n + "/", out);
    } else {
      at::ScalarType t = (prefix.rfind("state/rng", 0) == 0) ? at::kByte
                         : (prefix.find("/step/") != std::string::npos) ? at::kLong
                                                                         : at::kFloat;
      out[prefix + n] = trainer::read_tensor(g, n, t);
    }
  }
}
std::map<std::string, at::Tensor> all_tensors(const std::string& path) {
  std::map<std::string, at::Tensor> out;
  std::lock_guard<std::recursive_mutex> lock(h5::global_mutex());
  h5::Handle f = h5::open_file(path);
  collect(f, "", out);
  return out;
}
bool same(const std::map<std::string, at::Tensor>& a, const std::map<std::string, at::Tensor>& b, std::string* why) {
  if (a.size() != b.size()) {
    *why = "different dataset count";
    return false;
  }
  for (const auto& [k, v] : a) {
    auto it = b.find(k);
    if (it == b.end() || !v.sizes().equals(it->second.sizes()) || v.scalar_type() != it->second.scalar_type() ||
        std::memcmp(v.contiguous().data_ptr(), it->second.contiguous().data_ptr(), v.nbytes()) != 0) {
      *why = k + " differs";
      return false;
    }
  }
  return true;
}

// Overwrites element 0 of a float dataset with `value`.
void poke(const std::string& path, const std::string& dataset, float value) {
  std::lock_guard<std::recursive_mutex> lock(h5::global_mutex());
  h5::Handle f = h5::open_file(path, h5::Mode::ReadWrite);
  std::vector<int64_t> shape;
  auto v = h5::read_f32(f, dataset, &shape);
  v.at(0) = value;
  h5::Handle ds = h5::open_dataset(f, dataset);
  ASSERT_GE(H5Dwrite(ds.id(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()), 0);
}

// A small network-only checkpoint (G, D, G_ema; ~100 KB): what generate, metrics and transfer read.
void write_small_networks(const std::string& path) {
  trainer::GeneratorConfig g;
  g.z_dim = g.w_dim = 32;
  g.img_resolution = 16;
  g.img_channels = 1;
  g.channel_base = 256;
  g.channel_max = 32;
  g.mapping_layers = 2;
  trainer::DiscriminatorConfig d;
  d.img_resolution = 16;
  d.img_channels = 1;
  d.channel_base = 256;
  d.channel_max = 32;
  trainer::Generator G(g), G_ema(g);
  trainer::Discriminator D(d);
  trainer::CheckpointWrite w;
  w.G = &G;
  w.D = &D;
  w.G_ema = &G_ema;
  trainer::write_checkpoint(path, w);
}

std::string first_g_ema_key(const std::string& path) {
  std::lock_guard<std::recursive_mutex> lock(h5::global_mutex());
  h5::Handle f = h5::open_file(path);
  for (const auto& n : h5::members(h5::open_group(f, "G_ema")))
    if (n.find("weight") != std::string::npos) return "G_ema/" + n;
  return "";
}

}  // namespace

// ---- options: one line, exit 2, nothing started ----

#ifdef STYLEFORGE_BINARY
TEST(RobustOptions, EachBadFlagIsAOneLineErrorBeforeAnythingStarts) {
  test::ScratchDir dir("badflags");
  const std::string base = "train --data " + test::tiny_pack(7) + " --outdir " + (dir / "runs") + " --cbase 256 --cmax 32 --batch 4 ";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--gamma nan", "--gamma"},        {"--threads -1", "--threads"},   {"--batch-gpu -2", "--batch-gpu"},
      {"--gpus -1", "--gpus"},           {"--grid 0x0", "--grid"},        {"--timeout 0", "--timeout"},
      {"--param-servers 1", "--param-servers"}, {"--kimg 1e30", "--kimg"}, {"--metrics bogus", "--metrics"},
      {"--tick nan", "--tick"},          {"--timeout inf", "--timeout"},  {"--batch -4", "--batch"},
  };
  for (const auto& [flag, needle] : cases) {
    auto r = test::run_styleforge(base + flag);
    EXPECT_EQ(r.rc, 2) << flag << ": " << r.out;
    EXPECT_TRUE(one_line(r.out)) << flag << ": " << r.out;
    EXPECT_NE(r.out.find(needle), std::string::npos) << flag << ": " << r.out;
    EXPECT_FALSE(fs::exists(dir / "runs") && !fs::is_empty(dir / "runs")) << flag << ": a run directory was created";
  }
}

TEST(RobustOptions, MetricsRunDirThatDoesNotExistIsRefused) {
  test::ScratchDir dir("badrundir");
  auto r = test::run_styleforge("metrics --network " + (dir / "none.h5") + " --run-dir " + (dir / "NONEXISTENT"));
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_TRUE(one_line(r.out)) << r.out;
  EXPECT_NE(r.out.find("NONEXISTENT"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir / "NONEXISTENT"));
}

TEST(RobustOptions, ResumeConflictsNameBothValues) {
  const std::string ckpt = tiny_checkpoint();
  ASSERT_FALSE(ckpt.empty());
  for (const auto& [flag, a, b] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"--cbase 512", "512", "256"}, {"--cmax 64", "64", "32"}, {"--batch 8", "8", "4"}}) {
    auto r = test::run_styleforge("train --resume " + ckpt + " " + flag);
    EXPECT_EQ(r.rc, 2) << flag << ": " << r.out;
    EXPECT_TRUE(one_line(r.out)) << r.out;
    EXPECT_NE(r.out.find(flag.substr(0, flag.find(' ')) + " " + a), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("has " + b), std::string::npos) << r.out;
  }
  // What the checkpoint is, said explicitly.
  std::string note;
  trainer::TrainLaunch l;
  l.resume = ckpt;
  EXPECT_EQ(trainer::validate_options(trainer::TrainOptions{}, l, 1, &note), "");
  EXPECT_NE(note.find("is a training checkpoint"), std::string::npos) << note;
}
#endif

TEST(RobustOptions, ValidateOptionsRangesAndCombinations) {
  trainer::TrainLaunch l;
  trainer::TrainOptions o;
  EXPECT_EQ(trainer::validate_options(o, l, 1), "");
  l.param_servers = 1;
  EXPECT_NE(trainer::validate_options(o, l, 1).find("needs at least 2 ranks"), std::string::npos);
  EXPECT_EQ(trainer::validate_options(o, l, 2), "");
  l.metrics_rank = true;
  EXPECT_NE(trainer::validate_options(o, l, 2).find("needs at least 3 ranks"), std::string::npos);
  l = {};
  l.metrics = {"fid50k_full", "bogus"};
  l.check_metric = [](const std::string& m) {
    if (m == "bogus") throw std::invalid_argument("unknown metric");
  };
  EXPECT_NE(trainer::validate_options(o, l, 1).find("--metrics bogus"), std::string::npos);
  l = {};
  o.ada_kimg_override = std::nan("");
  EXPECT_NE(trainer::validate_options(o, l, 1).find("--ada-kimg"), std::string::npos);
}

// ---- checkpoints ----

TEST(RobustCheckpoint, IncompleteTrainingCheckpointIsAnErrorNotATransferSource) {
  const std::string ckpt = tiny_checkpoint();
  ASSERT_FALSE(ckpt.empty());
  test::ScratchDir dir("incomplete");
  for (const char* group : {"D_opt", "state"}) {
    const std::string p = dir / (std::string(group) + ".h5");
    fs::copy_file(ckpt, p, fs::copy_options::overwrite_existing);
    {
      std::lock_guard<std::recursive_mutex> lock(h5::global_mutex());
      h5::Handle f = h5::open_file(p, h5::Mode::ReadWrite);
      ASSERT_GE(H5Ldelete(f.id(), group, H5P_DEFAULT), 0);
    }
    try {
      trainer::read_checkpoint_info(p);
      FAIL() << "checkpoint without " << group << " accepted";
    } catch (const std::exception& e) {
      EXPECT_TRUE(one_line(e.what()));
      EXPECT_NE(std::string(e.what()).find(std::string(group) + "/"), std::string::npos) << e.what();
    }
  }
}

TEST(RobustCheckpoint, NonFiniteWeightsAreRefused) {
  const std::string ckpt = tiny_checkpoint();
  ASSERT_FALSE(ckpt.empty());
  test::ScratchDir dir("nan");
  const std::string p = dir / "network-snapshot-000000.h5";
  fs::copy_file(ckpt, p);
  const std::string key = first_g_ema_key(p);
  ASSERT_FALSE(key.empty());
  poke(p, key, std::nanf(""));
  trainer::CheckpointInfo info = trainer::read_checkpoint_info(p);
  trainer::Generator G(info.G);
  try {
    trainer::load_networks(p, nullptr, nullptr, &G);
    FAIL() << "NaN weights loaded";
  } catch (const std::exception& e) {
    EXPECT_TRUE(one_line(e.what()));
    EXPECT_NE(std::string(e.what()).find(key), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("non-finite"), std::string::npos) << e.what();
  }
  poke(p, key, INFINITY);
  EXPECT_THROW(trainer::load_networks(p, nullptr, nullptr, &G), std::runtime_error);
#ifdef STYLEFORGE_BINARY
  poke(p, key, std::nanf(""));
  auto g = test::run_styleforge("generate --network " + p + " --seeds 0-1 --outdir " + (dir / "img"));
  EXPECT_EQ(g.rc, 1) << g.out;
  EXPECT_TRUE(one_line(g.out)) << g.out;
  EXPECT_NE(g.out.find("non-finite"), std::string::npos) << g.out;
  EXPECT_FALSE(fs::exists(dir / "img/seed0000.png"));
  auto r = test::run_styleforge("train --resume " + p + " --kimg 0.008");
  EXPECT_NE(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("non-finite"), std::string::npos) << r.out;
#endif
}

TEST(RobustCheckpoint, DamagedCheckpointLoadsIdenticalOrFailsWithOneLine) {
  test::ScratchDir dir("ckdamage");
  const std::string ckpt = dir / "good.h5";
  write_small_networks(ckpt);
  const auto want = all_tensors(ckpt);
  const auto bytes = file_bytes(ckpt);
  const std::string bad = dir / "network-snapshot-000000.h5";
  int cases = 0, identical = 0, errors = 0;
  std::vector<std::string> failures;
  auto run = [&](const std::vector<uint8_t>& b, const std::string& what) {
    put_bytes(bad, b);
    Child c = in_child([&](std::string& msg) {
      try {
        trainer::CheckpointInfo info = trainer::read_checkpoint_info(bad);
        trainer::Generator G(info.G), G_ema(info.G);
        trainer::Discriminator D(info.D);
        trainer::load_networks(bad, &G, &D, &G_ema);
        std::string why;
        if (!same(all_tensors(bad), want, &why)) {
          msg = why;
          return 2;
        }
        return 0;
      } catch (const std::exception& e) {
        msg = e.what();
        return 1;
      }
    });
    ++cases;
    if (c.exited && c.code == 0) ++identical;
    else if (c.exited && c.code == 1 && one_line(c.msg) && c.msg.find("network-snapshot-000000.h5") != std::string::npos) ++errors;
    else {
      // Keep the input for a post-mortem (h5dump, gdb).
      std::string keep = (fs::temp_directory_path() / ("sf_ckpt_damage_" + std::to_string(cases) + ".h5")).string();
      std::error_code ec;
      fs::copy_file(bad, keep, fs::copy_options::overwrite_existing, ec);
      failures.push_back(what + ": " + c.describe() + " (input kept as " + keep + ")");
    }
  };
  // STYLEFORGE_DAMAGE_DENSITY=N multiplies the number of damaged copies (longer sweeps by hand).
  const size_t density = std::max(1, std::getenv("STYLEFORGE_DAMAGE_DENSITY") ? std::atoi(std::getenv("STYLEFORGE_DAMAGE_DENSITY")) : 1);
  const size_t flip_step = std::max<size_t>(1, bytes.size() / (220 * density)) | 1;
  for (size_t off = 0; off < bytes.size(); off += flip_step) {
    auto b = bytes;
    b[off] ^= static_cast<uint8_t>(1u << (off % 8));
    run(b, "flip at " + std::to_string(off));
  }
  for (size_t off = 0; off < bytes.size(); off += bytes.size() / (60 * density) + 1) {
    auto b = bytes;
    std::fill(b.begin() + static_cast<std::ptrdiff_t>(off), b.begin() + static_cast<std::ptrdiff_t>(std::min(bytes.size(), off + 64)), 0);
    run(b, "zero block at " + std::to_string(off));
  }
  for (size_t len = 0; len < bytes.size(); len += bytes.size() / 20 + 1)
    run(std::vector<uint8_t>(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(len)), "truncated to " + std::to_string(len));
  for (const auto& f : failures) ADD_FAILURE() << f;
  EXPECT_GT(errors, cases / 2);
  std::printf("[ damage ] checkpoint of %zu bytes: %d cases, %d identical, %d one-line errors, %zu other\n", bytes.size(),
              cases, identical, errors, failures.size());
}

TEST(RobustCheckpoint, FullDiskKeepsThePreviousCheckpoint) {
  const std::string ckpt = tiny_checkpoint();
  ASSERT_FALSE(ckpt.empty());
  const auto before = file_bytes(ckpt);
  test::Tmpfs t("ckpt", std::to_string((before.size() + (64 << 10)) / 4096 * 4096 + 4096));
  if (!t.mounted) GTEST_SKIP() << t.skip_message();
  const std::string dest = t.dir + "/network-snapshot-000000.h5";
  fs::copy_file(ckpt, dest);
  // Rewrite the same networks over it: needs a second copy's worth of space, which is not there.
  Child c = in_child(
      [&](std::string& msg) {
        try {
          trainer::CheckpointInfo info = trainer::read_checkpoint_info(dest);
          trainer::Generator G(info.G), G_ema(info.G);
          trainer::Discriminator D(info.D);
          trainer::load_networks(dest, &G, &D, &G_ema);
          trainer::CheckpointWrite w;
          w.G = &G;
          w.D = &D;
          w.G_ema = &G_ema;
          trainer::write_checkpoint(dest, w);
          msg = "written?";
          return 0;
        } catch (const std::exception& e) {
          msg = e.what();
          return 1;
        }
      },
      {60, 0, /*use_exit=*/true});
  const std::vector<std::string> left = t.files();
  const auto after = file_bytes(dest);
  EXPECT_TRUE(c.exited) << c.describe();
  EXPECT_EQ(c.code, 1) << c.describe();
  EXPECT_TRUE(one_line(c.msg)) << c.msg;
  EXPECT_EQ(after, before) << "the previous checkpoint changed";
  EXPECT_EQ(left, std::vector<std::string>{"network-snapshot-000000.h5"});
}

// ---- pickle ----

TEST(RobustPickle, TwoHundredThousandLevelsAreNoCrash) {
  // 400 KB: PROTO 2, 200k EMPTY_LIST, 199999 APPEND, STOP (lists nested 200k deep).
  std::string deep = "\x80\x02";
  deep += std::string(200000, ']') + std::string(199999, 'a') + ".";
  std::string tuples = std::string("\x80\x02K\x01") + std::string(200000, '\x85') + ".";
  for (const auto& data : {deep, tuples}) {
    Child c = in_child([&](std::string& msg) {
      try {
        auto v = pickle::load(std::make_shared<const std::string>(data), {"deep.pkl"});
        try {
          pickle::to_json(*v, "deep.pkl");
        } catch (const pickle::Error& e) {
          msg = e.what();
        }
        v.reset();  // the 200k-deep value is released here
        return 0;
      } catch (const pickle::Error& e) {
        msg = e.what();
        return 1;
      }
    });
    EXPECT_TRUE(c.exited && (c.code == 0 || c.code == 1)) << c.describe();
    EXPECT_TRUE(c.msg.empty() || one_line(c.msg)) << c.msg;
  }
}

TEST(RobustPickle, CopiesOfCopiesAreBoundedByTheInputSize) {
  // Found by fuzz_pickle: 177 bytes of DUP/BUILD that double a dict per opcode (asked for 1.6 GB).
  const std::string hex =
      "888888800580027d327d7d7d7d7d7d7d7d7d7d7d7d30307d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d7d32323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232323232327d7d7d6262626262626262626262737373626262626262626262626262626262626262626262627d627d627d736289736289627d73628973626262626262626262626262893162";
  std::string data;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) data.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  Child c = in_child([&](std::string& msg) {
    try {
      pickle::load(std::make_shared<const std::string>(data), {"dup.pkl"});
      return 0;
    } catch (const pickle::Error& e) {
      msg = e.what();
      return 1;
    }
  });
  EXPECT_TRUE(c.exited && c.code == 1) << c.describe();
  EXPECT_TRUE(one_line(c.msg)) << c.msg;
  EXPECT_NE(c.msg.find("dup.pkl"), std::string::npos) << c.msg;
  EXPECT_NE(c.msg.find("more values than a pickle of this size"), std::string::npos) << c.msg;
}

// ---- signals ----

#ifdef STYLEFORGE_BINARY
TEST(RobustSignals, Usr1AsSoonAsItCanBeCaughtCheckpointsAndExits3) {
  test::ScratchDir dir("early_usr1");
  const std::string out = dir / "runs";
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    std::string log = dir / "log.txt";
    freopen(log.c_str(), "w", stdout);
    freopen(log.c_str(), "a", stderr);
    execl(STYLEFORGE_BINARY, STYLEFORGE_BINARY, "train", "--data", test::tiny_pack(7).c_str(), "--outdir", out.c_str(),
          "--cbase", "256", "--cmax", "32", "--batch", "4", "--threads", "1", "--kimg", "10", "--metrics", "none",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  // Wait until the process catches SIGUSR1 (SigCgt in /proc/PID/status), then send it at once.
  const auto t0 = std::chrono::steady_clock::now();
  bool caught = false;
  while (!caught && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(20)) {
    std::ifstream st("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(st, line))
      if (line.rfind("SigCgt:", 0) == 0) caught = (std::stoull(line.substr(7), nullptr, 16) >> (SIGUSR1 - 1)) & 1;
    if (!caught) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  ASSERT_TRUE(caught);
  const double at_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  kill(pid, SIGUSR1);
  int status = 0;
  waitpid(pid, &status, 0);
  std::ifstream lf(dir / "log.txt");
  std::string log((std::istreambuf_iterator<char>(lf)), std::istreambuf_iterator<char>());
  ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << WTERMSIG(status) << " (sent at " << at_ms << " ms)\n" << log;
  EXPECT_EQ(WEXITSTATUS(status), 3) << log;
  std::vector<std::string> snaps;
  for (const auto& e : fs::recursive_directory_iterator(out))
    if (e.path().filename().string().rfind("network-snapshot-", 0) == 0) snaps.push_back(e.path().string());
  EXPECT_FALSE(snaps.empty()) << "no checkpoint written\n" << log;
  std::printf("[ signal ] SIGUSR1 sent %.1f ms after start, exit %d, %zu checkpoint(s)\n", at_ms, WEXITSTATUS(status), snaps.size());
}
#endif

// ---- `styleforge pack` on a full file system, through the real CLI (exit code, not a crash) ----

#ifdef STYLEFORGE_BINARY
#include "data/image.h"

TEST(RobustCli, PackOnAFullDiskExits1AndKeepsTheIntactPack) {
  test::ScratchDir src("fullpack_src");
  for (int i = 0; i < 300; ++i) {  // ~1.2 MB of incompressible 64x64 images
    data::Image img;
    img.width = img.height = 64;
    img.channels = 1;
    img.pixels.resize(64 * 64);
    uint32_t x = 77u + static_cast<uint32_t>(i);
    for (auto& v : img.pixels) v = static_cast<uint8_t>((x = x * 1664525u + 1013904223u) >> 24);
    char name[32];
    std::snprintf(name, sizeof name, "img%04d.png", i);
    data::write_png_file(src / name, img, 0);
  }
  fs::create_directories(src / "small");
  for (int i = 0; i < 4; ++i) fs::copy_file(src / ("img000" + std::to_string(i) + ".png"), src / ("small/img" + std::to_string(i) + ".png"));
  test::Tmpfs t("cli", "512k");
  if (!t.mounted) GTEST_SKIP() << t.skip_message();
  const std::string dest = t.dir + "/ph.h5";
  auto big = test::run_styleforge("pack --quiet --source " + src.path.string() + " --dest " + dest);
  const std::vector<std::string> left = t.files();
  auto small = test::run_styleforge("pack --quiet --source " + (src / "small") + " --dest " + dest);
  const auto before = file_bytes(dest);
  auto forced = test::run_styleforge("pack --quiet --force --source " + src.path.string() + " --dest " + dest);
  const std::vector<std::string> left2 = t.files();
  const auto after = file_bytes(dest);
  EXPECT_EQ(big.rc, 1) << big.out;
  EXPECT_TRUE(one_line(big.out)) << big.out;
  EXPECT_NE(big.out.find("ph.h5"), std::string::npos) << big.out;
  EXPECT_TRUE(left.empty()) << "left behind: " << (left.empty() ? "" : left[0]);
  EXPECT_EQ(small.rc, 0) << small.out;
  EXPECT_EQ(forced.rc, 1) << forced.out;
  EXPECT_TRUE(one_line(forced.out)) << forced.out;
  EXPECT_EQ(after, before) << "--force replaced the intact pack after a failed write";
  EXPECT_EQ(left2, std::vector<std::string>{"ph.h5"});
}
#endif
