#include "trainer/checkpoint.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <stdexcept>

#include "data/atomic_file.h"
#include "data/h5.h"
#include "metrics/monitor.h"
#include "trainer/tensor_io.h"

namespace fs = std::filesystem;

namespace sf::trainer {
namespace {

constexpr const char* kFormat = "styleforge-checkpoint";
// 2: random states of device streams are saved as "<kind>.<name>" (e.g. cuda.local.rank0) beside the
// CPU ones; version 1 files (CPU streams only) read as before.
constexpr int64_t kFormatVersion = 2;

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": " + what);
}

}  // namespace

void write_checkpoint(const std::string& path, const CheckpointWrite& c) {
  std::lock_guard<std::recursive_mutex> lock(h5::global_mutex());
  // Temporaries of killed writers in this folder go first; ours is DEST.tmp-PID@HOST.
  const fs::path parent = fs::path(path).parent_path();
  data::remove_stale_temporaries(parent.empty() ? "." : parent.string());
  const std::string tmp = data::temp_name_for(path);
  try {
    {
      // Every dataset is checksummed by the h5 layer (compact in a checksummed header, or chunked
      // with Fletcher32) and HDF5 verifies it on every read.
      h5::Handle f = h5::create_file(tmp, /*overwrite=*/true);
      h5::write_string_attr(f, "format", kFormat);
      h5::write_int_attr(f, "format_version", kFormatVersion);
      h5::write_string_attr(f, "styleforge_version", STYLEFORGE_VERSION);
      nlohmann::json cfg;
      if (c.G) cfg["G"] = c.G->config().to_json();
      if (c.D) cfg["D"] = c.D->config().to_json();
      h5::write_string_attr(f, "config", cfg.dump());
      if (c.G) save_state(c.G->state(), h5::require_group(f, "G"));
      if (c.D) save_state(c.D->state(), h5::require_group(f, "D"));
      if (c.G_ema) save_state(c.G_ema->state(), h5::require_group(f, "G_ema"));
      {
        h5::Handle aug = h5::require_group(f, "augment_pipe");
        float p = static_cast<float>(c.counters.augment_p);
        h5::write_f32(aug, "p", &p, {});
      }
      if (c.options) {
        h5::write_string_attr(f, "training_options", c.options->to_json().dump());
        h5::write_string_attr(f, "dataset_hash", c.options->dataset_hash);
        const auto& k = c.counters;
        h5::write_int_attr(f, "cur_nimg", k.cur_nimg);
        h5::write_int_attr(f, "cur_tick", k.cur_tick);
        h5::write_int_attr(f, "batch_idx", k.batch_idx);
        h5::write_int_attr(f, "tick_start_nimg", k.tick_start_nimg);
        h5::write_double_attr(f, "augment_p", k.augment_p);
        h5::write_double_attr(f, "ada_sign_sum", k.ada_sign_sum);
        h5::write_double_attr(f, "ada_sign_count", k.ada_sign_count);
        h5::write_double_attr(f, "pl_mean", k.pl_mean);
      }
      if (c.G_opt) c.G_opt->save(h5::require_group(f, "G_opt"));
      if (c.D_opt) c.D_opt->save(h5::require_group(f, "D_opt"));
      if (!c.rngs.empty()) {
        h5::Handle r = h5::require_group(f, "state/rng");
        for (const auto& [name, state] : c.rngs) write_tensor(r, name, state);
      }
      h5::close_file(f);  // a failed flush (disk full) throws here, before anything is renamed
    }
    data::commit_file(tmp, path);  // fsync, rename, fsync of the folder; throws naming the file
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
}

CheckpointInfo read_checkpoint_info(const std::string& path) {
  std::lock_guard<std::recursive_mutex> lock(h5::global_mutex());
  CheckpointInfo info;
  info.path = path;
  if (!fs::exists(path)) bad(path, "no such checkpoint");
  h5::Handle f = h5::open_file(path);
  // Files in the checksummed HDF5 format (superblock >= 2) never hold variable-length strings:
  // one there is damage, and libhdf5 reads their heap unchecked.
  const bool vlen_ok = h5::superblock_version(path) < 2;
  if (!h5::has_attr(f, "format") || h5::read_string_attr(f, "format", vlen_ok) != kFormat)
    bad(path, "not a styleforge checkpoint (no format=\"" + std::string(kFormat) + "\" attribute)");
  const int64_t v = h5::read_int_attr(f, "format_version");
  if (v < 1 || v > kFormatVersion)
    bad(path, "checkpoint format version " + std::to_string(v) + " is not supported (this styleforge reads 1.." +
                  std::to_string(kFormatVersion) + ")");
  nlohmann::json cfg;
  try {
    cfg = nlohmann::json::parse(h5::read_string_attr(f, "config", vlen_ok));
    info.G = GeneratorConfig::from_json(cfg.at("G"));
    if (cfg.contains("D")) {
      info.D = DiscriminatorConfig::from_json(cfg.at("D"));
      info.has_D = true;
    }
  } catch (const std::exception& e) {
    bad(path, std::string("bad config attribute: ") + e.what());
  }
  if (!h5::is_group(f, "G") || !h5::is_group(f, "G_ema")) bad(path, "missing group G/ or G_ema/");
  if (h5::has_attr(f, "training_options")) {
    try {
      info.options = TrainOptions::from_json(nlohmann::json::parse(h5::read_string_attr(f, "training_options", vlen_ok)));
    } catch (const std::exception& e) {
      bad(path, std::string("bad training_options attribute: ") + e.what());
    }
    auto& k = info.counters;
    k.cur_nimg = h5::read_int_attr(f, "cur_nimg");
    k.cur_tick = h5::read_int_attr(f, "cur_tick");
    k.batch_idx = h5::read_int_attr(f, "batch_idx");
    k.tick_start_nimg = h5::read_int_attr(f, "tick_start_nimg");
    k.augment_p = h5::read_double_attr(f, "augment_p");
    k.ada_sign_sum = h5::read_double_attr(f, "ada_sign_sum");
    k.ada_sign_count = h5::read_double_attr(f, "ada_sign_count");
    k.pl_mean = h5::read_double_attr(f, "pl_mean");
    info.has_training_state = h5::is_group(f, "G_opt") && h5::is_group(f, "D_opt") && h5::is_group(f, "state");
    // A file with training options is a training state: missing parts are damage, not a hint to
    // treat it as a network to transfer from (which would silently start a new run at kimg 0).
    if (!info.has_training_state) {
      std::string missing;
      for (const char* g : {"D", "G_opt", "D_opt", "state"})
        if (!h5::is_group(f, g)) missing += std::string(missing.empty() ? "" : ", ") + g + "/";
      bad(path, "a training checkpoint (it has training_options) without " + missing +
                    ": damaged or incomplete; resume from an intact checkpoint");
    }
    for (const auto& [name, v] : {std::pair<const char*, double>{"augment_p", k.augment_p}, {"pl_mean", k.pl_mean},
                                  {"ada_sign_sum", k.ada_sign_sum}, {"ada_sign_count", k.ada_sign_count}})
      if (!std::isfinite(v)) bad(path, std::string("attribute ") + name + " is not finite (" + std::to_string(v) + ")");
    if (k.cur_nimg < 0 || k.cur_tick < 0 || k.batch_idx < 0) bad(path, "negative training counters (damaged file)");
  } else if (h5::exists(f, "augment_pipe/p")) {
    info.counters.augment_p = h5::read_f64(f, "augment_pipe/p").at(0);
  }
  return info;
}

void load_networks(const std::string& path, Generator* G, Discriminator* D, Generator* G_ema) {
  std::lock_guard<std::recursive_mutex> lock(h5::global_mutex());
  h5::Handle f = h5::open_file(path);
  if (G) load_state(G->state(), h5::open_group(f, "G"));
  if (D) {
    if (!h5::is_group(f, "D")) bad(path, "has no discriminator (D/)");
    load_state(D->state(), h5::open_group(f, "D"));
  }
  if (G_ema) load_state(G_ema->state(), h5::open_group(f, "G_ema"));
  // NaN/inf weights make black images, meaningless FIDs and a run that cannot recover: refuse
  // them for every use (generate, metrics, --resume, transfer).
  for (const auto& [group, store] : {std::pair<const char*, const ParamStore*>{"G", G ? &G->state() : nullptr},
                                     {"D", D ? &D->state() : nullptr},
                                     {"G_ema", G_ema ? &G_ema->state() : nullptr}}) {
    if (!store) continue;
    for (const auto& e : store->entries())
      if (e.tensor.defined() && e.tensor.is_floating_point() && !at::isfinite(e.tensor).all().item<bool>())
        bad(path, std::string(group) + "/" + e.name + " holds non-finite values (NaN or inf): refusing these weights");
  }
}

void load_training_state(const std::string& path, Adam* G_opt, Adam* D_opt,
                         std::map<std::string, at::Tensor>* rngs) {
  std::lock_guard<std::recursive_mutex> lock(h5::global_mutex());
  h5::Handle f = h5::open_file(path);
  if (G_opt) G_opt->load(h5::open_group(f, "G_opt"));
  if (D_opt) D_opt->load(h5::open_group(f, "D_opt"));
  if (rngs) {
    if (!h5::is_group(f, "state/rng")) bad(path, "no random generator states (state/rng)");
    h5::Handle r = h5::open_group(f, "state/rng");
    rngs->clear();
    for (const auto& name : h5::members(r)) (*rngs)[name] = read_tensor(r, name, at::kByte);
  }
}

std::vector<std::string> list_snapshots(const std::string& run_dir) {
  std::vector<std::pair<long long, std::string>> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(run_dir, ec)) {
    const std::string name = e.path().filename().string();
    const long long order = metrics::snapshot_order(name);
    if (order >= 0 && e.path().extension() == ".h5") found.emplace_back(order, e.path().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& [k, p] : found) out.push_back(p);
  return out;
}

void prune_snapshots(const std::string& run_dir, int keep) {
  if (keep <= 0) return;
  auto all = list_snapshots(run_dir);
  for (size_t i = 0; i + keep < all.size(); ++i) {
    std::error_code ec;
    fs::remove(all[i], ec);
  }
}

}  // namespace sf::trainer
