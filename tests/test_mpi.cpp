// Multi-rank tests (ctest label `mpi`: mpirun -np 4 styleforge_tests --gtest_filter='Mpi*').
//
// Equivalence: from the same initial networks and data, one iteration (every phase: Gmain, Greg,
// Dmain, Dreg) with 1 rank x batch 8, 2 ranks x 4 and 4 ranks x 2 must give the same parameters,
// p, pl_mean and logged losses. The mathematics is made identical on purpose: the same z, c and
// reals per sample split across ranks in order, no style mixing, constant noise, augmentation at
// a fixed debug percentile (ADA still adjusts p from the signs), path length over every sample
// (pl_batch_shrink 1) and minibatch-std group size 1.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "sharding/mpi_comm.h"
#include "sharding/param_server.h"
#include "trainer/training_step.h"

using namespace sf;

namespace {

int world_rank() {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
int world_size() {
  int n = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

trainer::TrainOptions equivalence_options(int trainers, int mbstd_group) {
  trainer::TrainOptions o;
  o.dataset_name = "mpi";
  o.batch_override = 8;
  o.cbase_override = 512;
  o.cmax_override = 32;
  o.mbstd_override = mbstd_group;
  o.aug = "ada";
  o.resolve(16, 1, 0, 64, trainers);
  o.style_mixing_prob = 0;
  o.noise_mode = "const";
  o.augment_debug_percentile = 0.3;
  o.pl_batch_shrink = 1;
  o.ada_interval = 1;
  o.ada_kimg = 1;
  o.augment_p = 0.5;  // ADA moves it by 8 * 1 / 1000 after the iteration, up or down with the signs
  return o;
}

struct Result {
  std::vector<float> params;  // G, D, G_ema (without w_avg), in registration order
  double p = 0, pl_mean = 0, g_loss = 0, d_loss = 0, r1 = 0;
};

// Runs one iteration on the ranks [0, n) of MPI_COMM_WORLD; returns their result on world rank 0.
// With `servers` > 0, ranks [n, n + servers) are sum-only parameter servers for those trainers.
Result run_split(int n, int mbstd_group, int servers = 0, bool overlap = true, bool topk = false) {
  const int me = world_rank();
  MPI_Comm sub, sync = MPI_COMM_NULL;
  MPI_Comm_split(MPI_COMM_WORLD, me < n ? 0 : MPI_UNDEFINED, me, &sub);
  if (servers > 0) MPI_Comm_split(MPI_COMM_WORLD, me < n + servers ? 0 : MPI_UNDEFINED, me, &sync);
  Result res;
  if (sub == MPI_COMM_NULL) {
    if (sync != MPI_COMM_NULL) {
      EXPECT_EQ(sharding::run_parameter_server(sync, n, 120, nullptr), 0);
      MPI_Comm_free(&sync);
    }
    return res;
  }
  {
    sharding::MpiCommunicator mpi_comm(sub, 120);
    std::unique_ptr<sharding::ParamServerCommunicator> ps;
    if (servers > 0) ps = std::make_unique<sharding::ParamServerCommunicator>(mpi_comm, sync, servers, nullptr);
    sharding::Communicator& comm = ps ? static_cast<sharding::Communicator&>(*ps) : mpi_comm;
    trainer::TrainOptions o = equivalence_options(n, mbstd_group);
    if (topk) {  // epoch 10 of a 64-image set: k = max(floor(0.95^10 * 8), 2) = 4 of the 8 fakes
      o.topk = true;
      o.topk_gamma = 0.95;
      o.topk_min = 0.25;
    }
    trainer::TrainingStep step(o, comm, {});
    step.set_overlap(overlap);
    if (topk) {
      trainer::TrainCounters c = step.counters_for_checkpoint();
      c.cur_nimg = 640;
      step.restore(c);
    }
    at::Generator g = trainer::make_cpu_generator(99);
    at::Tensor reals = at::randint(0, 256, {8, 1, 16, 16}, g, at::kByte);  // the same 8 images everywhere
    const int64_t bpr = 8 / n;
    step.iteration(reals.narrow(0, comm.rank() * bpr, bpr).contiguous(), at::Tensor());
    auto stats = step.stats().finish(comm);
    for (auto* s : {&step.G().state(), &step.D().state(), &step.G_ema().state()})
      for (const auto& e : s->entries()) {
        if (e.name.find("w_avg") != std::string::npos) continue;
        at::Tensor t = e.tensor.detach().to(at::kFloat).contiguous();
        res.params.insert(res.params.end(), t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
      }
    res.p = step.augment_p();
    res.pl_mean = step.counters_for_checkpoint().pl_mean;
    res.g_loss = stats.at("Loss/G/loss").at("mean");
    res.d_loss = stats.at("Loss/D/loss").at("mean");
    res.r1 = stats.at("Loss/r1_penalty").at("mean");
    if (ps) ps->finish(0);
  }
  MPI_Comm_free(&sub);
  if (sync != MPI_COMM_NULL) MPI_Comm_free(&sync);
  return res;
}

double rel_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

}  // namespace

TEST(MpiEquivalence, OneTwoFourRanksGiveTheSameStep) {
  ASSERT_GE(world_size(), 4) << "run under mpirun -np 4";
  Result r1 = run_split(1, 1), r2 = run_split(2, 1), r4 = run_split(4, 1);
  if (world_rank() != 0) return;
  const double d2 = rel_diff(r2.params, r1.params), d4 = rel_diff(r4.params, r1.params);
  std::printf("[ equivalence ] mbstd group 1: params rel diff 2 ranks %.3g, 4 ranks %.3g; p %.9g/%.9g/%.9g; "
              "pl_mean %.9g/%.9g/%.9g; G loss %.9g/%.9g/%.9g; D loss %.9g/%.9g/%.9g\n",
              d2, d4, r1.p, r2.p, r4.p, r1.pl_mean, r2.pl_mean, r4.pl_mean, r1.g_loss, r2.g_loss, r4.g_loss,
              r1.d_loss, r2.d_loss, r4.d_loss);
  ASSERT_EQ(r1.params.size(), r2.params.size());
  ASSERT_EQ(r1.params.size(), r4.params.size());
  EXPECT_LT(d2, 1e-5);
  EXPECT_LT(d4, 1e-5);
  EXPECT_NEAR(std::abs(r1.p - 0.5), 0.008, 1e-12);  // ADA moved p (same signs everywhere, so the same p)
  EXPECT_EQ(r1.p, r2.p);
  EXPECT_EQ(r1.p, r4.p);
  EXPECT_NEAR(r2.pl_mean, r1.pl_mean, 1e-6 * std::abs(r1.pl_mean));
  EXPECT_NEAR(r4.pl_mean, r1.pl_mean, 1e-6 * std::abs(r1.pl_mean));
  for (double v : {r2.g_loss, r4.g_loss}) EXPECT_NEAR(v, r1.g_loss, 1e-6 * std::abs(r1.g_loss));
  for (double v : {r2.d_loss, r4.d_loss}) EXPECT_NEAR(v, r1.d_loss, 1e-6 * std::abs(r1.d_loss));
  for (double v : {r2.r1, r4.r1}) EXPECT_NEAR(v, r1.r1, 1e-5 * std::abs(r1.r1));
}

TEST(MpiEquivalence, TopkIsOverTheGlobalBatch) {
  // 1 rank x 8 fakes and 2 ranks x 4 fakes select the same 4 fakes (the global top-k, not 2 per
  // rank) and take the same step; 4 of 8 fakes is another step than all 8.
  ASSERT_GE(world_size(), 2) << "run under mpirun -np 2 or more";
  Result r1 = run_split(1, 1, 0, true, true), r2 = run_split(2, 1, 0, true, true);
  Result plain = run_split(1, 1, 0, true, false);
  if (world_rank() != 0) return;
  const double d2 = rel_diff(r2.params, r1.params), dp = rel_diff(plain.params, r1.params);
  std::printf("[ equivalence ] top-k: params rel diff 2 ranks vs 1 %.3g; top-k vs plain %.3g\n", d2, dp);
  ASSERT_EQ(r1.params.size(), r2.params.size());
  EXPECT_LT(d2, 1e-5);
  EXPECT_GT(dp, 1e-5);  // measured 2.9e-5 (only G moves; D and G_ema dominate the norm), against 3e-8 between splits
  EXPECT_NEAR(r2.g_loss, r1.g_loss, 1e-6 * std::abs(r1.g_loss));
}

TEST(MpiEquivalence, OverlappedSyncGivesTheSameBits) {
  // Buckets reduced by the worker thread while backward runs, or all after backward: the same
  // reductions of the same data, so the same bits (the ring's order of additions is fixed).
  ASSERT_GE(world_size(), 2) << "run under mpirun -np 2 or more";
  Result on = run_split(2, 1, 0, true), off = run_split(2, 1, 0, false);
  if (world_rank() != 0) return;
  ASSERT_EQ(on.params.size(), off.params.size());
  ASSERT_FALSE(on.params.empty());
  size_t differ = 0;
  for (size_t i = 0; i < on.params.size(); ++i) differ += std::memcmp(&on.params[i], &off.params[i], 4) != 0;
  EXPECT_EQ(differ, 0u) << "of " << on.params.size() << " values";
  EXPECT_EQ(on.pl_mean, off.pl_mean);
  EXPECT_EQ(on.p, off.p);
}

TEST(MpiEquivalence, ParameterServersGiveTheSameStep) {
  // 2 trainers x batch 4 whose gradients are summed by 2 parameter servers vs 1 rank x batch 8.
  ASSERT_GE(world_size(), 4) << "run under mpirun -np 4";
  Result r1 = run_split(1, 1), rps = run_split(2, 1, 2);
  if (world_rank() != 0) return;
  const double d = rel_diff(rps.params, r1.params);
  std::printf("[ equivalence ] 2 trainers + 2 parameter servers vs 1 rank: params rel diff %.3g; p %.9g/%.9g; "
              "G loss %.9g/%.9g\n",
              d, r1.p, rps.p, r1.g_loss, rps.g_loss);
  ASSERT_EQ(r1.params.size(), rps.params.size());
  EXPECT_LT(d, 1e-5);
  EXPECT_EQ(r1.p, rps.p);
  EXPECT_NEAR(rps.pl_mean, r1.pl_mean, 1e-6 * std::abs(r1.pl_mean));
  EXPECT_NEAR(rps.g_loss, r1.g_loss, 1e-6 * std::abs(r1.g_loss));
  EXPECT_NEAR(rps.d_loss, r1.d_loss, 1e-6 * std::abs(r1.d_loss));
}

TEST(MpiEquivalence, MinibatchStdGroupsArePerRank) {
  // With group size 2 the minibatch-std groups are formed inside each rank's batch, as in the
  // reference (reshape(G, -1, ...): samples i and i + N/G of the rank's N): 1 rank x 8 pairs
  // (0,4)(1,5)(2,6)(3,7), 2 ranks x 4 pair (0,2)(1,3)(4,6)(5,7), 4 ranks x 2 pair (0,1)(2,3)...
  // So D sees different statistics and the step differs, expected at the size of the mbstd
  // feature's contribution; we measure it and check it is a real but bounded difference.
  Result r1 = run_split(1, 2), r2 = run_split(2, 2), r4 = run_split(4, 2);
  if (world_rank() != 0) return;
  const double d2 = rel_diff(r2.params, r1.params), d4 = rel_diff(r4.params, r1.params);
  std::printf("[ equivalence ] mbstd group 2 (groups differ by design): params rel diff 2 ranks %.3g, 4 ranks %.3g; "
              "D loss %.9g/%.9g/%.9g\n",
              d2, d4, r1.d_loss, r2.d_loss, r4.d_loss);
  EXPECT_GT(d2, 1e-7);
  EXPECT_GT(d4, 1e-7);
  EXPECT_LT(d2, 1e-2);
  EXPECT_LT(d4, 1e-2);
}

TEST(MpiComm, CollectivesSumAndBroadcast) {
  sharding::MpiCommunicator comm(MPI_COMM_WORLD, 60);
  const int n = comm.size(), r = comm.rank();
  std::vector<float> f(1000, static_cast<float>(r + 1));
  comm.allreduce_sum(f.data(), f.size());
  for (float v : f) ASSERT_EQ(v, n * (n + 1) / 2.0f);
  std::vector<double> d = {static_cast<double>(r), 1.0};
  comm.allreduce_sum(d.data(), d.size());
  EXPECT_EQ(d[0], n * (n - 1) / 2.0);
  EXPECT_EQ(d[1], n);
  std::vector<float> a(300, float(r)), b(7, float(2 * r));
  comm.allreduce_sum_many({{a.data(), a.size()}, {b.data(), b.size()}});
  EXPECT_EQ(a[299], n * (n - 1) / 2.0f);
  EXPECT_EQ(b[0], float(n * (n - 1)));
  std::string msg = r == n - 1 ? "from the last rank" : std::string(18, '?');
  comm.broadcast(msg.data(), msg.size(), n - 1);
  EXPECT_EQ(msg, "from the last rank");
  comm.barrier();
  // Gradient buckets: the same average whatever the bucket size, whether backward accumulated into
  // the attached bucket views (params 0 and 1) or replaced the gradient with a new tensor (param 2).
  for (int64_t bucket : {int64_t(16), int64_t(1) << 30}) {
    std::vector<at::Tensor> params = {at::zeros({3, 5}), at::zeros({17}), at::zeros({2, 2, 2})};
    trainer::GradientSync sync(bucket);
    sync.attach(params);
    params[0].mutable_grad().fill_(double(r));
    params[1].mutable_grad().fill_(2.0 * r);
    params[2].mutable_grad() = at::full({2, 2, 2}, 1.0, at::kFloat);
    sync.run_attached(params, comm);
    EXPECT_FLOAT_EQ(params[0].grad()[0][0].item<float>(), (n - 1) / 2.0f);
    EXPECT_FLOAT_EQ(params[1].grad()[16].item<float>(), float(n - 1));
    EXPECT_FLOAT_EQ(params[2].grad()[1][1][1].item<float>(), 1.0f);
  }
}

namespace {

// Reduction checks shared by the ring and parameter-server tests: one buffer per count, element i
// of rank q's copy is value(q, i) (small integers, so float sums are exact).
using ValueFn = float (*)(int, size_t);
struct ReduceCase {
  std::vector<std::vector<float>> bufs;
  std::vector<std::pair<float*, size_t>> views;
  ReduceCase(const std::vector<size_t>& counts, ValueFn value, int rank) {
    for (size_t c : counts) {
      bufs.emplace_back(c);
      for (size_t i = 0; i < c; ++i) bufs.back()[i] = value(rank, i);
    }
    for (auto& b : bufs) views.emplace_back(b.data(), b.size());
  }
  // Expects buffer k to hold the sum (or mean) over `ranks` ranks, exactly.
  void expect_reduced(size_t k, ValueFn value, int ranks, bool mean, int rank) const {
    size_t wrong = 0, first = 0;
    for (size_t i = 0; i < bufs[k].size(); ++i) {
      float want = 0;
      for (int q = 0; q < ranks; ++q) want += value(q, i);
      if (mean) want /= static_cast<float>(ranks);
      if (bufs[k][i] != want && wrong++ == 0) first = i;
    }
    EXPECT_EQ(wrong, 0u) << (mean ? "mean" : "sum") << " of " << bufs[k].size() << " floats: first wrong element "
                         << first << " on rank " << rank;
  }
};

float ring_value(int rank, size_t i) { return static_cast<float>((rank + 1) * static_cast<int>(i % 89) - 31); }
float server_value(int t, size_t i) { return static_cast<float>((t + 2) * static_cast<int>(i % 53) - 17); }

}  // namespace

// Large float buffers go through the ring allreduce (reduce-scatter + allgather, 1 MiB segments):
// sizes around the ring threshold, not divisible by the rank count, longer than one segment, and
// several buffers at once; sums of small integers are exact, means must equal sum / n in float32
// bit for bit (the division happens once per element, on the chunk's owner), and every rank must
// hold the same bits.
TEST(MpiComm, RingAllreduceSumsAndMeansExactly) {
  sharding::MpiCommunicator comm(MPI_COMM_WORLD, 60);
  const int n = comm.size(), r = comm.rank();
  const std::vector<size_t> counts = {65535, 65536, 65537, 3 * (size_t(256) << 10) + 5, 1, 0, 1000003};
  for (bool mean : {false, true}) {
    ReduceCase rc(counts, ring_value, r);
    auto& bufs = rc.bufs;
    if (mean)
      comm.allreduce_mean_many(rc.views);
    else
      comm.allreduce_sum_many(rc.views);
    for (size_t k = 0; k < counts.size(); ++k) {
      rc.expect_reduced(k, ring_value, n, mean, r);
      // Same bits on every rank: compare with rank 0's copy.
      std::vector<float> root = bufs[k];
      if (!root.empty()) comm.broadcast(root.data(), root.size() * sizeof(float), 0);
      EXPECT_EQ(std::memcmp(root.data(), bufs[k].data(), root.size() * sizeof(float)), 0)
          << counts[k] << " floats differ from rank 0 on rank " << r;
    }
  }
  // Non-integer data: the ring's mean agrees with MPI's own sum divided by n to float rounding.
  std::vector<float> a(700001), b;
  for (size_t i = 0; i < a.size(); ++i) a[i] = std::sin(0.001f * static_cast<float>(i) * (r + 1));
  b = a;
  comm.allreduce_mean_many({{a.data(), a.size()}});
  SF_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, b.data(), static_cast<int>(b.size()), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(double(a[i]) - double(b[i]) / n));
  EXPECT_LT(worst, 1e-6) << "ring mean vs MPI_Allreduce / n";
}

// Sum-only parameter servers: world ranks 0..T-1 train, the rest serve (with 4 ranks: 2 + 2, so
// every buffer is split over two servers). Sums of small integers must be exact and equal on every
// trainer, means equal to sum / T in float32, zero-length and one-element buffers work, a stop
// requested on a server reaches every trainer's stop flag, and finish() hands the trainers' exit
// code to the servers.
TEST(MpiParamServer, ServersSumShardsAndForwardStops) {
  const int world = world_size(), me = world_rank();
  ASSERT_GE(world, 2);
  const int T = world / 2, S = world - T;
  const bool trainer = me < T;
  MPI_Comm tcomm = MPI_COMM_NULL, sync = MPI_COMM_NULL;
  SF_MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, trainer ? 0 : MPI_UNDEFINED, me, &tcomm));
  SF_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &sync));
  const std::vector<size_t> counts = {0, 1, S > 1 ? size_t(S) - 1 : 0, 1000003, 4099};
  if (!trainer) {
    std::atomic<int> server_stop{me == T ? 10 : 0};  // the first server saw SIGUSR1 (10)
    const int rc = sharding::run_parameter_server(sync, T, 60, &server_stop);
    EXPECT_EQ(rc, 3) << "server " << me << " did not get the trainers' exit code";
  } else {
    sharding::MpiCommunicator comm(tcomm, 60);
    std::atomic<int> stop{0};
    {
      sharding::ParamServerCommunicator ps(comm, sync, S, &stop);
      EXPECT_EQ(ps.size(), T);
      EXPECT_NE(ps.describe().find("parameter server"), std::string::npos) << ps.describe();
      for (bool mean : {false, true}) {
        ReduceCase rc(counts, server_value, me);
        if (mean)
          ps.allreduce_mean_many(rc.views);
        else
          ps.allreduce_sum_many(rc.views);
        for (size_t k = 0; k < counts.size(); ++k) rc.expect_reduced(k, server_value, T, mean, me);
      }
      double d[2] = {1.0, double(me)};
      ps.allreduce_sum(d, 2);  // statistics stay among the trainers
      EXPECT_EQ(d[0], T);
      EXPECT_EQ(stop.load(), 10) << "the server's stop request did not reach trainer " << me;
      ps.finish(3);
    }
    MPI_Comm_free(&tcomm);
  }
  MPI_Comm_free(&sync);
}

// Trainers that issue different collectives (here: trainer 1 reduces two buffers where trainer 0
// reduces one) get a clear error instead of a hang: each server names the trainer whose request
// differs, and the trainers' wait runs into its deadline. (In a job the trainers' error aborts
// every rank; a server that saw no difference would wait for the next request.)
TEST(MpiParamServer, MismatchedRequestsFailWithTheTrainerNamed) {
  const int world = world_size(), me = world_rank();
  ASSERT_GE(world, 3);
  const int T = 2;
  MPI_Comm tcomm = MPI_COMM_NULL, sync = MPI_COMM_NULL;
  SF_MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, me < T ? 0 : MPI_UNDEFINED, me, &tcomm));
  SF_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &sync));
  if (me >= T) {
    try {
      sharding::run_parameter_server(sync, T, 5, nullptr);
      ADD_FAILURE() << "server " << me << " accepted mismatched requests";
    } catch (const sharding::CommError& e) {
      EXPECT_NE(std::string(e.what()).find("trainer 1 sent a request that differs"), std::string::npos) << e.what();
    }
  } else {
    sharding::MpiCommunicator comm(tcomm, 2);
    sharding::ParamServerCommunicator ps(comm, sync, world - T, nullptr);
    std::vector<float> a(100, 1.0f), b(10, 1.0f);
    std::vector<std::pair<float*, size_t>> bufs = {{a.data(), a.size()}};
    if (me == 1) bufs.emplace_back(b.data(), b.size());
    EXPECT_THROW(ps.allreduce_sum_many(bufs), sharding::CommError);
    MPI_Comm_free(&tcomm);
  }
  // Messages of the failed exchange may still be queued on `sync`; they go with it.
  MPI_Barrier(MPI_COMM_WORLD);
  MPI_Comm_free(&sync);
}
