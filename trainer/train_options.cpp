#include "trainer/train_options.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>

#include "data/grid.h"

namespace sf::trainer {
namespace {

struct Preset {
  int ref_gpus;
  double kimg;
  int mb, mbstd;
  double fmaps, lrate, gamma, ema;
  std::optional<double> ramp;
  int map;
};

Preset preset(const std::string& name) {
  // The reference's train.py cfg_specs; auto is filled from the resolution below.
  if (name == "auto") return {-1, 25000, -1, -1, -1, -1, -1, -1, 0.05, 2};
  if (name == "stylegan2") return {8, 25000, 32, 4, 1, 0.002, 10, 10, std::nullopt, 8};
  if (name == "paper256") return {8, 25000, 64, 8, 0.5, 0.0025, 1, 20, std::nullopt, 8};
  if (name == "paper512") return {8, 25000, 64, 8, 1, 0.0025, 0.5, 20, std::nullopt, 8};
  if (name == "paper1024") return {8, 25000, 32, 4, 1, 0.002, 2, 10, std::nullopt, 8};
  if (name == "cifar") return {2, 100000, 64, 32, 1, 0.0025, 0.01, 500, 0.05, 2};
  throw std::invalid_argument("--cfg: unknown preset '" + name + "' (" + train_presets_help() + ")");
}

std::string fmt_num(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

}  // namespace

const char* train_presets_help() { return "auto, stylegan2, paper256, paper512, paper1024, cifar"; }

void TrainOptions::resolve(int res, int ch, int ldim, int64_t n, int trainers) {
  if (trainers < 1) throw std::invalid_argument("number of trainers must be at least 1");
  if (n < 1) throw std::invalid_argument("--data: the pack holds no images");
  resolution = res;
  channels = ch;
  dataset_size = n;
  num_trainers = trainers;
  if (cond && ldim == 0) throw std::invalid_argument("--cond: the pack '" + data + "' has no labels");
  label_dim = cond ? ldim : 0;

  Preset s = preset(cfg);
  desc = dataset_name;
  if (cond) desc += "-cond";
  if (mirror) desc += "-mirror";
  desc += "-" + cfg;
  if (cfg == "auto") {
    desc += std::to_string(trainers);
    s.ref_gpus = trainers;
    s.mb = std::max(std::min(trainers * std::min(4096 / res, 32), 64), trainers);
    s.mbstd = std::min(s.mb / trainers, 4);
    s.fmaps = res >= 512 ? 1 : 0.5;
    s.lrate = res >= 1024 ? 0.002 : 0.0025;
    s.gamma = 0.0002 * res * res / s.mb;
    s.ema = s.mb * 10.0 / 32;
  }

  G = GeneratorConfig();
  D = DiscriminatorConfig();
  G.z_dim = G.w_dim = 512;
  G.c_dim = D.c_dim = label_dim;
  G.img_resolution = D.img_resolution = res;
  G.img_channels = D.img_channels = ch;
  G.channel_base = D.channel_base = static_cast<int>(s.fmaps * 32768);
  G.channel_max = D.channel_max = 512;
  G.mapping_layers = s.map;
  G.num_fp16_res = D.num_fp16_res = 4;  // kept for GPU runs; CPU runs in float32
  G.conv_clamp = D.conv_clamp = 256.0;
  D.mbstd_group_size = s.mbstd;
  lrate = s.lrate;
  r1_gamma = s.gamma;
  total_kimg = s.kimg;
  batch_size = s.mb;
  batch_gpu = s.mb / s.ref_gpus;
  ema_kimg = s.ema;
  ema_rampup = s.ramp;
  pl_weight = 2;
  style_mixing_prob = 0.9;
  if (cfg == "cifar") {
    pl_weight = 0;
    style_mixing_prob = 0;
    D.architecture = "orig";
  }

  if (gamma_override) {
    if (*gamma_override < 0) throw std::invalid_argument("--gamma must be non-negative");
    desc += "-gamma" + fmt_num(*gamma_override);
    r1_gamma = *gamma_override;
  }
  if (kimg_override) {
    if (*kimg_override <= 0) throw std::invalid_argument("--kimg must be positive");
    desc += "-kimg" + fmt_num(*kimg_override);
    total_kimg = *kimg_override;
  }
  if (batch_override) {
    if (*batch_override < 1 || *batch_override % trainers != 0)
      throw std::invalid_argument("--batch must be a positive multiple of the number of trainers (" +
                                  std::to_string(trainers) + ")");
    desc += "-batch" + std::to_string(*batch_override);
    batch_size = *batch_override;
    batch_gpu = *batch_override / trainers;
  }
  if (batch_gpu_override > 0) batch_gpu = batch_gpu_override;
  if (cbase_override) G.channel_base = D.channel_base = *cbase_override;
  if (cmax_override) G.channel_max = D.channel_max = *cmax_override;
  if (map_override) G.mapping_layers = *map_override;
  if (mbstd_override) D.mbstd_group_size = *mbstd_override;
  if (batch_size % trainers != 0)
    throw std::invalid_argument("batch " + std::to_string(batch_size) + " is not divisible by " +
                                std::to_string(trainers) + " trainers");
  batch_gpu = std::max(1, std::min(batch_gpu, batch_per_trainer()));
  if (batch_per_trainer() % batch_gpu != 0)
    throw std::invalid_argument("--batch-gpu " + std::to_string(batch_gpu) + " does not divide the per-trainer batch " +
                                std::to_string(batch_per_trainer()));
  if (D.mbstd_group_size > 0 && batch_gpu % std::min(D.mbstd_group_size, batch_gpu) != 0)
    throw std::invalid_argument("minibatch-std group " + std::to_string(D.mbstd_group_size) +
                                " does not divide the batch per round " + std::to_string(batch_gpu));

  augment_p = 0;
  ada_target.reset();
  if (aug == "ada") {
    ada_target = 0.6;
  } else if (aug == "noaug") {
  } else if (aug == "fixed") {
    if (!p_override) throw std::invalid_argument("--aug=fixed needs --p");
  } else {
    throw std::invalid_argument("--aug: unknown mode '" + aug + "' (ada, noaug, fixed)");
  }
  desc += "-" + aug;
  if (p_override) {
    if (aug != "fixed") throw std::invalid_argument("--p can only be given with --aug=fixed");
    if (*p_override < 0 || *p_override > 1) throw std::invalid_argument("--p must be in [0, 1]");
    desc += "-p" + fmt_num(*p_override);
    augment_p = *p_override;
  }
  if (target_override) {
    if (aug != "ada") throw std::invalid_argument("--target can only be given with --aug=ada");
    if (*target_override < 0 || *target_override > 1) throw std::invalid_argument("--target must be in [0, 1]");
    desc += "-target" + fmt_num(*target_override);
    ada_target = *target_override;
  }
  if (augpipe != "bgc") desc += "-" + augpipe;
  ada_kimg = 500;
  if (!resume_source.empty()) {
    std::string name = resume_source;
    const size_t slash = name.find_last_of('/');
    if (slash != std::string::npos) name = name.substr(slash + 1);
    const size_t dot = name.find_last_of('.');
    if (dot != std::string::npos && dot > 0) name = name.substr(0, dot);
    desc += "-resume" + name;
    ada_kimg = 100;
    ema_rampup.reset();
  }
  if (ada_kimg_override) {
    if (*ada_kimg_override <= 0) throw std::invalid_argument("--ada-kimg must be positive");
    ada_kimg = *ada_kimg_override;
  }
  if (freezed < 0) throw std::invalid_argument("--freezed must be non-negative");
  if (freezed > 0) desc += "-freezed" + std::to_string(freezed);
  D.freeze_layers = freezed;
  if (kimg_per_tick <= 0) throw std::invalid_argument("--tick must be positive");
  if (grid_cols < 0 || grid_rows < 0) throw std::invalid_argument("--grid must be COLSxROWS with positive numbers");
  if (snap < 1) throw std::invalid_argument("--snap must be at least 1");
  data::ChannelView view;
  try {
    view = data::parse_channel_view(snapshot_rgb);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string("--snapshot-rgb: ") + e.what());
  }
  for (int k : view.map)
    if (channels > 0 && k >= channels)
      throw std::invalid_argument("--snapshot-rgb " + snapshot_rgb + ": the data has " + std::to_string(channels) +
                                  " channels (0-" + std::to_string(channels - 1) + ")");
  if (keep_snapshots < 0) throw std::invalid_argument("--keep must be non-negative");
  G.validate();
  D.validate();
}

int64_t topk_count(double gamma, double min_fraction, int64_t batch, int64_t epoch) {
  const double annealed = std::floor(std::pow(gamma, static_cast<double>(std::max<int64_t>(0, epoch))) * static_cast<double>(batch));
  const double floor_k = std::floor(min_fraction * static_cast<double>(batch));
  return std::clamp<int64_t>(static_cast<int64_t>(std::max(annealed, floor_k)), 1, std::max<int64_t>(1, batch));
}

nlohmann::json TrainOptions::to_json() const {
  nlohmann::json j;
  j["data"] = data;
  j["outdir"] = outdir;
  j["cfg"] = cfg;
  j["aug"] = aug;
  j["augpipe"] = augpipe;
  j["mirror"] = mirror;
  j["cond"] = cond;
  j["freezed"] = freezed;
  j["random_seed"] = seed;
  j["kimg_per_tick"] = kimg_per_tick;
  j["snap"] = snap;
  j["keep_snapshots"] = keep_snapshots;
  j["threads"] = threads;
  j["grid"] = {grid_cols, grid_rows};
  if (!snapshot_rgb.empty()) j["snapshot_rgb"] = snapshot_rgb;
  j["resolution"] = resolution;
  j["channels"] = channels;
  j["label_dim"] = label_dim;
  j["dataset_size"] = dataset_size;
  j["dataset_name"] = dataset_name;
  j["dataset_hash"] = dataset_hash;
  j["num_trainers"] = num_trainers;
  j["batch_size"] = batch_size;
  j["batch_gpu"] = batch_gpu;
  j["total_kimg"] = total_kimg;
  j["G_opt_kwargs"] = {{"lr", lrate}, {"betas", {adam_beta1, adam_beta2}}, {"eps", adam_eps}};
  j["D_opt_kwargs"] = j["G_opt_kwargs"];
  j["loss_kwargs"] = {{"r1_gamma", r1_gamma},           {"pl_weight", pl_weight},
                      {"pl_decay", pl_decay},           {"pl_batch_shrink", pl_batch_shrink},
                      {"style_mixing_prob", style_mixing_prob}};
  if (topk) j["loss_kwargs"]["topk"] = {{"gamma", topk_gamma}, {"min_fraction", topk_min}};
  j["ema_kimg"] = ema_kimg;
  j["ema_rampup"] = ema_rampup ? nlohmann::json(*ema_rampup) : nlohmann::json(nullptr);
  j["G_reg_interval"] = G_reg_interval;
  j["D_reg_interval"] = D_reg_interval;
  j["augment_p"] = augment_p;
  j["ada_target"] = ada_target ? nlohmann::json(*ada_target) : nlohmann::json(nullptr);
  j["ada_interval"] = ada_interval;
  j["ada_kimg"] = ada_kimg;
  j["G_kwargs"] = G.to_json();
  j["D_kwargs"] = D.to_json();
  j["run_desc"] = desc;
  j["noise_mode"] = noise_mode;
  if (augment_debug_percentile) j["augment_debug_percentile"] = *augment_debug_percentile;
  j["resume_source"] = resume_source;
  return j;
}

TrainOptions TrainOptions::from_json(const nlohmann::json& j) {
  TrainOptions o;
  try {
    o.data = j.at("data");
    o.outdir = j.value("outdir", "");
    o.cfg = j.at("cfg");
    o.aug = j.at("aug");
    o.augpipe = j.at("augpipe");
    o.mirror = j.at("mirror");
    o.cond = j.at("cond");
    o.freezed = j.at("freezed");
    o.seed = j.at("random_seed");
    o.kimg_per_tick = j.at("kimg_per_tick");
    o.snap = j.at("snap");
    o.keep_snapshots = j.value("keep_snapshots", 0);
    o.threads = j.value("threads", 0);
    if (j.contains("grid")) {
      o.grid_cols = j.at("grid").at(0);
      o.grid_rows = j.at("grid").at(1);
    }
    o.snapshot_rgb = j.value("snapshot_rgb", "");
    o.resolution = j.at("resolution");
    o.channels = j.at("channels");
    o.label_dim = j.at("label_dim");
    o.dataset_size = j.at("dataset_size");
    o.dataset_name = j.at("dataset_name");
    o.dataset_hash = j.at("dataset_hash");
    o.num_trainers = j.at("num_trainers");
    o.batch_size = j.at("batch_size");
    o.batch_gpu = j.at("batch_gpu");
    o.total_kimg = j.at("total_kimg");
    const auto& opt = j.at("G_opt_kwargs");
    o.lrate = opt.at("lr");
    o.adam_beta1 = opt.at("betas").at(0);
    o.adam_beta2 = opt.at("betas").at(1);
    o.adam_eps = opt.at("eps");
    const auto& l = j.at("loss_kwargs");
    o.r1_gamma = l.at("r1_gamma");
    o.pl_weight = l.at("pl_weight");
    o.pl_decay = l.at("pl_decay");
    o.pl_batch_shrink = l.at("pl_batch_shrink");
    o.style_mixing_prob = l.at("style_mixing_prob");
    if (l.contains("topk")) {
      o.topk = true;
      o.topk_gamma = l.at("topk").at("gamma");
      o.topk_min = l.at("topk").at("min_fraction");
    }
    o.ema_kimg = j.at("ema_kimg");
    if (!j.at("ema_rampup").is_null()) o.ema_rampup = j.at("ema_rampup").get<double>();
    o.G_reg_interval = j.at("G_reg_interval");
    o.D_reg_interval = j.at("D_reg_interval");
    o.augment_p = j.at("augment_p");
    if (!j.at("ada_target").is_null()) o.ada_target = j.at("ada_target").get<double>();
    o.ada_interval = j.at("ada_interval");
    o.ada_kimg = j.at("ada_kimg");
    o.G = GeneratorConfig::from_json(j.at("G_kwargs"));
    o.D = DiscriminatorConfig::from_json(j.at("D_kwargs"));
    o.desc = j.value("run_desc", "");
    o.noise_mode = j.value("noise_mode", "random");
    if (j.contains("augment_debug_percentile")) o.augment_debug_percentile = j.at("augment_debug_percentile").get<double>();
    o.resume_source = j.value("resume_source", "");
  } catch (const nlohmann::json::exception& e) {
    throw std::invalid_argument(std::string("training options: ") + e.what());
  }
  return o;
}

}  // namespace sf::trainer
