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

#include <c10/core/Device.h>

#include "sharding/bucket_reducer.h"
#include "sharding/communicator.h"
#include "trainer/augment.h"
#include "trainer/checkpoint.h"
#include "trainer/networks.h"
#include "trainer/optim.h"
#include "trainer/train_options.h"
#include "trainer/train_stats.h"

namespace sf::trainer {

// Gradient buckets for one list of parameters: every parameter's gradient is a view into a flat
// bucket buffer (about `bucket_bytes`, the first one at most 1 MiB, filled from the last parameter
// to the first, the order backward produces them), so backward accumulates straight into the buffers that are reduced.
// A post-accumulate hook per parameter (PyTorch DDP's reducer design) counts the gradients of the
// armed backward pass (the last one of a phase): a bucket whose gradients are all there is
// launched on the BucketReducer at once, in bucket order, while backward goes on; finish()
// launches what is left (parameters backward did not reach) and waits for all.
// The buffers live on the parameters' device and are kept between calls.
class GradientSync {
 public:
  struct State;  // shared with the hooks (trainer/training_step.cpp)
  explicit GradientSync(int64_t bucket_bytes = 25 << 20);
  ~GradientSync();
  GradientSync(GradientSync&&) noexcept;
  GradientSync& operator=(GradientSync&&) noexcept;
  // Makes every parameter's gradient a zeroed view into the bucket buffers and installs the hooks
  // (once per parameter list).
  void attach(const std::vector<at::Tensor>& params);
  // Arms the hooks for the next backward pass: ready buckets are launched on `reducer` (null: a
  // single rank, nothing to reduce).
  void arm(sharding::BucketReducer* reducer);
  // Launches the buckets not launched yet and waits for all (reducer->finish()); a gradient that
  // backward replaced instead of accumulating into its view is copied in first.
  void finish(sharding::BucketReducer* reducer);
  // nan_to_num(nan=0, posinf=1e5, neginf=-1e5) over every bucket (one pass per bucket).
  void sanitize();
  // Sums the attached buckets over the ranks of `comm` and divides by their number (no overlap).
  void run_attached(const std::vector<at::Tensor>& params, sharding::Communicator& comm);
  int64_t num_buckets() const;

 private:
  std::shared_ptr<State> st_;
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
  // `device`: where every tensor of the step lives. `device_comm`: the communicator for device
  // buffers (gradients, parameter broadcasts; NCCL on GPUs), null to use `comm` (host buffers:
  // statistics, counters, random states) for those too.
  TrainingStep(const TrainOptions& opts, sharding::Communicator& comm, std::vector<float> labels,
               c10::Device device = c10::Device(c10::kCPU), sharding::Communicator* device_comm = nullptr);
  ~TrainingStep();

  // One iteration. real_img: this rank's [batch_per_trainer, C, R, R] uint8 images,
  // real_c: [batch_per_trainer, c_dim] float. Both on the CPU (pinned memory is copied without
  // blocking) or already on the step's device; anything else is refused.
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
  // Device streams (noise, augmentation, path-length noise) of a CUDA run are saved as
  // "cuda.global", "cuda.local.rank<r>", "cuda.augment.rank<r>" beside the CPU ones; on the CPU
  // they are the CPU streams. Returns false (and the step re-seeds its device streams) when the
  // checkpoint's device streams are of another device kind.
  bool restore_rng_states(const std::map<std::string, at::Tensor>& states);
  // Gradient buckets: about this many bytes per allreduce, filled in reverse registration order.
  void set_bucket_bytes(int64_t b) { G_sync_ = GradientSync(b), D_sync_ = GradientSync(b); }
  // Off: buckets are reduced after backward (for measuring what overlapping saves).
  void set_overlap(bool on);
  // Seconds the training thread waited for gradient synchronisation since construction (what
  // backward did not hide).
  double sync_seconds() const { return reducer_ ? reducer_->exposed_seconds() + extra_sync_s_ : extra_sync_s_; }
  c10::Device device() const { return device_; }
  std::string reducer_description() const { return reducer_ ? reducer_->describe() : "none (one trainer)"; }
  // Throws naming the first parameter, buffer, gradient (or optimizer state) not on device().
  void verify_devices(bool with_optimizer = true) const;

 private:
  void run_phase(Phase& ph, const std::vector<at::Tensor>& reals, const std::vector<at::Tensor>& real_cs,
                 const at::Tensor& gen_z, const at::Tensor& gen_c);
  void accumulate(const Phase& ph, const at::Tensor& real_img, const at::Tensor& real_c, const at::Tensor& gen_z,
                  const at::Tensor& gen_c, double gain, bool last_round);
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
  void make_reducer(bool overlap);
 public:
  // Top-k training: per-fake loss weights of this rank's fakes ([n], world / k for the fakes
  // among the k highest logits of all ranks' fakes, else 0). Collective over the trainers.
  at::Tensor topk_weights(const at::Tensor& local_logits, int64_t k);
 private:
  at::Tensor mean_over_ranks(const at::Tensor& scalar);  // a device scalar averaged over the trainers
  void broadcast_tensor(at::Tensor& t);                    // from rank 0, through host memory if needed
  c10::Device device_;
  sharding::Communicator& dcomm_;  // device buffers
  std::unique_ptr<sharding::BucketReducer> reducer_;
  GradientSync G_sync_, D_sync_;
  GradientSync* active_sync_ = nullptr;
  double extra_sync_s_ = 0;
  // CPU streams (z, labels, style-mixing draws) and device streams (noise, augmentation,
  // path-length noise); on the CPU the device streams are the CPU streams.
  at::Generator global_gen_, local_gen_, augment_gen_;
  at::Generator global_dev_, local_dev_, augment_dev_;
};


// Deterministic per-purpose seeds: a 64-bit mix of (seed, rank, tag).
uint64_t derive_seed(uint64_t seed, int rank, const char* tag);
at::Generator make_cpu_generator(uint64_t seed);

}  // namespace sf::trainer
