#include "trainer/import.h"

#include "data/atomic_file.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/GradMode.h>
#include <ATen/CPUGeneratorImpl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>

#include "data/h5.h"
#include "trainer/augment.h"
#include "trainer/checkpoint.h"
#include "trainer/networks.h"
#include "trainer/pickle.h"

namespace fs = std::filesystem;

namespace sf::trainer {
namespace {

using pickle::Kind;
using pickle::Value;
using pickle::ValuePtr;

at::ScalarType scalar_type(const std::string& d, const std::string& what) {
  if (d == "float32") return at::kFloat;
  if (d == "float64") return at::kDouble;
  if (d == "float16") return at::kHalf;
  if (d == "bfloat16") return at::kBFloat16;
  if (d == "int64") return at::kLong;
  if (d == "int32") return at::kInt;
  if (d == "int16") return at::kShort;
  if (d == "int8") return at::kChar;
  if (d == "uint8") return at::kByte;
  if (d == "bool") return at::kBool;
  throw std::runtime_error(what + ": tensor dtype " + d + " is not supported");
}

// A pickled tensor (storage view) as a contiguous CPU tensor; bounds checked against its storage.
at::Tensor to_tensor(const Value& v, const std::string& what) {
  if (!v.is(Kind::Tensor) || !v.storage) throw std::runtime_error(what + ": not a tensor");
  const Value& st = *v.storage;
  const size_t el = pickle::dtype_size(st.dtype);
  const int64_t storage_numel = static_cast<int64_t>(st.bytes.size / el);
  if (v.numel() > 0) {
    // Offsets and strides come from the file: bound them before any arithmetic can overflow.
    if (v.storage_offset > storage_numel) throw std::runtime_error(what + ": storage offset beyond its storage");
    int64_t last = v.storage_offset;
    for (size_t k = 0; k < v.shape.size(); ++k) {
      if (v.shape[k] > 1 && (v.stride[k] > storage_numel || v.shape[k] > storage_numel + 1))
        throw std::runtime_error(what + ": tensor stride/size beyond its storage");
      last += (v.shape[k] - 1) * v.stride[k];
    }
    if (last >= storage_numel)
      throw std::runtime_error(what + ": tensor reaches element " + std::to_string(last) + " of a storage of " +
                               std::to_string(storage_numel));
  }
  at::Tensor storage = at::empty({storage_numel}, at::TensorOptions().dtype(scalar_type(st.dtype, what)));
  if (st.bytes.size) std::memcpy(storage.data_ptr(), st.bytes.data(), static_cast<size_t>(storage_numel) * el);
  return storage.as_strided(v.shape, v.stride, v.storage_offset).contiguous();
}

const Value& persistent(const ValuePtr& v, const char* name, const char* cls, const std::string& what) {
  if (!v || !v->is(Kind::Object) || !v->state)
    throw std::runtime_error(what + ": '" + name + "' is not a persistent network object");
  if (v->s != cls)
    throw std::runtime_error(what + ": '" + name + "' is a " + v->s + ", expected a " + cls);
  return *v;
}

// init_kwargs merged with the positional init_args under the reference constructor's names.
nlohmann::json init_kwargs(const Value& obj, const std::vector<const char*>& positional, const std::string& what) {
  ValuePtr kw = obj.state->get("_init_kwargs"), args = obj.state->get("_init_args");
  if (!kw) throw std::runtime_error(what + ": " + obj.s + " has no init_kwargs (not a persistent-class pickle?)");
  nlohmann::json j = pickle::to_json(*kw, what + " " + obj.s + ".init_kwargs");
  if (args && (args->is(Kind::Tuple) || args->is(Kind::List))) {
    if (args->items.size() > positional.size())
      throw std::runtime_error(what + ": " + obj.s + " has too many positional init_args");
    for (size_t k = 0; k < args->items.size(); ++k)
      j[positional[k]] = pickle::to_json(*args->items[k], what + " " + obj.s + ".init_args");
  }
  return j;
}

// Moves recognised keys of sub-dict `sub` into `out` (renamed); ignores `ignored`; accepts
// `must` keys only at the given value; fails naming any other key.
void take_kwargs(const nlohmann::json& j, const std::string& sub, const std::map<std::string, std::string>& rename,
                 const std::set<std::string>& ignored, const std::map<std::string, nlohmann::json>& must,
                 nlohmann::json& out, const std::string& who) {
  const nlohmann::json* src = &j;
  if (!sub.empty()) {
    if (!j.contains(sub) || j.at(sub).is_null()) return;
    src = &j.at(sub);
  }
  if (!src->is_object()) throw std::runtime_error(who + ": " + sub + " is not a dict");
  for (const auto& [k, v] : src->items()) {
    if (sub.empty() && (k == "mapping_kwargs" || k == "synthesis_kwargs" || k == "block_kwargs" ||
                        k == "epilogue_kwargs"))
      continue;
    const std::string name = sub.empty() ? k : sub + "." + k;
    if (auto r = rename.find(k); r != rename.end()) {
      out[r->second] = v;
    } else if (ignored.count(k)) {
    } else if (auto m = must.find(k); m != must.end()) {
      if (!v.is_null() && v != m->second)
        throw std::runtime_error(who + ": setting " + name + "=" + v.dump() + " is not supported (only " +
                                 m->second.dump() + ")");
    } else {
      throw std::runtime_error(who + ": unsupported setting " + name + "=" + v.dump());
    }
  }
}

// Sizes a file may ask for before anything is allocated (the published networks use at most 512
// channels, 512-dim z/w, 8 mapping layers).
void check_sizes(const std::string& who, int channels_at_4, int z, int w, int c, int map_layers) {
  if (channels_at_4 > 4096 || z > 4096 || w > 4096 || c > 100000 || map_layers > 64)
    throw std::runtime_error(who + ": implausible network size (channels " + std::to_string(channels_at_4) + ", z " +
                             std::to_string(z) + ", w " + std::to_string(w) + ", c " + std::to_string(c) +
                             ", mapping layers " + std::to_string(map_layers) + ")");
}

GeneratorConfig generator_config(const Value& obj, const std::string& what) {
  const std::string who = what + ": " + obj.s;
  nlohmann::json kw = init_kwargs(
      obj, {"z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs"}, what);
  nlohmann::json out;
  take_kwargs(kw, "", {{"z_dim", "z_dim"}, {"c_dim", "c_dim"}, {"w_dim", "w_dim"}, {"img_resolution", "img_resolution"},
                       {"img_channels", "img_channels"}}, {}, {}, out, who);
  const int w_dim = out.value("w_dim", 0);
  take_kwargs(kw, "mapping_kwargs",
              {{"num_layers", "mapping_layers"}, {"lr_multiplier", "mapping_lr_multiplier"}, {"w_avg_beta", "w_avg_beta"}},
              {}, {{"embed_features", w_dim}, {"layer_features", w_dim}, {"activation", "lrelu"}}, out, who);
  take_kwargs(kw, "synthesis_kwargs",
              {{"architecture", "architecture"}, {"channel_base", "channel_base"}, {"channel_max", "channel_max"},
               {"num_fp16_res", "num_fp16_res"}, {"conv_clamp", "conv_clamp"}, {"resample_filter", "resample_filter"},
               {"use_noise", "use_noise"}},
              {"channels_last", "fp16_channels_last"}, {{"activation", "lrelu"}}, out, who);
  GeneratorConfig cfg;
  try {
    cfg = GeneratorConfig::from_json(out);
  } catch (const std::exception& e) {
    throw std::runtime_error(who + ": " + e.what());
  }
  check_sizes(who, cfg.channels_at(4), cfg.z_dim, cfg.w_dim, cfg.c_dim, cfg.mapping_layers);
  if (cfg.img_channels > 16) throw std::runtime_error(who + ": implausible img_channels");
  return cfg;
}

DiscriminatorConfig discriminator_config(const Value& obj, const std::string& what) {
  const std::string who = what + ": " + obj.s;
  nlohmann::json kw = init_kwargs(obj, {"c_dim", "img_resolution", "img_channels", "architecture", "channel_base",
                                        "channel_max", "num_fp16_res", "conv_clamp", "cmap_dim", "block_kwargs",
                                        "mapping_kwargs", "epilogue_kwargs"},
                                  what);
  nlohmann::json out;
  take_kwargs(kw, "",
              {{"c_dim", "c_dim"}, {"img_resolution", "img_resolution"}, {"img_channels", "img_channels"},
               {"architecture", "architecture"}, {"channel_base", "channel_base"}, {"channel_max", "channel_max"},
               {"num_fp16_res", "num_fp16_res"}, {"conv_clamp", "conv_clamp"}, {"cmap_dim", "cmap_dim"}},
              {}, {}, out, who);
  take_kwargs(kw, "block_kwargs", {{"resample_filter", "resample_filter"}, {"freeze_layers", "freeze_layers"}},
              {"fp16_channels_last"}, {{"activation", "lrelu"}}, out, who);
  take_kwargs(kw, "mapping_kwargs", {{"num_layers", "mapping_layers"}}, {},
              {{"lr_multiplier", 0.01}, {"activation", "lrelu"}}, out, who);
  take_kwargs(kw, "epilogue_kwargs",
              {{"mbstd_group_size", "mbstd_group_size"}, {"mbstd_num_channels", "mbstd_num_channels"}}, {},
              {{"activation", "lrelu"}}, out, who);
  if (out.contains("cmap_dim") && out["cmap_dim"].is_null()) out.erase("cmap_dim");
  DiscriminatorConfig cfg;
  try {
    cfg = DiscriminatorConfig::from_json(out);
  } catch (const std::exception& e) {
    throw std::runtime_error(who + ": " + e.what());
  }
  check_sizes(who, std::max(cfg.channels_at(4), cfg.cmap_dim), 0, 0, cfg.c_dim, cfg.mapping_layers);
  if (cfg.mbstd_num_channels > 64 || cfg.img_channels > 16)
    throw std::runtime_error(who + ": implausible mbstd_num_channels or img_channels");
  return cfg;
}

// Copies every tensor of a pickled module into `store`; fails listing every mismatch.
int64_t copy_module(const Value& obj, ParamStore& store, const std::string& net, const nlohmann::json& cfg,
                    const std::string& what) {
  auto entries = pickle::module_state_dict(obj, what + " " + net);
  std::map<std::string, ValuePtr> file;
  for (auto& [k, v] : entries) file[k] = v;
  std::vector<std::string> problems;
  for (const auto& e : store.entries()) {
    auto it = file.find(e.name);
    if (it == file.end()) {
      problems.push_back("missing " + e.name);
      continue;
    }
    const Value& v = *it->second;
    if (at::IntArrayRef(v.shape) != e.tensor.sizes())
      problems.push_back(e.name + ": file " + h5::shape_str(v.shape) + " vs network " +
                         h5::shape_str(e.tensor.sizes().vec()));
  }
  for (const auto& [k, v] : file)
    if (!store.find(k)) problems.push_back("unexpected " + k);
  if (!problems.empty()) {
    std::string msg = what + ": " + net + "'s tensors do not match the network its init_kwargs describe (" +
                      cfg.dump() + "): ";
    for (size_t k = 0; k < problems.size(); ++k) msg += (k ? "; " : "") + problems[k];
    throw std::runtime_error(msg);
  }
  at::NoGradGuard no_grad;
  for (const auto& e : store.entries()) {
    at::Tensor src = to_tensor(*file.at(e.name), what + " " + net + "." + e.name);
    const_cast<at::Tensor&>(e.tensor).copy_(src);
  }
  return static_cast<int64_t>(entries.size());
}

}  // namespace

std::string ImportResult::summary() const {
  std::ostringstream o;
  o << "G " << G_tensors << " tensors, G_ema " << G_ema_tensors << ", D " << (has_D ? std::to_string(D_tensors) : "none")
    << ", augment p " << augment_p << "; G " << G_config.value("img_resolution", 0) << "x"
    << G_config.value("img_resolution", 0) << "x" << G_config.value("img_channels", 0) << " "
    << G_config.value("architecture", "") << " cbase " << G_config.value("channel_base", 0) << " cmax "
    << G_config.value("channel_max", 0) << " map " << G_config.value("mapping_layers", 0) << " z "
    << G_config.value("z_dim", 0) << " w " << G_config.value("w_dim", 0) << " c " << G_config.value("c_dim", 0);
  if (has_D) o << "; D " << D_config.value("architecture", "") << " mbstd " << D_config.value("mbstd_group_size", 0);
  return o.str();
}

ImportResult import_network_pickle(const std::string& pkl, const std::string& dest, bool overwrite) {
  if (!fs::exists(pkl)) throw std::runtime_error(pkl + ": no such file");
  if (fs::exists(dest) && !overwrite) throw std::runtime_error(dest + ": already exists (use --force to replace it)");
  const std::string what = fs::path(pkl).filename().string();
  ValuePtr root;
  try {
    root = pickle::load_file(pkl);
  } catch (const pickle::Error& e) {
    // `styleforge export` pickles call the reference's classes, which this reader never runs.
    std::ifstream in(pkl, std::ios::binary);
    const std::string marker("\x80\x04" "cfunctools\npartial\n");
    std::string head(marker.size(), '\0');
    if (in.read(&head[0], static_cast<std::streamsize>(head.size())) && head == marker)
      throw std::runtime_error(pkl + ": written by `styleforge export` for the reference's tools; use the checkpoint "
                                     "it was exported from");
    throw std::runtime_error(e.what());
  }
  if (!root->is(Kind::Dict))
    throw std::runtime_error(pkl + ": not a network pickle (top level is a " + pickle::kind_name(root->kind) +
                             ", expected a dict with G, D, G_ema)");
  ValuePtr g_ema_v = root->get("G_ema"), g_v = root->get("G"), d_v = root->get("D"), aug_v = root->get("augment_pipe");
  if (!g_ema_v) throw std::runtime_error(pkl + ": no G_ema in the pickle");
  if (!g_v || g_v->is(Kind::None)) g_v = g_ema_v;

  ImportResult r;
  r.dest = dest;
  nlohmann::json augment_kwargs;  // the pickle's AugmentPipe settings (null: none or unknown)
  try {
    const Value& g_ema_obj = persistent(g_ema_v, "G_ema", "Generator", what);
    const Value& g_obj = persistent(g_v, "G", "Generator", what);
    const GeneratorConfig g_cfg = generator_config(g_obj, what);
    const GeneratorConfig g_ema_cfg = generator_config(g_ema_obj, what);
    if (g_cfg.to_json() != g_ema_cfg.to_json()) throw std::runtime_error(what + ": G and G_ema have different settings");
    r.G_config = g_cfg.to_json();
    at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(0);
    Generator G(g_cfg, gen), G_ema(g_ema_cfg, gen);
    r.G_tensors = copy_module(g_obj, G.state(), "G", r.G_config, what);
    r.G_ema_tensors = copy_module(g_ema_obj, G_ema.state(), "G_ema", r.G_config, what);

    std::unique_ptr<Discriminator> D;
    if (d_v && !d_v->is(Kind::None)) {
      const Value& d_obj = persistent(d_v, "D", "Discriminator", what);
      const DiscriminatorConfig d_cfg = discriminator_config(d_obj, what);
      r.D_config = d_cfg.to_json();
      D = std::make_unique<Discriminator>(d_cfg, gen);
      r.D_tensors = copy_module(d_obj, D->state(), "D", r.D_config, what);
      r.has_D = true;
    }
    if (aug_v && !aug_v->is(Kind::None)) {
      const Value& aug = persistent(aug_v, "augment_pipe", "AugmentPipe", what);
      for (auto& [k, v] : pickle::module_state_dict(aug, what + " augment_pipe"))
        if (k == "p" && v->numel() == 1)
          r.augment_p = to_tensor(*v, what + " augment_pipe.p").to(at::kDouble).item<double>();
      // Its settings, checked as ours, so that `styleforge export` can rebuild the pipeline.
      try {
        nlohmann::json kw = init_kwargs(aug, {}, what);
        AugmentConfig::from_json(kw);
        augment_kwargs = kw;
      } catch (const std::exception&) {
        augment_kwargs = nullptr;  // settings we do not know: p alone is kept
      }
    }
    if (ValuePtr t = root->get("training_set_kwargs"); t && !t->is(Kind::None))
      r.training_set_kwargs = pickle::to_json(*t, what + " training_set_kwargs");

    CheckpointWrite w;
    w.G = &G;
    w.D = D.get();
    w.G_ema = &G_ema;
    w.counters.augment_p = r.augment_p;
    fs::path dpath(dest);
    if (dpath.has_parent_path()) fs::create_directories(dpath.parent_path());
    // DEST.tmp-PID@HOST (removed by the next writer in that folder if this process is killed),
    // checked close, fsync and rename: a failed import never leaves a partial DEST.
    const std::string tmp = data::temp_name_for(dest);
    try {
      write_checkpoint(tmp, w);
      {
        std::lock_guard<std::recursive_mutex> lock(h5::global_mutex());
        h5::Handle f = h5::open_file(tmp, h5::Mode::ReadWrite);
        h5::write_string_attr(f, "training_set_kwargs", r.training_set_kwargs.dump());
        if (!augment_kwargs.is_null()) h5::write_string_attr(f, "augment_kwargs", augment_kwargs.dump());
        h5::write_string_attr(f, "imported_from", fs::path(pkl).filename().string());
        h5::close_file(f);
      }
      data::commit_file(tmp, dest);
    } catch (...) {
      std::error_code ec;
      fs::remove(tmp, ec);
      throw;
    }
  } catch (const pickle::Error& e) {
    throw std::runtime_error(e.what());
  }
  return r;
}

bool looks_like_pickle(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char head[2] = {0, 0};
  if (!in.read(head, 2)) return false;
  return static_cast<uint8_t>(head[0]) == 0x80 && head[1] >= 2 && head[1] <= 5;  // PROTO n
}

NetworkFile::NetworkFile(const std::string& path) : checkpoint_(path) {
  if (!looks_like_pickle(path)) return;
  const fs::path dir = fs::temp_directory_path() /
                       ("styleforge-pkl-" + std::to_string(::getpid()) + "-" +
                        std::to_string(reinterpret_cast<uintptr_t>(this) & 0xffffff));
  fs::remove_all(dir);
  fs::create_directories(dir);
  temp_dir_ = dir.string();
  try {
    checkpoint_ = (dir / (fs::path(path).stem().string() + ".h5")).string();
    result_ = import_network_pickle(path, checkpoint_, /*overwrite=*/true);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(dir, ec);
    throw;
  }
}

NetworkFile::~NetworkFile() {
  if (temp_dir_.empty()) return;
  std::error_code ec;
  fs::remove_all(temp_dir_, ec);
}

}  // namespace sf::trainer
