// One StyleGAN2-ADA training iteration on one trainer rank: the networks, their optimisers, the
// loss, the phase table, G_ema and the ADA controller.
//
// The phase table is data: Gmain (every iteration), Greg (every G_reg_interval), Dmain, Dreg
// (every D_reg_interval), or Gboth/Dboth when lazy regularisation is off; lazily regularised
// phases use the reference's learning-rate and beta ratios (interval / (interval + 1)). Each phase
// runs its rounds of batch_gpu samples, sums the gradients over the trainer ranks through the
// Communicator (divided by the number of trainers), replaces NaN/inf, and takes an Adam step.
//
// Random streams: z, conditioning labels and path-length noise come from a global stream that
// every rank draws in full, each rank taking its slice of the global batch in rank order, so the
// mathematics does not depend on how the batch is split; style mixing, synthesis noise and the
// augmentation draw from per-rank streams seeded from (seed, rank). All streams are saved in
// checkpoints. Statistics (losses, signs, penalties) accumulate on the device and are reduced at
// tick boundaries; the ADA signal at ADA intervals.
// Not thread-safe: one training thread drives it.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "sharding/communicator.h"
#include "trainer/augment.h"
#include "trainer/checkpoint.h"
#include "trainer/networks.h"
#include "trainer/optim.h"
#include "trainer/train_options.h"
#include "trainer/train_stats.h"

namespace sf::trainer {

// Sums gradients over the ranks of a communicator and divides by its size, in buckets of about
// `bucket_bytes` filled from the last tensor to the first (the order backward produces them).
// The flat bucket buffers are kept between calls (allocating tens of MB per step costs more than
// the reduction), so one GradientSync serves one list of parameters.
class GradientSync {
 public:
  explicit GradientSync(int64_t bucket_bytes = 25 << 20) : bucket_bytes_(bucket_bytes) {}
  // Makes every parameter's gradient a zeroed view into the bucket buffers, so that backward
  // accumulates straight into them and run_attached() sums them without copies.
  void attach(const std::vector<at::Tensor>& params);
  // Sums the attached buckets over the ranks and divides by their number. A gradient that
  // backward replaced instead of accumulating into its view is copied in and re-attached.
  void run_attached(const std::vector<at::Tensor>& params, sharding::Communicator& comm);

 private:
  void plan(const std::vector<int64_t>& numels);
  int64_t bucket_bytes_;
  std::vector<std::vector<int64_t>> plan_;  // tensor indices per bucket
  std::vector<int64_t> plan_numels_;        // numel of every tensor the plan was made for
  std::vector<at::Tensor> flats_;
};

struct Phase {
  std::string name;  // Gmain, Greg, Gboth, Dmain, Dreg, Dboth
  bool is_G = true;
  int interval = 1;
  bool main = true, reg = false;
  double ms_last = 0;  // wall time of its last execution
};

class TrainingStep {
 public:
  // `labels`: label_dim floats per dataset image (the table conditioning labels are drawn from);
  // empty when unconditional.
  TrainingStep(const TrainOptions& opts, sharding::Communicator& comm, std::vector<float> labels);
  ~TrainingStep();

  // One iteration. real_img: this rank's [batch_per_trainer, C, R, R] uint8 images,
  // real_c: [batch_per_trainer, c_dim] float.
  void iteration(const at::Tensor& real_img_u8, const at::Tensor& real_c);

  Generator& G() { return *G_; }
  Discriminator& D() { return *D_; }
  Generator& G_ema() { return *G_ema_; }
  Adam& G_opt() { return *G_opt_; }
  Adam& D_opt() { return *D_opt_; }
  const std::vector<Phase>& phases() const { return phases_; }
  StatsCollector& stats() { return stats_; }
  TrainCounters& counters() { return counters_; }
  double augment_p() const { return counters_.augment_p; }
  void set_augment_p(double p);
  // Generators by name, for checkpoints.
  // Counters with the ADA accumulators reduced over all ranks (a collective: every rank calls it).
  TrainCounters counters_for_checkpoint();
  // Restores counters (and pl_mean, p, ADA accumulators on rank 0) after a resume.
  void restore(const TrainCounters& c);
  // Broadcasts every tensor of G, D and G_ema from rank 0 (start and after resume).
  void broadcast_parameters();
  // Compares every parameter and buffer of G, D and G_ema (except w_avg, which each rank tracks
  // from its own samples) with rank 0's, bitwise; throws naming the first diverged key. Collective.
  void check_consistency();
  // Random generator states of every rank, by name ("global", "local.rank<r>", "augment.rank<r>"),
  // gathered to all ranks (collective), for checkpoints; and restoring this rank's from such a map
  // (a one-rank checkpoint's "local"/"augment" names are accepted too).
  std::map<std::string, at::Tensor> gather_rng_states();
  void restore_rng_states(const std::map<std::string, at::Tensor>& states);
  // Gradient buckets: about this many bytes per allreduce, filled in reverse registration order.
  void set_bucket_bytes(int64_t b) { G_sync_ = GradientSync(b), D_sync_ = GradientSync(b); }
  // Seconds spent in gradient synchronisation since construction (waiting included).
  double sync_seconds() const { return sync_seconds_; }

 private:
  void run_phase(Phase& ph, const std::vector<at::Tensor>& reals, const std::vector<at::Tensor>& real_cs,
                 const at::Tensor& gen_z, const at::Tensor& gen_c);
  void accumulate(const Phase& ph, const at::Tensor& real_img, const at::Tensor& real_c, const at::Tensor& gen_z,
                  const at::Tensor& gen_c, double gain);
  std::pair<at::Tensor, at::Tensor> run_G(const at::Tensor& z, const at::Tensor& c);
  at::Tensor run_D(const at::Tensor& img, const at::Tensor& c);

  TrainOptions o_;
  sharding::Communicator& comm_;
  std::vector<float> labels_;
  std::unique_ptr<Generator> G_, G_ema_;
  std::unique_ptr<Discriminator> D_;
  std::unique_ptr<Adam> G_opt_, D_opt_;
  std::unique_ptr<AugmentPipe> augment_;
  AdaController ada_;
  AdaSignal ada_signal_;
  StatsCollector stats_;
  std::vector<Phase> phases_;
  TrainCounters counters_;
  at::Tensor pl_mean_;
  NoiseMode noise_mode_ = NoiseMode::Random;
  GradientSync G_sync_, D_sync_;
  double sync_seconds_ = 0;
  at::Generator global_gen_, local_gen_, augment_gen_;
};


// Deterministic per-purpose seeds: a 64-bit mix of (seed, rank, tag).
uint64_t derive_seed(uint64_t seed, int rank, const char* tag);
at::Generator make_cpu_generator(uint64_t seed);

}  // namespace sf::trainer
