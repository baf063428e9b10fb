#include "trainer/export.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>

#include "data/atomic_file.h"
#include "data/h5.h"
#include "trainer/augment.h"
#include "trainer/checkpoint.h"
#include "trainer/networks.h"
#include "trainer/pickle_write.h"

namespace fs = std::filesystem;

namespace sf::trainer {
namespace {

nlohmann::json opt(const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); }
const std::vector<float> kDefaultFilter = {1, 3, 3, 1};

// The reference Generator's constructor keywords for our configuration (the names train.py uses).
nlohmann::json generator_kwargs(const GeneratorConfig& c) {
  nlohmann::json mapping = {{"num_layers", c.mapping_layers}, {"lr_multiplier", c.mapping_lr_multiplier},
                            {"w_avg_beta", opt(c.w_avg_beta)}};
  nlohmann::json synthesis = {{"architecture", c.architecture}, {"channel_base", c.channel_base},
                              {"channel_max", c.channel_max},   {"num_fp16_res", c.num_fp16_res},
                              {"conv_clamp", opt(c.conv_clamp)}};
  if (c.resample_filter != kDefaultFilter) synthesis["resample_filter"] = c.resample_filter;
  if (!c.use_noise) synthesis["use_noise"] = false;
  return {{"z_dim", c.z_dim},
          {"c_dim", c.c_dim},
          {"w_dim", c.w_dim},
          {"img_resolution", c.img_resolution},
          {"img_channels", c.img_channels},
          {"mapping_kwargs", mapping},
          {"synthesis_kwargs", synthesis}};
}

nlohmann::json discriminator_kwargs(const DiscriminatorConfig& c) {
  nlohmann::json block = {{"freeze_layers", c.freeze_layers}};
  if (c.resample_filter != kDefaultFilter) block["resample_filter"] = c.resample_filter;
  return {{"c_dim", c.c_dim},
          {"img_resolution", c.img_resolution},
          {"img_channels", c.img_channels},
          {"architecture", c.architecture},
          {"channel_base", c.channel_base},
          {"channel_max", c.channel_max},
          {"num_fp16_res", c.num_fp16_res},
          {"conv_clamp", opt(c.conv_clamp)},
          {"cmap_dim", c.cmap_dim > 0 ? nlohmann::json(c.cmap_dim) : nlohmann::json(nullptr)},
          {"block_kwargs", block},
          {"mapping_kwargs", {{"num_layers", c.mapping_layers}}},
          {"epilogue_kwargs",
           {{"mbstd_group_size", c.mbstd_group_size > 0 ? nlohmann::json(c.mbstd_group_size) : nlohmann::json(nullptr)},
            {"mbstd_num_channels", c.mbstd_num_channels}}}};
}

// Emits the pickle program; globals are memoized on first use.
class Emitter {
 public:
  explicit Emitter(pickle::Writer& w) : w_(w) {}

  void global(const std::string& module, const std::string& name) {
    const std::string key = module + "." + name;
    if (auto it = globals_.find(key); it != globals_.end()) return w_.get(it->second);
    w_.global(module, name);
    globals_[key] = w_.memoize();
  }

  // torch.from_numpy(numpy.frombuffer(bytearray(DATA), '<f4').reshape(SHAPE))
  void tensor(const at::Tensor& t, const std::string& what) {
    at::Tensor c = t.detach().to(at::kCPU).contiguous();
    if (c.scalar_type() != at::kFloat) throw std::runtime_error(what + ": only float32 tensors can be exported");
    global("torch", "from_numpy");
    global("builtins", "getattr");
    global("numpy", "frombuffer");
    global("builtins", "bytearray");
    w_.bytes(c.data_ptr(), static_cast<size_t>(c.numel()) * sizeof(float));
    call(1);  // bytearray(data): a writable buffer, so torch shares it without a warning
    w_.str("<f4");
    call(2);  // numpy.frombuffer(buffer, '<f4')
    w_.str("reshape");
    call(2);  // getattr(array, 'reshape')
    w_.mark();
    for (int64_t s : c.sizes()) w_.integer(s);
    w_.tuple_from_mark();
    call(1);  // .reshape(shape)
    call(1);  // torch.from_numpy(array)
  }

  // A module: the class called with its keywords, every tensor loaded, eval(), no gradients.
  // Returns its memo index (the module is left off the stack).
  uint32_t module(const std::string& mod, const std::string& cls, const nlohmann::json& kwargs,
                  const std::vector<std::pair<std::string, at::Tensor>>& state, bool strict, const std::string& what) {
    w_.call_with_kwargs(mod, cls, kwargs);
    const uint32_t m = w_.memoize();
    w_.pop();
    w_.method(m, "load_state_dict");
    w_.mark();
    w_.mark();
    for (const auto& [k, t] : state) {
      w_.str(k);
      tensor(t, what + "." + k);
    }
    w_.dict_from_mark();
    w_.boolean(strict);
    w_.tuple_from_mark();
    w_.reduce();
    w_.pop();  // the incompatible-keys report (strict loads raise instead)
    w_.method(m, "requires_grad_");
    w_.mark();
    w_.boolean(false);
    w_.tuple_from_mark();
    w_.reduce();
    w_.pop();
    w_.method(m, "eval");
    w_.empty_tuple();
    w_.reduce();
    w_.pop();
    return m;
  }

 private:
  // callable a1..an -> callable(a1, ..., an)
  void call(int n) {
    w_.tuple_n(n);
    w_.reduce();
  }

  pickle::Writer& w_;
  std::map<std::string, uint32_t> globals_;
};

std::vector<std::pair<std::string, at::Tensor>> entries(const ParamStore& s) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& e : s.entries()) out.emplace_back(e.name, e.tensor);
  return out;
}

}  // namespace

std::string ExportResult::summary() const {
  std::ostringstream o;
  o << "G " << G_tensors << " tensors, G_ema " << G_ema_tensors << ", D " << D_tensors << ", augment_pipe "
    << (has_augment_pipe ? "yes" : "none") << ", training_set_kwargs " << (has_training_set_kwargs ? "yes" : "none")
    << ", " << bytes << " bytes";
  return o.str();
}

ExportResult export_network_pickle(const std::string& checkpoint, const std::string& dest, bool overwrite) {
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "export writes native floats as little-endian");
  if (fs::exists(dest) && !overwrite) throw std::runtime_error(dest + ": already exists (use --force to replace it)");
  const CheckpointInfo info = read_checkpoint_info(checkpoint);
  if (!info.has_D)
    throw std::runtime_error(checkpoint + ": has no discriminator (D); the reference's loader needs G, D and G_ema");
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(0);
  Generator G(info.G, gen), G_ema(info.G, gen);
  Discriminator D(info.D, gen);
  load_networks(checkpoint, &G, &D, &G_ema);

  // What the checkpoint knows beyond the networks.
  double augment_p = info.counters.augment_p;
  nlohmann::json training_set_kwargs;  // null: None
  std::optional<AugmentConfig> augment;
  {
    std::lock_guard<std::recursive_mutex> lock(h5::global_mutex());
    h5::Handle f = h5::open_file(checkpoint);
    const bool vlen_ok = h5::superblock_version(checkpoint) < 2;
    if (!info.options && h5::is_group(f, "augment_pipe")) {
      h5::Handle g = h5::open_group(f, "augment_pipe");
      if (h5::exists(g, "p")) {
        std::vector<float> p = h5::read_f32(g, "p");
        if (p.size() == 1) augment_p = p[0];
      }
    }
    if (!info.options && h5::has_attr(f, "training_set_kwargs")) {
      try {
        training_set_kwargs = nlohmann::json::parse(h5::read_string_attr(f, "training_set_kwargs", vlen_ok));
      } catch (const std::exception& e) {
        throw std::runtime_error(checkpoint + ": bad training_set_kwargs attribute: " + e.what());
      }
      if (!training_set_kwargs.is_null() && !training_set_kwargs.is_object())
        throw std::runtime_error(checkpoint + ": training_set_kwargs attribute is not a dict");
    }
    if (!info.options && h5::has_attr(f, "augment_kwargs")) {  // an imported network's pipeline
      try {
        augment = AugmentConfig::from_json(nlohmann::json::parse(h5::read_string_attr(f, "augment_kwargs", vlen_ok)));
      } catch (const std::exception& e) {
        throw std::runtime_error(checkpoint + ": bad augment_kwargs attribute: " + e.what());
      }
    }
  }
  if (info.options) {
    const TrainOptions& o = *info.options;
    training_set_kwargs = {{"class_name", "training.dataset.ImageFolderDataset"},
                           {"path", o.data},
                           {"use_labels", o.cond},
                           {"max_size", o.dataset_size},
                           {"xflip", o.mirror},
                           {"resolution", o.resolution}};
    if (o.augment_enabled()) augment = AugmentConfig::from_pipeline(o.augpipe);
  }

  ExportResult r;
  r.dest = dest;
  r.G_tensors = static_cast<int64_t>(G.state().entries().size());
  r.G_ema_tensors = static_cast<int64_t>(G_ema.state().entries().size());
  r.D_tensors = static_cast<int64_t>(D.state().entries().size());
  r.has_augment_pipe = augment.has_value();
  r.has_training_set_kwargs = !training_set_kwargs.is_null();

  fs::path dpath(dest);
  if (dpath.has_parent_path()) fs::create_directories(dpath.parent_path());
  const std::string tmp = data::temp_name_for(dest);
  try {
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      if (!out) throw std::runtime_error(tmp + ": cannot create: " + std::strerror(errno));
      pickle::Writer w(out, dest);
      Emitter e(w);
      const std::string what = fs::path(checkpoint).filename().string();
      const uint32_t g = e.module("training.networks", "Generator", generator_kwargs(info.G), entries(G.state()), true,
                                  what + " G");
      const uint32_t d = e.module("training.networks", "Discriminator", discriminator_kwargs(info.D),
                                  entries(D.state()), true, what + " D");
      const uint32_t ge = e.module("training.networks", "Generator", generator_kwargs(info.G),
                                   entries(G_ema.state()), true, what + " G_ema");
      std::optional<uint32_t> a;
      if (augment) {
        // Only p is state of ours; the pipeline's constant filter buffers stay the constructor's.
        a = e.module("training.augment", "AugmentPipe", augment->to_json(),
                     {{"p", at::full({}, static_cast<float>(augment_p))}}, false, what + " augment_pipe");
      }
      w.mark();
      w.str("training_set_kwargs");
      w.json(training_set_kwargs);
      w.str("G");
      w.get(g);
      w.str("D");
      w.get(d);
      w.str("G_ema");
      w.get(ge);
      w.str("augment_pipe");
      if (a) w.get(*a);
      else w.none();
      w.dict_from_mark();
      w.stop();
      out.flush();
      out.close();
      if (!out) throw std::runtime_error(dest + ": write failed (disk full?)");
      r.bytes = w.bytes_written();
    }
    data::commit_file(tmp, dest);
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
  return r;
}

}  // namespace sf::trainer
