#include "trainer/checkpoint.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <stdexcept>

#include "data/h5.h"
#include "metrics/monitor.h"
#include "trainer/tensor_io.h"

namespace fs = std::filesystem;

namespace sf::trainer {
namespace {

constexpr const char* kFormat = "styleforge-checkpoint";
constexpr int64_t kFormatVersion = 1;

void fsync_path(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

[[noreturn]] void bad(const std::string& path, const std::string& what) {
  throw std::runtime_error(path + ": " + what);
}

}  // namespace

void write_checkpoint(const std::string& path, const CheckpointWrite& c) {
  std::lock_guard<std::recursive_mutex> lock(h5::global_mutex());
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  try {
    {
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
      h5::flush(f);
    }
    fsync_path(tmp);
    fs::rename(tmp, path);
    fsync_path(fs::path(path).parent_path().empty() ? "." : fs::path(path).parent_path().string());
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
  if (!h5::has_attr(f, "format") || h5::read_string_attr(f, "format") != kFormat)
    bad(path, "not a styleforge checkpoint (no format=\"" + std::string(kFormat) + "\" attribute)");
  const int64_t v = h5::read_int_attr(f, "format_version");
  if (v < 1 || v > kFormatVersion)
    bad(path, "checkpoint format version " + std::to_string(v) + " is not supported (this styleforge reads 1.." +
                  std::to_string(kFormatVersion) + ")");
  nlohmann::json cfg;
  try {
    cfg = nlohmann::json::parse(h5::read_string_attr(f, "config"));
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
      info.options = TrainOptions::from_json(nlohmann::json::parse(h5::read_string_attr(f, "training_options")));
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
