// The resolved options of one training run, and the presets that resolve them.
//
// Plain data (torch-free) so that launcher/ can parse flags into it and checkpoints can store it
// as JSON. resolve() applies a preset the way the reference's train.py does (auto, stylegan2,
// paper256, paper512, paper1024, cifar: batch, minibatch-std group, feature maps, learning rate,
// R1 gamma, EMA half-life and ramp-up, mapping depth), then the explicit overrides (--gamma,
// --batch, --kimg, ...), and validates the result with one-line std::invalid_argument errors.
// Names carry their units (kimg, nimg, batch_gpu).
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>

#include "trainer/network_config.h"

namespace sf::trainer {

struct TrainOptions {
  // ---- what the user asked for (flags) ----
  std::string data;            // the dataset pack (.h5)
  std::string outdir;          // runs are written to outdir/NNNNN-<desc>/
  std::string run_dir;         // explicit run directory (overrides outdir numbering) or empty
  std::string cfg = "auto";    // preset
  std::optional<double> gamma_override;
  std::optional<int> batch_override;
  std::optional<double> kimg_override;
  int batch_gpu_override = 0;  // 0: preset's rule
  std::string aug = "ada";     // ada | noaug | fixed
  std::optional<double> p_override;
  std::optional<double> target_override;
  std::optional<double> ada_kimg_override;  // ADA speed (default 500, 100 when transferring)
  std::string augpipe = "bgc";
  bool mirror = false;
  bool cond = false;
  int freezed = 0;
  uint64_t seed = 0;
  double kimg_per_tick = 4;
  int snap = 50;               // network and image snapshots every `snap` ticks
  int keep_snapshots = 0;      // keep the newest N network snapshots (0: all)
  int threads = 0;             // LibTorch intra-op threads (0: all cores)
  int grid_cols = 0, grid_rows = 0;  // snapshot grid size (0: the reference's rule for the resolution)
  std::string snapshot_rgb;    // snapshot grids: data::parse_channel_view text ("": panels for C other than 1, 3)
  std::optional<int> cbase_override, cmax_override, map_override, mbstd_override;
  // Transfer learning: the network the run starts from (a named source such as ffhq256, a
  // reference .pkl or a network-only checkpoint); as in the reference, it sets ada_kimg = 100
  // and turns the EMA ramp-up off. Empty: train from scratch.
  std::string resume_source;
  // Where and how this job computes (not part of the run's mathematics; not saved with it: a
  // resumed run takes them from its own flags).
  std::string device = "auto";      // auto | cpu | cuda | cuda:N
  std::string comm = "auto";        // gradient communicator: auto (NCCL for GPU tensors) | nccl | mpi
  bool shared_gpu = false;          // allow several trainers on one GPU
  // Reduce gradient buckets while backward runs: auto = on for GPU tensors (NCCL, or staged), off
  // for CPU tensors, where the reduction's own CPU work competes with backward for the cores
  // (measured: README "GPUs"); on | off force it.
  std::string overlap = "auto";
  double bucket_mb = 25;            // gradient bucket size (the first bucket is at most 1 MiB)
  bool cudnn_benchmark = true;      // --nobench turns it off
  bool allow_tf32 = false;          // --allow-tf32
  std::string cpu_conv = "auto";    // CPU 3x3 convolutions: auto (Winograd where faster) | aten | winograd
  bool fp32 = true;                 // --fp32: the only mode until mixed precision lands
  bool nhwc = false;                // --nhwc: channels_last (with mixed precision)

  // ---- resolved (filled by resolve()) ----
  int resolution = 0, channels = 0, label_dim = 0;
  int64_t dataset_size = 0;
  std::string dataset_name;    // pack file stem
  std::string dataset_hash;    // the pack's content_hash
  int num_trainers = 1;
  int batch_size = 0;          // global batch per iteration (all trainers)
  int batch_gpu = 0;           // samples per round on one trainer
  double total_kimg = 0;
  double lrate = 0;
  double r1_gamma = 0;
  double ema_kimg = 0;
  std::optional<double> ema_rampup;
  double pl_weight = 2, pl_decay = 0.01, style_mixing_prob = 0.9;
  // Top-k generator training (Sinha et al. 2020): the generator's loss keeps only the k fakes of
  // the global batch that D scores highest; k = max(floor(topk_gamma^epoch * B), floor(topk_min * B)),
  // at least 1, epoch = floor(cur_nimg / dataset_size) (see topk_count()).
  bool topk = false;
  double topk_gamma = 0.99, topk_min = 0.5;
  int pl_batch_shrink = 2;
  int G_reg_interval = 4, D_reg_interval = 16;  // 0: no lazy regularisation (Gboth/Dboth)
  double augment_p = 0;
  std::optional<double> ada_target;  // none: p stays fixed
  int ada_interval = 4;
  double ada_kimg = 500;
  double adam_beta1 = 0, adam_beta2 = 0.99, adam_eps = 1e-8;
  GeneratorConfig G;
  DiscriminatorConfig D;
  std::string noise_mode = "random";  // synthesis noise while training (const: tests of equivalence)
  std::optional<double> augment_debug_percentile;  // every transform at this percentile (tests)
  std::string desc;            // run directory suffix, e.g. "brain64-cond-auto1-ada"

  // Applies the preset and the overrides for a dataset of the given shape; throws
  // std::invalid_argument naming the bad option.
  void resolve(int resolution, int channels, int label_dim, int64_t dataset_size, int num_trainers);
  // The per-trainer batch (batch_size / num_trainers).
  int batch_per_trainer() const { return batch_size / num_trainers; }
  bool augment_enabled() const { return augment_p > 0 || ada_target.has_value(); }

  nlohmann::json to_json() const;
  static TrainOptions from_json(const nlohmann::json& j);
};

// k of top-k training for a global batch of `batch` fakes in the given epoch (>= 1, <= batch).
int64_t topk_count(double gamma, double min_fraction, int64_t batch, int64_t epoch);

// The presets' names, in the order --help lists them.
const char* train_presets_help();

}  // namespace sf::trainer
