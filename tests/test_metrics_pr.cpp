// Precision/recall (the pr metric family): name parsing, and the values against an independent
// implementation of the published definition (tests/pr_definition.py, numpy) on fixed features.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "metrics/registry.h"
#include "metrics/stats.h"
#include "tests/test_data_util.h"

namespace sf {
namespace {

void write_features(const std::string& path, const at::Tensor& x) {
  at::Tensor c = x.to(at::kFloat).contiguous();
  std::ofstream f(path, std::ios::binary);
  const int64_t shape[2] = {c.size(0), c.size(1)};
  f.write(reinterpret_cast<const char*>(shape), sizeof shape);
  f.write(reinterpret_cast<const char*>(c.data_ptr<float>()), static_cast<std::streamsize>(c.numel() * sizeof(float)));
}

}  // namespace

TEST(MetricsPr, NamesFollowTheReference) {
  metrics::MetricSpec s = metrics::parse_metric("pr50k3_full");
  EXPECT_EQ(s.family, "pr");
  EXPECT_EQ(s.num_gen, 50000);
  EXPECT_EQ(s.max_real, 200000);
  EXPECT_TRUE(s.full && s.needs_features);
  EXPECT_EQ(s.params.at("nhood_size").get<int>(), 3);
  EXPECT_EQ(metrics::parse_metric("pr50k5").params.at("nhood_size").get<int>(), 5);
  EXPECT_EQ(metrics::parse_metric("pr50k5").max_real, 50000);
  metrics::MetricSpec small = metrics::parse_metric("pr50k3_full", 48);
  EXPECT_EQ(small.name, "pr48_full");
  EXPECT_EQ(small.num_gen, 48);
  EXPECT_EQ(small.params.at("nhood_size").get<int>(), 3);
  EXPECT_THROW(metrics::parse_metric("pr"), std::invalid_argument);
  EXPECT_THROW(metrics::parse_metric("pr5003x"), std::invalid_argument);
}

TEST(MetricsPr, EqualsTheDefinitionOnFixedFeatures) {
  test::ScratchDir dir("pr");
  at::manual_seed(3);
  // Two overlapping clouds of different spread, so that neither value is 0 or 1.
  struct Case { int64_t nr, ng, f; int k; double shift, scale; };
  for (const Case& c : {Case{300, 250, 16, 3, 0.6, 1.4}, Case{120, 200, 64, 5, 0.05, 1.0}, Case{50, 40, 2048, 3, 0.0, 1.0}}) {
    at::Tensor real = at::randn({c.nr, c.f});
    at::Tensor gen = at::randn({c.ng, c.f}) * c.scale + c.shift;
    auto [precision, recall] = metrics::precision_recall(real, gen, c.k);
    write_features(dir / "real.bin", real);
    write_features(dir / "gen.bin", gen);
    auto r = test::run_shell("/usr/bin/python3 " STYLEFORGE_SOURCE_DIR "/tests/pr_definition.py " + (dir / "real.bin") + " " +
                             (dir / "gen.bin") + " " + std::to_string(c.k));
    ASSERT_EQ(r.rc, 0) << r.out;
    std::istringstream in(r.out);
    double p_ref = -1, r_ref = -1;
    in >> p_ref >> r_ref;
    ASSERT_GE(p_ref, 0.0) << r.out;
    EXPECT_NEAR(precision, p_ref, 1e-6) << "features " << c.nr << "x" << c.f << " k=" << c.k;
    EXPECT_NEAR(recall, r_ref, 1e-6) << "features " << c.nr << "x" << c.f << " k=" << c.k;
    std::printf("pr case %lldx%lld k=%d: precision %.4f recall %.4f\n", (long long)c.nr, (long long)c.f, c.k, precision, recall);
    EXPECT_GT(precision, 0.0);
    EXPECT_LT(precision, 1.0);
    EXPECT_GT(recall, 0.0);
  }
  // The registry computes the same through the family's compute function.
  metrics::FeatureStats real_stats(true, false), gen_stats(true, false);
  at::Tensor real = at::randn({64, 8}), gen = at::randn({64, 8}) + 0.5;
  real_stats.append(real);
  gen_stats.append(gen);
  metrics::MetricSpec s = metrics::parse_metric("pr64_full");
  nlohmann::json out = metrics::metric_family("pr").compute(s, metrics::MetricInputs{real_stats, gen_stats, 0});
  auto [p, rc] = metrics::precision_recall(real, gen, 3);
  EXPECT_EQ(out.at("pr64_full_precision").get<double>(), p);
  EXPECT_EQ(out.at("pr64_full_recall").get<double>(), rc);
  EXPECT_THROW(metrics::precision_recall(real.slice(0, 0, 3), gen, 3), std::invalid_argument);
}

}  // namespace sf
