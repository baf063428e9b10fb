// Metrics: FID/KID arithmetic, feature statistics, the real-statistics cache, detector lookup,
// metric names, and `styleforge metrics` end to end on a tiny pack and checkpoint.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>

#include "data/bench.h"
#include "data/import.h"
#include "metrics/detector.h"
#include "metrics/metrics.h"
#include "metrics/registry.h"
#include "metrics/stats.h"
#include "tests/test_data_util.h"
#include "trainer/checkpoint.h"
#include "trainer/networks.h"

namespace fs = std::filesystem;
using namespace sf;
using sf::test::fixture;
using sf::test::ScratchDir;

namespace {

at::Tensor mat(std::initializer_list<double> v, int64_t rows) {
  std::vector<double> d(v);
  return at::tensor(d, at::kDouble).reshape({rows, -1});
}

// Sets (or clears) an environment variable for the scope, restoring the old value.
struct EnvGuard {
  std::string name;
  bool had = false;
  std::string old;
  EnvGuard(const char* n, const char* value) : name(n) {
    if (const char* e = std::getenv(n)) {
      had = true;
      old = e;
    }
    value ? setenv(n, value, 1) : unsetenv(n);
  }
  ~EnvGuard() { had ? setenv(name.c_str(), old.c_str(), 1) : unsetenv(name.c_str()); }
};

std::string standin() { return fixture("detector_standin.pt"); }

const std::string& tiny_pack() { return test::tiny_pack(3); }

trainer::GeneratorConfig tiny_g() {
  trainer::GeneratorConfig g;
  g.z_dim = 16;
  g.w_dim = 16;
  g.img_resolution = 16;
  g.img_channels = 1;
  g.mapping_layers = 2;
  g.channel_base = 128;
  g.channel_max = 16;
  return g;
}

// A network-only checkpoint of freshly initialised networks.
std::string tiny_checkpoint(const std::string& path) {
  trainer::GeneratorConfig gc = tiny_g();
  trainer::DiscriminatorConfig dc;
  dc.img_resolution = 16;
  dc.img_channels = 1;
  dc.channel_base = 128;
  dc.channel_max = 16;
  dc.mbstd_group_size = 2;
  trainer::Generator G(gc, at::detail::createCPUGenerator(1)), G_ema(gc, at::detail::createCPUGenerator(1));
  trainer::Discriminator D(dc, at::detail::createCPUGenerator(2));
  trainer::CheckpointWrite w;
  w.G = &G;
  w.D = &D;
  w.G_ema = &G_ema;
  trainer::write_checkpoint(path, w);
  return path;
}

std::vector<std::string> files_in(const fs::path& dir) {
  std::vector<std::string> out;
  if (fs::exists(dir))
    for (const auto& e : fs::recursive_directory_iterator(dir))
      if (e.is_regular_file()) out.push_back(e.path().string());
  return out;
}

}  // namespace

// ---- arithmetic ---------------------------------------------------------------------------------

TEST(MetricsMath, FidOfIdenticalStatisticsIsZero) {
  at::Generator g = at::detail::createCPUGenerator(5);
  metrics::FeatureStats s(false, true);
  s.append(at::randn({300, 24}, g, at::kFloat));
  auto [mu, sigma] = s.mean_cov();
  EXPECT_NEAR(metrics::fid(mu, sigma, mu, sigma), 0.0, 1e-9);
}

TEST(MetricsMath, FidTwoDimensionalByHand) {
  // Diagonal, commuting: |(1,2)|² + tr(diag(1,4) + diag(4,1)) − 2 tr(diag(2,2)) = 5 + 10 − 8 = 7.
  at::Tensor mu1 = at::zeros({2}, at::kDouble), mu2 = at::tensor(std::vector<double>{1, 2}, at::kDouble);
  EXPECT_NEAR(metrics::fid(mu1, mat({1, 0, 0, 4}, 2), mu2, mat({4, 0, 0, 1}, 2)), 7.0, 1e-12);
  // Non-commuting: s1 = [[2,1],[1,2]], s2 = diag(1,3); s1 s2 = [[2,3],[1,6]] has eigenvalues 4 ± √7.
  const double tr_sqrt = std::sqrt(4 + std::sqrt(7.0)) + std::sqrt(4 - std::sqrt(7.0));
  EXPECT_NEAR(metrics::fid(mu1, mat({2, 1, 1, 2}, 2), mu1, mat({1, 0, 0, 3}, 2)), 4 + 4 - 2 * tr_sqrt, 1e-12);
}

TEST(MetricsMath, SqrtmOfKnownMatrices) {
  // [[2,1],[1,2]]² = [[5,4],[4,5]].
  at::Tensor r = metrics::sqrtm_psd(mat({5, 4, 4, 5}, 2));
  EXPECT_LT((r - mat({2, 1, 1, 2}, 2)).abs().max().item<double>(), 1e-12);
  // A rank-deficient PSD matrix: rounding below zero counts as zero (the square roots of the
  // ~1e-16 eigenvalues that rounding leaves above zero add ~1e-8, as in any sqrtm algorithm).
  at::Tensor v = mat({1, 2, 3}, 3);
  at::Tensor p = at::matmul(v, v.t());  // eigenvalues 14, 0, 0
  EXPECT_NEAR(metrics::trace_sqrtm_product(p, at::eye(3, at::kDouble)), std::sqrt(14.0), 1e-6);
  // Random PSD pair: the trace of the square root of the product equals the sum of sqrt(eig(s1 s2)).
  at::Generator g = at::detail::createCPUGenerator(7);
  at::Tensor a = at::randn({6, 6}, g, at::kDouble), b = at::randn({6, 6}, g, at::kDouble);
  at::Tensor s1 = at::matmul(a, a.t()), s2 = at::matmul(b, b.t());
  at::Tensor ev = at::real(at::linalg_eigvals(at::matmul(s1, s2)));
  EXPECT_NEAR(metrics::trace_sqrtm_product(s1, s2), ev.clamp_min(0).sqrt().sum().item<double>(), 1e-9);
}

TEST(MetricsMath, FeatureStatsArePopulationMomentsInFloat64) {
  metrics::FeatureStats s(true, true, /*max_items=*/5);
  s.append(at::tensor(std::vector<float>{1, 2, 3, 4, 5, 6}, at::kFloat).reshape({3, 2}));
  s.append(at::tensor(std::vector<float>{7, 8, 9, 10, 11, 12}, at::kFloat).reshape({3, 2}));  // one row dropped
  EXPECT_TRUE(s.is_full());
  EXPECT_EQ(s.num_items(), 5);
  EXPECT_EQ(s.all().size(0), 5);
  auto [mu, cov] = s.mean_cov();
  EXPECT_EQ(mu.scalar_type(), at::kDouble);
  EXPECT_NEAR(mu[0].item<double>(), 5.0, 1e-15);
  EXPECT_NEAR(cov[0][0].item<double>(), 8.0, 1e-12);  // population variance of 1,3,5,7,9
  EXPECT_NEAR(cov[0][1].item<double>(), 8.0, 1e-12);
}

TEST(MetricsMath, KidIsUnbiasedAndDeterministic) {
  at::Generator g = at::detail::createCPUGenerator(11);
  at::Tensor real = at::randn({400, 8}, g, at::kFloat), same = at::randn({400, 8}, g, at::kFloat);
  at::Tensor shifted = at::randn({400, 8}, g, at::kFloat) + 0.5;
  double k_same = metrics::kid(same, real, 20, 100, 0), k_shift = metrics::kid(shifted, real, 20, 100, 0);
  EXPECT_GT(k_shift, 0.05);
  EXPECT_LT(std::abs(k_same), 0.1 * k_shift);  // unbiased: ~0 for the same distribution (may be negative)
  EXPECT_EQ(metrics::kid(shifted, real, 20, 100, 0), k_shift);
  EXPECT_NE(metrics::kid(shifted, real, 20, 100, 1), k_shift);
  // One subset of every row: a permutation, so the seed does not matter.
  EXPECT_NEAR(metrics::kid(shifted, real, 1, 400, 0), metrics::kid(shifted, real, 1, 400, 9), 1e-12);
}

// ---- names --------------------------------------------------------------------------------------

TEST(MetricsNames, ParseAndRename) {
  metrics::MetricSpec f = metrics::parse_metric("fid50k_full");
  EXPECT_EQ(f.family, "fid");
  EXPECT_EQ(f.num_gen, 50000);
  EXPECT_EQ(f.max_real, -1);
  metrics::MetricSpec k = metrics::parse_metric("kid10k");
  EXPECT_EQ(k.num_gen, 10000);
  EXPECT_EQ(k.max_real, 10000);
  EXPECT_FALSE(k.full);
  EXPECT_EQ(metrics::parse_metric("kid50k_full", 64).name, "kid64_full");
  EXPECT_EQ(metrics::parse_metric("fid500_full").num_gen, 500);
  EXPECT_THROW(metrics::parse_metric("fidd50k"), std::invalid_argument);
  EXPECT_NE(metrics::check_metric_names({"fid50k_full", "is50k"}).find("unknown metric 'is50k'"), std::string::npos);
  EXPECT_EQ(metrics::check_metric_names({"fid50k_full", "kid50k_full"}), "");
}

// ---- detector and cache -------------------------------------------------------------------------

TEST(MetricsDetector, MissingDetectorTurnsMetricsOffWithOneMessage) {
  ScratchDir tmp("metrics_nodet");
  EnvGuard env("STYLEFORGE_DETECTOR", nullptr);
  std::vector<std::string> logged;
  metrics::MetricsOptions o;
  o.pack = tiny_pack();
  o.metrics = {"fid50k_full"};
  o.cache_dir = tmp / "cache";
  o.log = [&](const std::string& s) { logged.push_back(s); };
  metrics::MetricsEvaluator ev(o);
  EXPECT_FALSE(ev.enabled());
  ASSERT_EQ(logged.size(), 1u);
  EXPECT_EQ(logged[0], ev.status());
  EXPECT_NE(ev.status().find("metrics off"), std::string::npos);
  EXPECT_NE(ev.status().find((fs::path(tmp / "cache") / "inception-2015-12-05.pt").string()), std::string::npos);
  EXPECT_NE(ev.status().find("--detector"), std::string::npos);
  EXPECT_TRUE(ev.evaluate("/nonexistent/checkpoint.h5").empty());  // off: nothing evaluated, nothing thrown

  // A file that is not TorchScript: off too, naming the file.
  std::ofstream(tmp / "bad.pt") << "not a model";
  o.detector = tmp / "bad.pt";
  metrics::MetricsEvaluator bad(o);
  EXPECT_FALSE(bad.enabled());
  EXPECT_NE(bad.status().find(tmp / "bad.pt"), std::string::npos);

  // Found through the environment variable and through the cache folder.
  EnvGuard env2("STYLEFORGE_DETECTOR", standin().c_str());
  EXPECT_TRUE(metrics::locate_detector("", tmp / "cache").found);
  unsetenv("STYLEFORGE_DETECTOR");
  fs::create_directories(tmp / "cache");
  fs::copy_file(standin(), tmp / "cache/inception-2015-12-05.pt");
  metrics::DetectorLocation loc = metrics::locate_detector("", tmp / "cache");
  EXPECT_TRUE(loc.found);
  EXPECT_EQ(loc.source, "cache");
}

TEST(MetricsDetector, StandinFeaturesAndGrayInput) {
  metrics::Detector det(standin());
  EXPECT_FALSE(det.is_standard());
  EXPECT_EQ(det.name(), "detector_standin");
  at::Generator g = at::detail::createCPUGenerator(3);
  at::Tensor gray = at::randint(0, 256, {2, 1, 16, 16}, g, at::kByte);
  at::Tensor f1 = det.features(gray), f3 = det.features(gray.repeat({1, 3, 1, 1}));
  EXPECT_EQ(f1.dim(), 2);
  EXPECT_EQ(f1.size(0), 2);
  EXPECT_TRUE(at::equal(f1, f3));
  // Generator output to uint8 as the reference: img * 127.5 + 128, clamped, truncated.
  at::Tensor img = at::tensor(std::vector<float>{-2.f, -1.f, 0.f, 0.999f, 1.f}, at::kFloat);
  at::Tensor u = metrics::to_uint8_images(img);
  EXPECT_EQ(u[0].item<uint8_t>(), 0);
  EXPECT_EQ(u[1].item<uint8_t>(), 0);
  EXPECT_EQ(u[2].item<uint8_t>(), 128);
  EXPECT_EQ(u[3].item<uint8_t>(), 255);
  EXPECT_EQ(u[4].item<uint8_t>(), 255);
}

TEST(MetricsCache, WriteReadHitAndRecoveryFromABadFile) {
  ScratchDir tmp("metrics_cache");
  std::vector<std::string> logged;
  metrics::MetricsOptions o;
  o.pack = tiny_pack();
  o.metrics = {"fid50k_full", "kid50k_full"};
  o.detector = standin();
  o.cache_dir = tmp / "cache";
  o.batch = 8;
  o.log = [&](const std::string& s) { logged.push_back(s); };
  auto count = [&](const std::string& what) {
    return std::count_if(logged.begin(), logged.end(), [&](const std::string& s) { return s.rfind(what, 0) == 0; });
  };
  {
    metrics::MetricsEvaluator ev(o);
    ASSERT_TRUE(ev.enabled());
    EXPECT_EQ(ev.metric_names(), (std::vector<std::string>{"fid50k_full@detector_standin", "kid50k_full@detector_standin"}));
    ev.prepare();
  }
  EXPECT_EQ(count("cached real statistics: "), 1);  // fid and kid share one set of reals
  std::vector<std::string> files = files_in(tmp / "cache");
  ASSERT_EQ(files.size(), 1u);  // no temporary left behind
  EXPECT_EQ(fs::path(files[0]).extension(), ".h5");
  metrics::FeatureStats first = metrics::FeatureStats::load(files[0]);
  EXPECT_EQ(first.num_items(), 24);
  EXPECT_TRUE(first.captures_all());

  logged.clear();
  {
    metrics::MetricsEvaluator ev(o);
    ev.prepare();
  }
  ASSERT_EQ(count("cache hit: "), 1);
  EXPECT_EQ(count("cached real statistics: "), 0);

  // A damaged file (e.g. a crash of another writer without the rename) is recomputed and replaced.
  fs::resize_file(files[0], 100);
  logged.clear();
  {
    metrics::MetricsEvaluator ev(o);
    ev.prepare();
  }
  EXPECT_EQ(count("cache: cannot read "), 1);
  EXPECT_EQ(count("cached real statistics: "), 1);
  metrics::FeatureStats again = metrics::FeatureStats::load(files[0]);
  EXPECT_TRUE(at::equal(again.mean_cov().second, first.mean_cov().second));
  EXPECT_EQ(files_in(tmp / "cache").size(), 1u);

  // Other options (x-flipped reals for the legacy metric) are another entry.
  o.metrics = {"fid24"};
  o.mirror = true;
  logged.clear();
  {
    metrics::MetricsEvaluator ev(o);
    ev.prepare();
  }
  EXPECT_EQ(count("cached real statistics: "), 1);
  EXPECT_EQ(files_in(tmp / "cache").size(), 2u);
}

TEST(MetricsEvaluate, FlatSnapshotEqualsCheckpointAndJsonlLine) {
  ScratchDir tmp("metrics_eval");
  const std::string ckpt = tiny_checkpoint(tmp / "network-snapshot-000000.h5");
  metrics::MetricsOptions o;
  o.pack = tiny_pack();
  o.metrics = {"fid50k_full", "kid50k_full"};
  o.num_gen = 32;
  o.detector = standin();
  o.cache_dir = tmp / "cache";
  o.batch = 16;
  o.log = [](const std::string&) {};
  metrics::MetricsEvaluator ev(o);
  std::vector<nlohmann::json> a = ev.evaluate(ckpt);
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0]["metric"], "fid32_full@detector_standin");
  const double fid = a[0]["results"]["fid32_full@detector_standin"].get<double>();
  EXPECT_TRUE(std::isfinite(fid));
  EXPECT_GT(fid, 0);
  EXPECT_TRUE(std::isfinite(a[1]["results"]["kid32_full@detector_standin"].get<double>()));

  // The same G_ema as the trainer hands it over: one flat float32 buffer in registration order.
  trainer::Generator G(tiny_g());
  trainer::load_networks(ckpt, nullptr, nullptr, &G);
  std::vector<std::string> keys;
  std::vector<float> flat;
  for (const auto& e : G.state().entries()) {
    at::Tensor t = e.tensor.detach().to(at::kFloat).contiguous();
    flat.insert(flat.end(), t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
    keys.push_back(e.name);
  }
  std::vector<nlohmann::json> b = ev.evaluate_flat(tiny_g().to_json(), keys, flat.data(), flat.size());
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b[0]["results"], a[0]["results"]);
  EXPECT_EQ(b[1]["results"], a[1]["results"]);
  EXPECT_THROW(ev.evaluate_flat(tiny_g().to_json(), keys, flat.data(), flat.size() - 1), std::runtime_error);

  // The reference's jsonl line, appended to metric-<name>.jsonl in the run folder.
  std::string line = metrics::report_metric(a[0], tmp.path.string(), ckpt);
  metrics::report_metric(a[0], tmp.path.string(), ckpt);
  std::ifstream in(tmp / "metric-fid32_full@detector_standin.jsonl");
  std::string l1, l2;
  ASSERT_TRUE(std::getline(in, l1) && std::getline(in, l2));
  EXPECT_EQ(l1, line);
  nlohmann::json j = nlohmann::json::parse(l1);
  for (const char* k : {"results", "metric", "total_time", "total_time_str", "num_gpus", "snapshot_pkl", "timestamp"})
    EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_EQ(j["snapshot_pkl"], "network-snapshot-000000.h5");
  EXPECT_EQ(j["num_gpus"], 1);
  EXPECT_EQ(line.rfind("{\"results\":", 0), 0u);  // the reference's key order
}

TEST(MetricsEvaluate, AnyChannelCountIsMeasuredPerChannel) {
  // A 4-channel pack whose channels all equal the gray images of a 1-channel pack, and a 4-channel
  // generator whose ToRGB rows all equal the 1-channel one's: every channel is the 1-channel
  // image, so each per-channel FID/KID, and their mean, equal the 1-channel values.
  ScratchDir tmp("metrics_nchan");
  const std::string gray = tiny_pack(), four = tmp / "four.h5";
  {
    data::PackReader src(gray);
    data::PackWriter::Options po;
    po.channel_names = {"t1", "t1ce", "t2", "flair"};
    data::PackWriter w(four, po);
    const size_t plane = src.info().image_bytes();
    std::vector<uint8_t> g(plane), img(4 * plane);
    for (int64_t i = 0; i < src.size(); ++i) {
      src.read_image(i, g.data());
      for (int k = 0; k < 4; ++k) std::copy(g.begin(), g.end(), img.begin() + static_cast<std::ptrdiff_t>(k * plane));
      w.add(img.data(), 4, src.info().resolution, "img" + std::to_string(i), data::Label{});
    }
    w.commit();
  }
  trainer::Generator G1(tiny_g(), at::detail::createCPUGenerator(6));
  trainer::GeneratorConfig c4 = tiny_g();
  c4.img_channels = 4;
  trainer::Generator G4(c4);
  auto flat_of = [&](trainer::Generator& G, std::vector<std::string>& keys) {
    std::vector<float> flat;
    keys.clear();
    for (const auto& e : G.state().entries()) {
      at::Tensor t = G1.state().at(e.name).detach().expand_as(e.tensor).to(at::kFloat).contiguous();
      flat.insert(flat.end(), t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
      keys.push_back(e.name);
    }
    return flat;
  };
  auto eval = [&](const std::string& pack, trainer::Generator& G, const trainer::GeneratorConfig& cfg) {
    metrics::MetricsOptions o;
    o.pack = pack;
    o.metrics = {"fid50k_full", "kid50k_full"};
    o.num_gen = 32;
    o.detector = standin();
    o.cache_dir = tmp / "cache";
    o.batch = 16;
    o.log = [](const std::string&) {};
    metrics::MetricsEvaluator ev(o);
    std::vector<std::string> keys;
    std::vector<float> flat = flat_of(G, keys);
    return ev.evaluate_flat(cfg.to_json(), keys, flat.data(), flat.size());
  };
  std::vector<nlohmann::json> one = eval(gray, G1, tiny_g());
  std::vector<nlohmann::json> many = eval(four, G4, c4);
  ASSERT_EQ(one.size(), 2u);
  ASSERT_EQ(many.size(), 2u);
  EXPECT_FALSE(one[0].contains("per_channel"));
  for (size_t m = 0; m < 2; ++m) {
    const std::string name = one[m]["metric"].get<std::string>();
    EXPECT_EQ(many[m]["metric"], name);
    const double want = one[m]["results"][name].get<double>();
    EXPECT_TRUE(std::isfinite(want));
    EXPECT_NE(want, 0);
    const double mean = many[m]["results"][name].get<double>();
    EXPECT_NEAR(mean, want, 1e-6 * std::abs(want) + 1e-9) << name;
    ASSERT_TRUE(many[m].contains("per_channel")) << many[m];
    double sum = 0;
    for (const char* ch : {"t1", "t1ce", "t2", "flair"}) {
      const double v = many[m]["per_channel"][ch][name].get<double>();
      EXPECT_NEAR(v, want, 1e-6 * std::abs(want) + 1e-9) << name << " " << ch;
      sum += v;
    }
    EXPECT_NEAR(mean, sum / 4, 1e-12 * std::abs(sum) + 1e-15);
  }
  // The real-statistics cache: one file per channel of the 4-channel pack, besides the gray one.
  int cached = 0;
  for (const auto& f : files_in(fs::path(tmp / "cache") / "metrics")) cached += fs::path(f).filename().string().rfind("four-", 0) == 0;
  EXPECT_EQ(cached, 4);
  // The detector itself takes 1 or 3 channels only.
  metrics::Detector det(standin());
  EXPECT_THROW(det.features(at::zeros({1, 4, 16, 16}, at::kByte)), std::invalid_argument);
}

TEST(MetricsEvaluate, ConditionalGeneratorUsesDatasetLabels) {
  ScratchDir tmp("metrics_cond");
  data::ImportOptions io;
  io.source = fixture("tfr_rgb16_cond");
  io.dest = tmp / "cond.h5";
  data::PackInfo info = data::pack_dataset(io).info;
  ASSERT_GT(info.label_dim, 0);
  trainer::GeneratorConfig gc = tiny_g();
  gc.img_channels = 3;
  gc.c_dim = info.label_dim;
  trainer::Generator G(gc, at::detail::createCPUGenerator(4));
  std::vector<std::string> keys;
  std::vector<float> flat;
  for (const auto& e : G.state().entries()) {
    at::Tensor t = e.tensor.detach().to(at::kFloat).contiguous();
    flat.insert(flat.end(), t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
    keys.push_back(e.name);
  }
  metrics::MetricsOptions o;
  o.pack = io.dest;
  o.metrics = {"fid16_full", "kid16"};
  o.detector = standin();
  o.use_cache = false;
  o.batch = 8;
  o.log = [](const std::string&) {};
  metrics::MetricsEvaluator ev(o);
  std::vector<nlohmann::json> r = ev.evaluate_flat(gc.to_json(), keys, flat.data(), flat.size());
  ASSERT_EQ(r.size(), 2u);
  EXPECT_TRUE(std::isfinite(r[0]["results"]["fid16_full@detector_standin"].get<double>()));
  EXPECT_TRUE(std::isfinite(r[1]["results"]["kid16@detector_standin"].get<double>()));
  EXPECT_TRUE(files_in(tmp / "cache").empty());
  // A generator that does not fit the pack is refused with a message naming both.
  trainer::GeneratorConfig gray = tiny_g();
  try {
    ev.evaluate_flat(gray.to_json(), {}, nullptr, 0);
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("1x16x16 images but the pack"), std::string::npos) << e.what();
  }
}

// ---- the offline command ------------------------------------------------------------------------

#ifdef STYLEFORGE_BINARY
namespace {
using sf::test::run_styleforge;
std::string result_of(const std::string& out, const std::string& name) {
  std::smatch m;
  std::regex re("\"" + name + "\":([-+0-9.eE]+)");
  return std::regex_search(out, m, re) ? m[1].str() : "";
}
}  // namespace

TEST(MetricsCli, OfflineCommandReproducesAndHitsTheCache) {
  ScratchDir tmp("metrics_cli");
  const std::string ckpt = tiny_checkpoint(tmp / "net.h5");
  const std::string args = "metrics --network " + ckpt + " --data " + tiny_pack() +
                           " --metrics fid50k_full,kid50k_full --num-gen 48 --batch 16 --threads 1 --detector " +
                           standin() + " --cache-dir " + (tmp / "cache") + " --run-dir " + tmp.path.string();
  sf::test::CliResult first = run_styleforge(args);
  ASSERT_EQ(first.rc, 0) << first.out;
  EXPECT_NE(first.out.find("cached real statistics: "), std::string::npos) << first.out;
  EXPECT_NE(first.out.find("generated"), std::string::npos) << first.out;  // progress bar
  sf::test::CliResult second = run_styleforge(args);
  ASSERT_EQ(second.rc, 0) << second.out;
  EXPECT_NE(second.out.find("cache hit: " + (tmp / "cache")), std::string::npos) << second.out;
  for (const char* n : {"fid48_full@detector_standin", "kid48_full@detector_standin"}) {
    EXPECT_NE(result_of(first.out, n), "") << first.out;
    EXPECT_EQ(result_of(first.out, n), result_of(second.out, n));
  }
  std::ifstream jl(tmp / "metric-kid48_full@detector_standin.jsonl");
  int lines = 0;
  for (std::string l; std::getline(jl, l);) ++lines;
  EXPECT_EQ(lines, 2);

  // Without any detector: exit 1 with the message saying where to put the file.
  sf::test::CliResult off = run_styleforge("metrics --network " + ckpt + " --data " + tiny_pack() + " --cache-dir " + (tmp / "empty") +
                              " --detector " + (tmp / "missing.pt"));
  EXPECT_EQ(off.rc, 1);
  EXPECT_NE(off.out.find("inception-2015-12-05.pt"), std::string::npos) << off.out;
  sf::test::CliResult bad = run_styleforge("metrics --network " + ckpt + " --metrics fid50k_fool");
  EXPECT_EQ(bad.rc, 2) << bad.out;
}
#endif  // STYLEFORGE_BINARY
