// `styleforge classify`'s arithmetic (trainer/classify.h): ROC AUC with ties, sensitivity and
// specificity against hand-computed values, stratified and disjoint splits and folds, synthetic
// images only in the training set, option parsing, the summary figure.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "trainer/classify.h"

namespace cls = sf::trainer::classify;

TEST(Classify, AucMannWhitneyWithTies) {
  // Pairs (pos, neg): 0.9 beats both; each 0.5 ties the 0.5 (1/2) and beats 0.1: (2 + 1.5 + 1.5) / 6.
  EXPECT_NEAR(cls::roc_auc({0.9, 0.5, 0.5}, {0.5, 0.1}), 5.0 / 6.0, 1e-12);
  EXPECT_DOUBLE_EQ(cls::roc_auc({0.3, 0.3}, {0.3, 0.3, 0.3}), 0.5);
  EXPECT_DOUBLE_EQ(cls::roc_auc({2, 3}, {0, 1}), 1.0);
  EXPECT_DOUBLE_EQ(cls::roc_auc({0, 1}, {2, 3}), 0.0);
  EXPECT_TRUE(std::isnan(cls::roc_auc({}, {1.0})));
}

TEST(Classify, BinaryMetricsPositiveIsClassOne) {
  // p(class 1) per image; predictions 1 1 0 | 1 0 0 0: TP 2, FN 1, FP 1, TN 3.
  const std::vector<int64_t> y = {1, 1, 1, 0, 0, 0, 0};
  const std::vector<double> p1 = {0.9, 0.6, 0.3, 0.7, 0.2, 0.1, 0.4};
  std::vector<float> probs;
  for (double p : p1) probs.insert(probs.end(), {static_cast<float>(1 - p), static_cast<float>(p)});
  const cls::Metrics m = cls::evaluate_predictions(y, probs, 2);
  EXPECT_NEAR(m.accuracy, 5.0 / 7.0, 1e-12);
  EXPECT_NEAR(m.sensitivity, 2.0 / 3.0, 1e-12);
  EXPECT_NEAR(m.specificity, 3.0 / 4.0, 1e-12);
  // Positives {0.9, 0.6, 0.3} against negatives {0.7, 0.2, 0.1, 0.4}: 4 + 3 + 2 of 12 pairs.
  EXPECT_NEAR(m.auc, 9.0 / 12.0, 1e-6);
}

TEST(Classify, MulticlassMacroAverages) {
  const std::vector<int64_t> y = {0, 1, 2, 2};
  const std::vector<float> probs = {0.7f, 0.2f, 0.1f,   // -> 0 (right)
                                    0.5f, 0.3f, 0.2f,   // -> 0 (wrong)
                                    0.1f, 0.2f, 0.7f,   // -> 2 (right)
                                    0.2f, 0.6f, 0.2f};  // -> 1 (wrong)
  const cls::Metrics m = cls::evaluate_predictions(y, probs, 3);
  EXPECT_DOUBLE_EQ(m.accuracy, 0.5);
  EXPECT_NEAR(m.sensitivity, (1.0 + 0.0 + 0.5) / 3, 1e-12);              // recalls 1/1, 0/1, 1/2
  EXPECT_NEAR(m.specificity, (2.0 / 3 + 2.0 / 3 + 1.0) / 3, 1e-12);      // one-vs-rest TN / (TN + FP)
  EXPECT_NEAR(m.auc, (1.0 + 2.0 / 3 + 3.5 / 4) / 3, 1e-6);               // class 2: one tie at 0.2
}

TEST(Classify, ArgmaxTieTakesLowestClass) {
  const cls::Metrics m = cls::evaluate_predictions({0, 1}, {0.5f, 0.5f, 0.5f, 0.5f}, 2);
  EXPECT_DOUBLE_EQ(m.accuracy, 0.5);
  EXPECT_DOUBLE_EQ(m.sensitivity, 0.0);
  EXPECT_DOUBLE_EQ(m.specificity, 1.0);
  EXPECT_DOUBLE_EQ(m.auc, 0.5);
}

TEST(Classify, MeanStd) {
  const cls::MeanStd a = cls::mean_std({1, 2, 3, 4});
  EXPECT_DOUBLE_EQ(a.mean, 2.5);
  EXPECT_NEAR(a.std, std::sqrt(5.0 / 3.0), 1e-12);
  EXPECT_DOUBLE_EQ(cls::mean_std({0.7}).std, 0.0);
}

namespace {
int64_t count_class(const std::vector<int64_t>& y, const std::vector<int64_t>& idx, int64_t c) {
  return std::count_if(idx.begin(), idx.end(), [&](int64_t i) { return y[static_cast<size_t>(i)] == c; });
}
}  // namespace

TEST(Classify, StratifiedSplitIsDisjointCompleteAndStratified) {
  std::vector<int64_t> y(100, 0);
  for (int i = 0; i < 100; i += 3) y[static_cast<size_t>(i)] = 1;  // 34 of class 1, 66 of class 0
  const cls::Split s = cls::stratified_split(y, 2, 0.15, 0.2, 7);
  std::set<int64_t> all;
  for (const auto* part : {&s.train, &s.val, &s.test}) all.insert(part->begin(), part->end());
  EXPECT_EQ(all.size(), 100u);  // disjoint and complete
  EXPECT_EQ(s.train.size() + s.val.size() + s.test.size(), 100u);
  EXPECT_EQ(count_class(y, s.test, 1), 7);   // round(34 * 0.2)
  EXPECT_EQ(count_class(y, s.test, 0), 13);  // round(66 * 0.2)
  EXPECT_EQ(count_class(y, s.val, 1), 5);    // round(34 * 0.15)
  EXPECT_EQ(count_class(y, s.val, 0), 10);   // round(66 * 0.15)
  // Fixed by the seed; another seed draws other images.
  EXPECT_EQ(cls::stratified_split(y, 2, 0.15, 0.2, 7).test, s.test);
  EXPECT_NE(cls::stratified_split(y, 2, 0.15, 0.2, 8).test, s.test);
  EXPECT_THROW(cls::stratified_split(y, 2, 0.5, 0.5, 0), std::invalid_argument);
  EXPECT_THROW(cls::stratified_split(y, 2, 0.1, 0.0, 0), std::invalid_argument);
  EXPECT_THROW(cls::stratified_split({0, 1, 2}, 2, 0.1, 0.3, 0), std::invalid_argument);  // label out of range
}

TEST(Classify, StratifiedFoldsCoverEveryImageOnce) {
  std::vector<int64_t> y(53, 0);
  for (int i = 0; i < 53; i += 4) y[static_cast<size_t>(i)] = 1;  // 14 of class 1
  const auto folds = cls::stratified_folds(y, 2, 5, 0.1, 3);
  ASSERT_EQ(folds.size(), 5u);
  std::vector<int> in_test(53, 0);
  for (const auto& f : folds) {
    std::set<int64_t> all;
    for (const auto* part : {&f.train, &f.val, &f.test}) all.insert(part->begin(), part->end());
    EXPECT_EQ(all.size(), 53u);
    EXPECT_EQ(f.train.size() + f.val.size() + f.test.size(), 53u);
    for (int64_t i : f.test) ++in_test[static_cast<size_t>(i)];
    const int64_t t1 = count_class(y, f.test, 1), t0 = count_class(y, f.test, 0);
    EXPECT_TRUE(t1 == 2 || t1 == 3) << t1;   // 14 / 5
    EXPECT_TRUE(t0 == 7 || t0 == 8) << t0;   // 39 / 5
    EXPECT_GE(count_class(y, f.val, 1), 1);
  }
  for (int c : in_test) EXPECT_EQ(c, 1);
  EXPECT_THROW(cls::stratified_folds(y, 2, 1, 0.1, 0), std::invalid_argument);
  EXPECT_THROW(cls::stratified_folds(y, 2, 15, 0.1, 0), std::invalid_argument);  // class 1 has 14
}

TEST(Classify, SyntheticImagesOnlyInTraining) {
  std::vector<int64_t> y(40, 0);
  for (int i = 0; i < 40; i += 2) y[static_cast<size_t>(i)] = 1;
  const cls::Split real = cls::stratified_split(y, 2, 0.2, 0.25, 1);
  const cls::Split mixed = cls::with_synthetic(real, 40, 12);
  EXPECT_EQ(mixed.val, real.val);
  EXPECT_EQ(mixed.test, real.test);
  EXPECT_EQ(mixed.train.size(), real.train.size() + 12);
  for (int64_t i = 40; i < 52; ++i) EXPECT_EQ(std::count(mixed.train.begin(), mixed.train.end(), i), 1);
  for (int64_t i : mixed.val) EXPECT_LT(i, 40);
  for (int64_t i : mixed.test) EXPECT_LT(i, 40);
  for (const auto& f : cls::stratified_folds(y, 2, 4, 0.1, 0)) {
    const cls::Split m = cls::with_synthetic(f, 40, 5);
    for (int64_t i : m.val) EXPECT_LT(i, 40);
    for (int64_t i : m.test) EXPECT_LT(i, 40);
  }
}

TEST(Classify, OptionParsing) {
  EXPECT_TRUE(cls::parse_augment("none").empty());
  EXPECT_EQ(cls::parse_augment("flips,rot90,intensity,flips"),
            (std::vector<std::string>{"flips", "rot90", "intensity"}));
  EXPECT_THROW(cls::parse_augment("flips,blur"), std::invalid_argument);
  auto one = cls::parse_synthetic_networks("run/net.h5");
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].first, -1);
  auto two = cls::parse_synthetic_networks("class1=b.h5,class0=a.h5");
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[0], (std::pair<int, std::string>{0, "a.h5"}));
  EXPECT_EQ(two[1], (std::pair<int, std::string>{1, "b.h5"}));
  EXPECT_THROW(cls::parse_synthetic_networks("class0=a.h5,classX=b.h5"), std::invalid_argument);
  EXPECT_THROW(cls::parse_synthetic_networks("class0=a.h5,class0=b.h5"), std::invalid_argument);
  EXPECT_THROW(cls::parse_synthetic_networks("class1="), std::invalid_argument);
}

TEST(Classify, SummaryPlotDrawsBars) {
  nlohmann::json r = {{"settings", {{"seeds", {0, 1}}}}, {"arms", nlohmann::json::array()}};
  for (const char* name : {"real", "real+synthetic"}) {
    nlohmann::json s;
    for (const char* k : {"accuracy", "sensitivity", "specificity", "auc"}) s[k] = {{"mean", 0.8}, {"std", 0.05}};
    r["arms"].push_back({{"name", name}, {"summary", s}});
  }
  const sf::data::Image img = cls::render_summary_plot(r);
  ASSERT_GT(img.width, 0);
  // The bars are drawn in the palette's first two colours: count pixels that are neither grey nor white.
  int64_t coloured = 0;
  for (size_t i = 0; i + 2 < img.pixels.size(); i += static_cast<size_t>(img.channels)) {
    const int r0 = img.pixels[i], g0 = img.pixels[i + 1], b0 = img.pixels[i + 2];
    if (std::max({r0, g0, b0}) - std::min({r0, g0, b0}) > 60) ++coloured;
  }
  EXPECT_GT(coloured, 8 * 40 * 100);  // 8 bars, each tens of pixels wide and hundreds high
}
