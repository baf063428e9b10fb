// `styleforge train` end to end on a tiny pack: metrics computed in the training process when
// there is no metrics rank, dry runs that end on every rank, and what --gpus/--metrics-rank start.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "tests/test_data_util.h"

namespace fs = std::filesystem;
using sf::test::ScratchDir;

#ifdef STYLEFORGE_BINARY
namespace {

std::vector<std::string> lines_of(const fs::path& p) {
  std::vector<std::string> out;
  std::ifstream f(p);
  for (std::string l; std::getline(f, l);)
    if (!l.empty()) out.push_back(l);
  return out;
}

// Tiny networks, one LibTorch thread: the point is the flow, not the training.
std::string tiny_train() {
  return "train --data " + sf::test::tiny_pack(5) + " --cbase 256 --cmax 32 --map 2 --batch 4 --grid 2x2 --threads 1 ";
}

// mpirun as root needs these; one LibTorch thread per rank.
const char* kMpiEnv = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 ";

}  // namespace

TEST(TrainCli, SingleProcessRunComputesMetricsAtEachSnapshot) {
  ScratchDir tmp("train_cli_metrics");
  // 3 ticks of 4 images (kimg 0.012, tick 0.004), a snapshot at every tick: 3 evaluations of FID
  // with 24 generated images (the tiny pack has 24 reals) and the stand-in detector.
  const std::string cmd = "STYLEFORGE_CACHE=" + (tmp / "cache") + " " + std::string(STYLEFORGE_BINARY) + " " +
                          tiny_train() + "--outdir " + (tmp / "runs") +
                          " --kimg 0.012 --tick 0.004 --snap 1 --metrics fid50k_full --metrics-num-gen 24 --detector " +
                          sf::test::fixture("detector_standin.pt");
  sf::test::CliResult r = sf::test::run_shell(cmd);
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(r.out.find("no metrics rank in a single-process run"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("in this process at snapshots"), std::string::npos) << r.out;

  std::vector<fs::path> runs;
  for (const auto& e : fs::directory_iterator(tmp / "runs")) runs.push_back(e.path());
  ASSERT_EQ(runs.size(), 1u);
  const fs::path run = runs[0];
  std::set<std::string> snapshots;
  for (const auto& e : fs::directory_iterator(run))
    if (e.path().filename().string().rfind("network-snapshot-", 0) == 0) snapshots.insert(e.path().filename().string());
  ASSERT_GE(snapshots.size(), 3u) << r.out;

  // One line per snapshot, as the metrics rank writes them: the reference's result dict, the
  // checkpoint it was computed from (relative to the run), a finite FID.
  const std::vector<std::string> lines = lines_of(run / "metric-fid24_full@detector_standin.jsonl");
  ASSERT_EQ(lines.size(), snapshots.size()) << r.out;
  std::set<std::string> named;
  for (const auto& l : lines) {
    nlohmann::json j = nlohmann::json::parse(l);
    EXPECT_EQ(j.at("metric"), "fid24_full@detector_standin");
    const double fid = j.at("results").at("fid24_full@detector_standin").get<double>();
    EXPECT_TRUE(std::isfinite(fid) && fid >= 0) << l;
    EXPECT_EQ(j.at("num_gpus"), 1);
    named.insert(j.at("snapshot_pkl").get<std::string>());
  }
  EXPECT_EQ(named, snapshots);

  // Each tick line at a snapshot says how long the metrics took.
  const std::regex tick_re(R"(^tick \d+ .* metrics (\d+\.\d)s$)");
  int timed = 0;
  for (const auto& l : lines_of(run / "log.txt")) timed += std::regex_match(l, tick_re);
  EXPECT_EQ(timed, static_cast<int>(snapshots.size())) << r.out;
}

TEST(TrainCli, TwoTrainersWithoutMetricsRankEvaluateOnRankZero) {
  ScratchDir tmp("train_cli_metrics2");
  // --metrics-rank none: 2 trainers, rank 0 evaluates while rank 1 waits. 800 generated images
  // take longer than --timeout 2 here (about 4 s on 2 shared cores), so rank 1 only survives
  // because it keeps hearing from rank 0 while it waits.
  const std::string cmd = std::string(kMpiEnv) + "STYLEFORGE_CACHE=" + (tmp / "cache") + " timeout -s KILL 300 " +
                          STYLEFORGE_BINARY + " " + tiny_train() + "--gpus 2 --outdir " + (tmp / "runs") +
                          " --kimg 0.004 --tick 0.004 --timeout 2 --metrics-rank none --metrics fid50k_full"
                          " --metrics-num-gen 800 --detector " + sf::test::fixture("detector_standin.pt");
  sf::test::CliResult r = sf::test::run_shell(cmd);
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(r.out.find("[metrics rank"), std::string::npos) << r.out;
  std::vector<fs::path> runs;
  for (const auto& e : fs::directory_iterator(tmp / "runs")) runs.push_back(e.path());
  ASSERT_EQ(runs.size(), 1u);
  std::string log;
  for (const auto& l : lines_of(runs[0] / "log.txt")) log += l + "\n";
  EXPECT_NE(log.find("2 trainers, no metrics rank"), std::string::npos) << log;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(log, m, std::regex(R"(tick 0 .* metrics (\d+\.\d)s\n)"))) << log;
  if (std::stod(m[1]) <= 2) std::printf("note: the evaluation took %ss, not longer than --timeout 2 on this machine\n", m[1].str().c_str());
  const std::vector<std::string> lines = lines_of(runs[0] / "metric-fid800_full@detector_standin.jsonl");
  ASSERT_EQ(lines.size(), 1u) << r.out;  // the one snapshot (tick 0 is the last)
  nlohmann::json j = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(j.at("num_gpus"), 2) << lines[0];
  EXPECT_TRUE(std::isfinite(j.at("results").at("fid800_full@detector_standin").get<double>())) << lines[0];
  EXPECT_TRUE(fs::exists(runs[0] / j.at("snapshot_pkl").get<std::string>())) << lines[0];
}

TEST(TrainCli, SingleProcessWithoutDetectorSaysMetricsAreOffAndTrains) {
  ScratchDir tmp("train_cli_nodet");
  const std::string cmd = "STYLEFORGE_CACHE=" + (tmp / "cache") + " STYLEFORGE_DETECTOR= " + std::string(STYLEFORGE_BINARY) +
                          " " + tiny_train() + "--outdir " + (tmp / "runs") + " --kimg 0.004 --tick 0.004";
  sf::test::CliResult r = sf::test::run_shell(cmd);
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("metrics off: no feature detector found"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find(" metrics 0"), std::string::npos) << r.out;  // nothing evaluated, nothing timed
}

TEST(TrainCli, DryRunWithGpusExitsOnEveryRank) {
  ScratchDir tmp("train_cli_dry");
  // --metrics given: 2 trainers + the metrics rank; before, the metrics rank waited forever.
  const auto t0 = std::chrono::steady_clock::now();
  sf::test::CliResult r = sf::test::run_shell(std::string(kMpiEnv) + "timeout -s KILL 120 " + STYLEFORGE_BINARY + " " +
                                              tiny_train() + "--gpus 2 --dry-run --metrics fid50k_full");
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_LT(sec, 60) << r.out;
  EXPECT_NE(r.out.find("Dry run; exiting."), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Number of trainers: 2"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[metrics rank 2] dry run; exiting."), std::string::npos) << r.out;

  // Without --metrics: 2 trainers and no metrics rank (the default fid50k_full would run on rank 0).
  sf::test::CliResult d = sf::test::run_shell(std::string(kMpiEnv) + "timeout -s KILL 120 " + STYLEFORGE_BINARY + " " +
                                              tiny_train() + "--gpus 2 --dry-run");
  ASSERT_EQ(d.rc, 0) << d.out;
  EXPECT_NE(d.out.find("Number of trainers: 2"), std::string::npos) << d.out;
  EXPECT_EQ(d.out.find("[metrics rank"), std::string::npos) << d.out;

  // With a parameter server as well: every role ends.
  sf::test::CliResult p = sf::test::run_shell(std::string(kMpiEnv) + "timeout -s KILL 120 " + STYLEFORGE_BINARY + " " +
                                              tiny_train() + "--gpus 2 --param-servers 1 --metrics-rank on --dry-run");
  ASSERT_EQ(p.rc, 0) << p.out;
  EXPECT_NE(p.out.find("Number of trainers: 2"), std::string::npos) << p.out;
  EXPECT_NE(p.out.find("[metrics rank 3] dry run; exiting."), std::string::npos) << p.out;
}

TEST(TrainCli, MetricsRankOnNeedsASecondProcess) {
  ScratchDir tmp("train_cli_mron");
  sf::test::CliResult r = sf::test::run_styleforge(tiny_train() + "--outdir " + (tmp / "runs") + " --metrics-rank on");
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  EXPECT_NE(r.out.find("--metrics-rank on needs a second process"), std::string::npos) << r.out;
  sf::test::CliResult n = sf::test::run_styleforge(tiny_train() + "--outdir " + (tmp / "runs") + " --gpus 2 --metrics none --metrics-rank on");
  EXPECT_EQ(n.rc, 2) << n.out;
  EXPECT_NE(n.out.find("--metrics-rank on: there are no metrics"), std::string::npos) << n.out;
  sf::test::CliResult b = sf::test::run_styleforge(tiny_train() + "--outdir " + (tmp / "runs") + " --gpus 2 --metrics-rank maybe");
  EXPECT_EQ(b.rc, 2) << b.out;
  EXPECT_NE(b.out.find("--metrics-rank must be auto, on or none"), std::string::npos) << b.out;
  EXPECT_FALSE(fs::exists(tmp / "runs"));
}
#endif  // STYLEFORGE_BINARY
