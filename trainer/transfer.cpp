#include "trainer/transfer.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/GradMode.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>

#include "data/h5.h"
#include "trainer/checkpoint.h"
#include "trainer/import.h"
#include "trainer/tensor_io.h"

namespace fs = std::filesystem;

namespace sf::trainer {
namespace {

bool ends_with(const std::string& s, const std::string& t) {
  return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
}
bool starts_with(const std::string& s, const std::string& t) { return s.rfind(t, 0) == 0; }

std::map<std::string, at::Tensor> read_group(const h5::Handle& f, const std::string& group) {
  std::map<std::string, at::Tensor> out;
  h5::Handle g = h5::open_group(f, group);
  for (const auto& name : h5::members(g)) out[name] = read_tensor(g, name);
  return out;
}

enum class Action { Copy, Fresh, ToRGBMean, FromRGBSpread, Fc0Columns };

struct Plan {
  std::vector<std::pair<const NamedTensor*, Action>> steps;
  int copied = 0, adapted = 0, fresh = 0, dropped = 0;
  std::vector<std::string> adapted_names, fresh_names;
};

struct Sides {
  int src_channels, dst_channels, src_c, dst_c, z_dim;
};

// Decides, for every tensor of the run's network, how the source fills it. Shape differences that
// no rule explains go to `errors`.
Plan plan_network(const ParamStore& dst, const std::map<std::string, at::Tensor>& src, const std::string& net,
                  bool is_D, const Sides& s, std::vector<std::string>& errors) {
  Plan p;
  std::set<std::string> used;
  for (const auto& e : dst.entries()) {
    const std::string& k = e.name;
    auto it = src.find(k);
    Action a = Action::Fresh;
    if (it != src.end()) {
      used.insert(k);
      const at::Tensor& x = it->second;
      const at::Tensor& t = e.tensor;
      const bool same_rest = x.dim() == t.dim() && x.dim() >= 1;
      if (x.sizes() == t.sizes()) {
        a = Action::Copy;
      } else if (!is_D && s.src_channels != s.dst_channels &&
                 (ends_with(k, ".torgb.weight") || ends_with(k, ".torgb.bias")) && same_rest &&
                 x.size(0) == s.src_channels && t.size(0) == s.dst_channels && x.sizes().slice(1) == t.sizes().slice(1)) {
        a = Action::ToRGBMean;
      } else if (is_D && s.src_channels != s.dst_channels && ends_with(k, ".fromrgb.weight") && x.dim() == 4 &&
                 t.dim() == 4 && x.size(0) == t.size(0) && x.size(1) == s.src_channels && t.size(1) == s.dst_channels &&
                 x.size(2) == t.size(2) && x.size(3) == t.size(3)) {
        a = Action::FromRGBSpread;
      } else if (!is_D && s.src_c != s.dst_c && k == "mapping.fc0.weight" && x.dim() == 2 && t.dim() == 2 &&
                 x.size(0) == t.size(0) && x.size(1) >= s.z_dim && t.size(1) >= s.z_dim) {
        a = Action::Fc0Columns;
      } else if (s.src_c != s.dst_c && ((!is_D && starts_with(k, "mapping.embed.")) ||
                                        (is_D && (starts_with(k, "mapping.") || starts_with(k, "b4.out."))))) {
        a = Action::Fresh;  // the conditioning changed: new label embedding / projection
      } else {
        errors.push_back(net + "/" + k + ": source " + h5::shape_str(x.sizes().vec()) + " vs run " +
                         h5::shape_str(t.sizes().vec()));
        continue;
      }
    }
    if (a == Action::Copy) {
      ++p.copied;
    } else if (a == Action::Fresh) {
      ++p.fresh;
      p.fresh_names.push_back(k);
    } else {
      ++p.adapted;
      p.adapted_names.push_back(k);
    }
    p.steps.emplace_back(&e, a);
  }
  for (const auto& [k, v] : src)
    if (!used.count(k)) ++p.dropped;
  return p;
}

void apply_plan(const Plan& p, const std::map<std::string, at::Tensor>& src, const Sides& s) {
  at::NoGradGuard no_grad;
  for (const auto& [entry, a] : p.steps) {
    if (a == Action::Fresh) continue;
    at::Tensor& t = const_cast<at::Tensor&>(entry->tensor);
    const at::Tensor& x = src.at(entry->name);
    switch (a) {
      case Action::Copy: t.copy_(x); break;
      // Every run row is the mean of the source rows (gray from RGB: the mean; RGB or N channels
      // from gray: the gray row replicated; N from RGB: all channels start equal).
      case Action::ToRGBMean: t.copy_(x.mean(0, /*keepdim=*/true).expand_as(t)); break;
      // Every run column is the sum of the source columns split over the run's N channels, in
      // effective weights: FromRGB's equalised-learning-rate gain is 1/sqrt(image channels), so
      // stored = sum(source stored) / sqrt(S) * sqrt(N) / N. An image whose N channels all equal g
      // then gives the source's features for g replicated to its S channels.
      case Action::FromRGBSpread: {
        const double n = s.dst_channels;
        t.copy_((x.sum(1, /*keepdim=*/true) * (std::sqrt(n) / n * std::sqrt(1.0 / s.src_channels))).expand_as(t));
        break;
      }
      case Action::Fc0Columns:
        t.narrow(1, 0, s.z_dim).copy_(x.narrow(1, 0, s.z_dim));
        break;
      case Action::Fresh: break;
    }
  }
}

std::string describe(const std::string& net, const Plan& p) {
  std::ostringstream o;
  o << net << ": " << p.copied << " copied";
  if (p.adapted) o << ", " << p.adapted << " adapted";
  if (p.fresh) o << ", " << p.fresh << " new";
  if (p.dropped) o << ", " << p.dropped << " dropped";
  return o.str();
}

std::string name_list(const std::vector<std::string>& names, size_t max) {
  std::string out;
  for (size_t k = 0; k < names.size() && k < max; ++k) out += (k ? ", " : "") + names[k];
  if (names.size() > max) out += ", ...";
  return out;
}

std::string url_basename(const std::string& url) { return url.substr(url.find_last_of('/') + 1); }

}  // namespace

const std::vector<NamedTransferSource>& named_transfer_sources() {
  // The reference train.py's resume_specs, plus the published networks of its README.
  static const std::vector<NamedTransferSource> table = {
      {"ffhq256", "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/transfer-learning-source-nets/"
                  "ffhq-res256-mirror-paper256-noaug.pkl"},
      {"ffhq512", "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/transfer-learning-source-nets/"
                  "ffhq-res512-mirror-stylegan2-noaug.pkl"},
      {"ffhq1024", "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/transfer-learning-source-nets/"
                   "ffhq-res1024-mirror-stylegan2-noaug.pkl"},
      {"celebahq256", "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/transfer-learning-source-nets/"
                      "celebahq-res256-mirror-paper256-kimg100000-ada-target0.5.pkl"},
      {"lsundog256", "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/transfer-learning-source-nets/"
                     "lsundog-res256-paper256-kimg100000-noaug.pkl"},
      {"afhqcat", "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/afhqcat.pkl"},
      {"afhqdog", "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/afhqdog.pkl"},
      {"afhqwild", "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/afhqwild.pkl"},
      {"brecahad", "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/brecahad.pkl"},
      {"metfaces", "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metfaces.pkl"},
  };
  return table;
}

std::string default_cache_dir() {
  if (const char* e = std::getenv("STYLEFORGE_CACHE")) return e;
  if (const char* x = std::getenv("XDG_CACHE_HOME")) return std::string(x) + "/styleforge";
  if (const char* h = std::getenv("HOME")) return std::string(h) + "/.cache/styleforge";
  return ".styleforge-cache";
}

std::string resolve_transfer_source(const std::string& source, const std::string& cache_dir,
                                    const std::string& scratch_dir) {
  auto import_into_scratch = [&](const std::string& pkl) {
    fs::create_directories(scratch_dir);
    const std::string dest = (fs::path(scratch_dir) / (fs::path(pkl).stem().string() + ".h5")).string();
    import_network_pickle(pkl, dest, /*overwrite=*/true);
    return dest;
  };
  for (const auto& n : named_transfer_sources()) {
    if (source != n.name) continue;
    const std::string file = url_basename(n.url);
    const fs::path pkl = fs::path(cache_dir) / file;
    const fs::path h5 = fs::path(cache_dir) / (pkl.stem().string() + ".h5");
    if (fs::exists(h5)) {
      read_checkpoint_info(h5.string());
      return h5.string();
    }
    if (fs::exists(pkl)) return import_into_scratch(pkl.string());
    throw std::runtime_error("--resume " + source + ": " + file +
                             " is not in the cache and cannot be downloaded from here; fetch " + n.url +
                             " and save it as " + pkl.string() + " (or import it there as " + h5.string() +
                             " with `styleforge import`; the cache is $STYLEFORGE_CACHE, else "
                             "$XDG_CACHE_HOME/styleforge, else ~/.cache/styleforge)");
  }
  const std::string ext = fs::path(source).extension().string();
  if (!fs::exists(source)) {
    std::string names;
    for (const auto& n : named_transfer_sources()) names += (names.empty() ? "" : ", ") + std::string(n.name);
    throw std::runtime_error("--resume " + source + ": no such file, and not a named source (" + names + ")");
  }
  if (ext == ".pkl") return import_into_scratch(source);
  CheckpointInfo info = read_checkpoint_info(source);  // throws naming the file when it is not a checkpoint
  if (!info.has_D) throw std::runtime_error(source + ": has no discriminator (D/) to transfer from");
  return source;
}

std::string transfer_networks(const std::string& checkpoint, Generator& G, Discriminator& D, Generator& G_ema) {
  CheckpointInfo info = read_checkpoint_info(checkpoint);
  std::map<std::string, at::Tensor> src_G, src_D, src_G_ema;
  {
    std::lock_guard<std::recursive_mutex> lock(h5::global_mutex());
    h5::Handle f = h5::open_file(checkpoint);
    src_G = read_group(f, "G");
    src_G_ema = read_group(f, "G_ema");
    if (info.has_D && h5::is_group(f, "D")) src_D = read_group(f, "D");
  }
  const Sides gs{info.G.img_channels, G.config().img_channels, info.G.c_dim, G.config().c_dim, G.config().z_dim};
  const Sides ds{info.has_D ? info.D.img_channels : info.G.img_channels, D.config().img_channels,
                 info.has_D ? info.D.c_dim : info.G.c_dim, D.config().c_dim, 0};
  if (info.G.z_dim != G.config().z_dim || info.G.w_dim != G.config().w_dim)
    throw std::runtime_error(checkpoint + ": z_dim/w_dim " + std::to_string(info.G.z_dim) + "/" +
                             std::to_string(info.G.w_dim) + " differ from the run's " +
                             std::to_string(G.config().z_dim) + "/" + std::to_string(G.config().w_dim));
  std::vector<std::string> errors;
  Plan pg = plan_network(G.state(), src_G, "G", false, gs, errors);
  Plan pe = plan_network(G_ema.state(), src_G_ema, "G_ema", false, gs, errors);
  Plan pd = plan_network(D.state(), src_D, "D", true, ds, errors);
  if (!errors.empty()) {
    std::string msg = checkpoint + ": cannot transfer " + std::to_string(errors.size()) +
                      " tensors whose shapes differ (channel_base/channel_max, mapping or minibatch-std settings "
                      "differ from the source's): ";
    for (size_t k = 0; k < errors.size(); ++k) msg += (k ? "; " : "") + errors[k];
    throw std::runtime_error(msg);
  }
  apply_plan(pg, src_G, gs);
  apply_plan(pe, src_G_ema, gs);
  if (!src_D.empty()) apply_plan(pd, src_D, ds);

  std::string s = describe("G", pg) + "; " + describe("D", src_D.empty() ? Plan{} : pd) + "; " + describe("G_ema", pe);
  if (src_D.empty()) s += " (the source has no D: D is freshly initialised)";
  auto names = [&](const std::vector<std::string>& g, const std::vector<std::string>& d) {
    std::vector<std::string> all;
    for (size_t k = 0; k < g.size() && k < 4; ++k) all.push_back("G/" + g[k]);
    if (g.size() > 4) all.push_back("G/...");
    for (size_t k = 0; k < d.size() && k < 4; ++k) all.push_back("D/" + d[k]);
    if (d.size() > 4) all.push_back("D/...");
    return name_list(all, all.size());
  };
  if (!pg.adapted_names.empty() || !pd.adapted_names.empty()) s += "; adapted: " + names(pg.adapted_names, pd.adapted_names);
  if (!pg.fresh_names.empty() || (!src_D.empty() && !pd.fresh_names.empty()))
    s += "; new: " + names(pg.fresh_names, src_D.empty() ? std::vector<std::string>{} : pd.fresh_names);
  return s;
}

void adopt_source_architecture(const std::string& checkpoint, TrainOptions& o) {
  const CheckpointInfo src = read_checkpoint_info(checkpoint);
  auto conflict = [&](const char* flag, const std::optional<int>& given, int source_value) {
    if (given && *given != source_value)
      throw std::invalid_argument(std::string(flag) + " " + std::to_string(*given) + " contradicts the source network (" +
                                  std::to_string(source_value) + "): transfer learning keeps the source's architecture");
  };
  conflict("--cbase", o.cbase_override, src.G.channel_base);
  conflict("--cmax", o.cmax_override, src.G.channel_max);
  conflict("--map", o.map_override, src.G.mapping_layers);

  GeneratorConfig g = src.G;
  g.c_dim = o.G.c_dim;
  g.img_resolution = o.G.img_resolution;
  g.img_channels = o.G.img_channels;

  DiscriminatorConfig d = src.has_D ? src.D : o.D;
  if (!src.has_D) {
    d.channel_base = g.channel_base;
    d.channel_max = g.channel_max;
    d.conv_clamp = g.conv_clamp;
    d.num_fp16_res = g.num_fp16_res;
  }
  d.c_dim = o.D.c_dim;
  d.img_resolution = o.D.img_resolution;
  d.img_channels = o.D.img_channels;
  d.mbstd_group_size = o.D.mbstd_group_size;
  d.freeze_layers = o.D.freeze_layers;
  if (!src.has_D || src.D.c_dim == 0) {
    d.cmap_dim = o.D.cmap_dim;
    d.mapping_layers = o.D.mapping_layers;
  }
  g.validate();
  d.validate();
  o.G = g;
  o.D = d;
}

}  // namespace sf::trainer
