// Top-k generator training (train --topk): the schedule of k, the per-fake weights (only the k
// fakes D scores highest carry G's loss), and a whole step against the plain loss when k = batch.
// The 1 rank x B = 2 ranks x B/2 check is MpiEquivalence.TopkIsOverTheGlobalBatch (tests/test_mpi.cpp).
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>

#include "sharding/communicator.h"
#include "trainer/train_options.h"
#include "trainer/training_step.h"

namespace sf {
namespace {

trainer::TrainOptions topk_options() {
  trainer::TrainOptions o;
  o.dataset_name = "topk";
  o.batch_override = 8;
  o.cbase_override = 256;
  o.cmax_override = 32;
  o.mbstd_override = 1;
  o.aug = "noaug";
  o.resolve(16, 1, 0, 64, 1);
  o.style_mixing_prob = 0;
  o.noise_mode = "const";
  return o;
}

}  // namespace

TEST(Topk, KFollowsTheSchedule) {
  // k = max(floor(gamma^epoch * B), floor(min * B)), at least 1, at most B.
  for (int64_t e = 0; e < 200; ++e) {
    const int64_t want = std::max<int64_t>(static_cast<int64_t>(std::floor(std::pow(0.99, double(e)) * 64)), 32);
    EXPECT_EQ(trainer::topk_count(0.99, 0.5, 64, e), want) << "epoch " << e;
  }
  EXPECT_EQ(trainer::topk_count(0.99, 0.5, 64, 0), 64);   // starts at the batch size
  EXPECT_EQ(trainer::topk_count(0.99, 0.5, 64, 10), 57);  // 0.99^10 * 64 = 57.88
  EXPECT_EQ(trainer::topk_count(0.99, 0.5, 64, 1000), 32);  // the floor
  EXPECT_EQ(trainer::topk_count(0.5, 0.01, 8, 20), 1);     // never below one fake
  EXPECT_EQ(trainer::topk_count(1.0, 0.5, 8, 50), 8);      // gamma 1: no annealing
  // Non-increasing over epochs.
  for (int64_t e = 1; e < 500; ++e) EXPECT_LE(trainer::topk_count(0.97, 0.3, 32, e), trainer::topk_count(0.97, 0.3, 32, e - 1));
}

TEST(Topk, GradientComesOnlyFromTheSelectedFakes) {
  trainer::TrainOptions o = topk_options();
  o.topk = true;
  sharding::LocalCommunicator comm;
  trainer::TrainingStep step(o, comm, {});
  at::Tensor logits = at::tensor({0.3f, -1.2f, 2.5f, 0.9f, -0.1f, 2.5f, -3.0f, 1.7f});
  const int64_t k = 3;
  at::Tensor w = step.topk_weights(logits, k);
  // The three highest: 2.5 (index 2), 2.5 (index 5; ties in index order), 1.7 (index 7).
  const std::vector<int64_t> selected = {2, 5, 7};
  for (int64_t i = 0; i < 8; ++i) {
    const bool sel = std::find(selected.begin(), selected.end(), i) != selected.end();
    EXPECT_FLOAT_EQ(w[i].item<float>(), sel ? 1.0f / k : 0.0f) << "fake " << i;
  }
  // d loss / d logit: -sigmoid(-l) / k for the selected fakes, exactly 0 for the others.
  at::Tensor l = logits.clone().requires_grad_(true);
  at::Tensor loss = (at::softplus(-l) * w).sum();
  at::Tensor g = torch::autograd::grad({loss}, {l})[0];
  for (int64_t i = 0; i < 8; ++i) {
    const bool sel = std::find(selected.begin(), selected.end(), i) != selected.end();
    const float want = sel ? -1.0f / (1.0f + std::exp(logits[i].item<float>())) / k : 0.0f;
    EXPECT_FLOAT_EQ(g[i].item<float>(), want) << "fake " << i;
  }
  EXPECT_EQ(w.sum().item<float>() * k, static_cast<float>(k));
}

TEST(Topk, FullKIsThePlainLossAndSmallerKChangesTheStep) {
  // A whole training iteration: k = B (epoch 0) gives the plain mean loss's gradients (up to the
  // summation order); a later epoch (k < B) gives other gradients for G.
  at::manual_seed(5);
  at::Tensor reals = at::randint(0, 256, {8, 1, 16, 16}, at::kByte);
  auto run = [&](bool topk, int64_t cur_nimg) {
    trainer::TrainOptions o = topk_options();
    o.topk = topk;
    o.topk_gamma = 0.9;
    o.topk_min = 0.25;
    o.G_reg_interval = 0;  // Gboth/Dboth: G's gradients of the main loss only (pl_weight 0 below)
    o.pl_weight = 0;
    sharding::LocalCommunicator comm;
    trainer::TrainingStep step(o, comm, {});
    trainer::TrainCounters c = step.counters_for_checkpoint();
    c.cur_nimg = cur_nimg;
    step.restore(c);
    step.iteration(reals, at::Tensor());
    std::vector<float> params;
    for (const auto& e : step.G().state().entries()) {
      at::Tensor t = e.tensor.detach().to(at::kFloat).contiguous();
      params.insert(params.end(), t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
    }
    return params;
  };
  std::vector<float> plain = run(false, 640), full = run(true, 0), topk = run(true, 640);  // epoch 10: k = 2
  ASSERT_EQ(plain.size(), full.size());
  double d_full = 0, d_topk = 0;
  for (size_t i = 0; i < plain.size(); ++i) {
    d_full = std::max(d_full, std::abs(double(plain[i]) - full[i]));
    d_topk = std::max(d_topk, std::abs(double(plain[i]) - topk[i]));
  }
  EXPECT_LT(d_full, 1e-6) << "k = batch must be the plain loss";
  EXPECT_GT(d_topk, 1e-5) << "k = 2 of 8 must change G's step";
  EXPECT_EQ(trainer::topk_count(0.9, 0.25, 8, 10), 2);
}

}  // namespace sf
