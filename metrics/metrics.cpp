// MetricsEvaluator: real statistics (cached), generated-image statistics, the registry's metrics.
#include "metrics/metrics.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <stdexcept>

#include "data/hash.h"
#include "data/pack.h"
#include "data/pack_path.h"
#include "metrics/detector.h"
#include "metrics/registry.h"
#include "metrics/stats.h"
#include "sharding/sampler.h"
#include "trainer/device.h"
#include "trainer/checkpoint.h"
#include "trainer/import.h"
#include "trainer/networks.h"
#include "trainer/transfer.h"

namespace fs = std::filesystem;

namespace sf::metrics {
namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// dnnlib.util.format_time: "12s", "3m 04s", "2h 05m 09s", "1d 02h 03m".
std::string format_time(double seconds) {
  const long long s = static_cast<long long>(std::nearbyint(seconds));
  char buf[64];
  if (s < 60) std::snprintf(buf, sizeof buf, "%llds", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%lldm %02llds", s / 60, s % 60);
  else if (s < 86400) std::snprintf(buf, sizeof buf, "%lldh %02lldm %02llds", s / 3600, (s / 60) % 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%lldd %02lldh %02lldm", s / 86400, (s / 3600) % 24, (s / 60) % 60);
  return buf;
}

void fsync_path(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

std::string sha256_hex(const std::string& s) {
  data::Sha256 h;
  h.update(s.data(), s.size());
  return h.hex_digest();
}

}  // namespace

struct MetricsEvaluator::Impl {
  MetricsOptions o;
  std::vector<MetricSpec> specs;
  std::vector<std::string> names;  // as reported
  std::string status, detector_path, suffix;
  std::unique_ptr<Detector> det;
  std::unique_ptr<data::PackReader> pack;
  std::map<std::string, std::shared_ptr<FeatureStats>> reals;  // by cache key
  std::unique_ptr<trainer::Generator> G;
  c10::Device dev = c10::Device(c10::kCPU);
  std::string G_config;  // JSON of the generator built

  void log(const std::string& line) const {
    if (o.log) o.log(line);
    else std::cerr << line << "\n";
  }
  void progress(const char* stage, int64_t done, int64_t total) const {
    if (o.progress) o.progress(stage, done, total);
  }

  // Reals a spec uses: count (after max_real) and whether the x-flipped copies are included.
  std::pair<int64_t, bool> real_set(const MetricSpec& s) const {
    const bool mirror = !s.full && o.mirror;
    const int64_t n = pack->size() * (mirror ? 2 : 1);
    return {s.max_real < 0 ? n : std::min(n, s.max_real), mirror};
  }

  // Detector views of an image: {-1} (the image itself: gray repeated to RGB, or RGB) for 1 and 3
  // channels; one per channel (that channel as a gray image) for any other count.
  std::vector<int> views() const {
    const int C = pack->info().channels;
    if (C == 1 || C == 3) return {-1};
    std::vector<int> v;
    for (int k = 0; k < C; ++k) v.push_back(k);
    return v;
  }
  static at::Tensor view_of(const at::Tensor& u8, int view) { return view < 0 ? u8 : u8.narrow(1, view, 1).contiguous(); }
  std::string view_name(int view) const {
    const auto& names = pack->info().channel_names;
    if (view >= 0 && static_cast<size_t>(view) < names.size()) return names[static_cast<size_t>(view)];
    return "ch" + std::to_string(view);
  }

  std::string cache_key(int64_t num_items, bool mirror, int view) const {
    nlohmann::json k = {{"format", 1},           {"pack", pack->info().content_hash}, {"detector", det->file_hash()},
                        {"num_items", num_items}, {"mirror", mirror}};
    if (view >= 0) {
      k["channel"] = view;
      k["channel_rule"] = "gray-per-channel";
    }
    return k.dump();
  }

  std::string cache_file(const std::string& key) const {
    const std::string stem = fs::path(o.pack).stem().string();
    return (fs::path(o.cache_dir) / "metrics" / (stem + "-" + det->name() + "-" + sha256_hex(key).substr(0, 16) + ".h5"))
        .string();
  }

  std::shared_ptr<FeatureStats> real_stats(int64_t num_items, bool mirror, bool need_features, int view) {
    const std::string key = cache_key(num_items, mirror, view);
    if (auto it = reals.find(key); it != reals.end() && (it->second->captures_all() || !need_features)) return it->second;
    const std::string path = cache_file(key);
    if (o.use_cache && fs::is_regular_file(path)) {
      try {
        std::string meta;
        auto s = std::make_shared<FeatureStats>(FeatureStats::load(path, &meta));
        if (meta == key && s->num_items() == num_items && s->captures_mean_cov() && (s->captures_all() || !need_features)) {
          log("cache hit: " + path);
          reals[key] = s;
          return s;
        }
        if (meta != key || s->num_items() != num_items) log("cache: " + path + " is for other settings; recomputing");
      } catch (const std::exception& e) {
        log("cache: cannot read " + path + " (" + e.what() + "); recomputing");
      }
    }
    // Compute. Features are kept only when needed; a later request that needs them recomputes and
    // replaces the file with one that has both.
    auto s = std::make_shared<FeatureStats>(need_features, true, num_items);
    const int64_t n = pack->size();
    const size_t bytes = pack->info().image_bytes();
    const int C = pack->info().channels, R = pack->info().resolution;
    std::vector<uint8_t> buf;
    std::vector<int64_t> idx;
    c10::NoGradGuard no_grad;
    for (int64_t done = 0; done < num_items;) {
      const int64_t nb = std::min<int64_t>(o.batch, num_items - done);
      idx.clear();
      for (int64_t i = done; i < done + nb; ++i) idx.push_back(i % n);
      buf.resize(bytes * static_cast<size_t>(nb));
      pack->read_images(idx.data(), idx.size(), buf.data());
      at::Tensor img = at::from_blob(buf.data(), {nb, C, R, R}, at::kByte).clone();
      // Items >= n are the x-flipped copies (the reference's Dataset with xflip=True).
      int64_t first_flip = std::max<int64_t>(0, std::min(nb, n - done));
      if (first_flip < nb) img.slice(0, first_flip, nb).copy_(img.slice(0, first_flip, nb).flip({3}));
      s->append(det->features(view_of(img, view)));
      done += nb;
      progress("reals", done, num_items);
    }
    reals[key] = s;
    if (o.use_cache) {
      const std::string tmp = path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(std::random_device{}());
      try {
        fs::create_directories(fs::path(path).parent_path());
        s->save(tmp, key);
        fsync_path(tmp);
        fs::rename(tmp, path);
        log("cached real statistics: " + path);
      } catch (const std::exception& e) {
        std::error_code ec;
        fs::remove(tmp, ec);
        log("cache: cannot write " + path + " (" + e.what() + "); continuing without it");
      }
    }
    return s;
  }

  void check_generator(const trainer::GeneratorConfig& c) const {
    const auto& pi = pack->info();
    if (c.img_resolution != pi.resolution || c.img_channels != pi.channels)
      throw std::runtime_error("generator makes " + std::to_string(c.img_channels) + "x" +
                               std::to_string(c.img_resolution) + "x" + std::to_string(c.img_resolution) +
                               " images but the pack " + o.pack + " holds " + std::to_string(pi.channels) + "x" +
                               std::to_string(pi.resolution) + "x" + std::to_string(pi.resolution));
    if (c.c_dim > 0 && pi.label_dim != c.c_dim)
      throw std::runtime_error("generator is conditional (c_dim " + std::to_string(c.c_dim) + ") but the pack " + o.pack +
                               " has " + (pi.label_dim ? "labels of size " + std::to_string(pi.label_dim) : "no labels"));
  }

  trainer::Generator& generator_for(const trainer::GeneratorConfig& c) {
    const std::string j = c.to_json().dump();
    if (!G || j != G_config) {
      check_generator(c);
      G = std::make_unique<trainer::Generator>(c);
      G->state().to(dev);
      G_config = j;
    }
    G->train(false);
    return *G;
  }

  // The real statistics of every spec and detector view (specs that use the same reals share one
  // computation, with all features kept when any of them needs them) and the time each spec took.
  void all_real_stats(std::vector<std::vector<std::shared_ptr<FeatureStats>>>& stats, std::vector<double>& secs) {
    const std::vector<int> vs = views();
    stats.assign(specs.size(), {});
    secs.assign(specs.size(), 0);
    for (size_t i = 0; i < specs.size(); ++i) {
      auto [num, mirror] = real_set(specs[i]);
      bool need_all = false;
      for (const auto& s : specs)
        if (real_set(s) == std::make_pair(num, mirror)) need_all = need_all || s.needs_features;
      const auto t0 = Clock::now();
      for (int v : vs) stats[i].push_back(real_stats(num, mirror, need_all, v));
      secs[i] = seconds_since(t0);
    }
  }

  std::vector<nlohmann::json> run(trainer::Generator& g) {
    if (!det) return {};
    std::vector<std::vector<std::shared_ptr<FeatureStats>>> spec_reals;
    std::vector<double> spec_real_s;
    all_real_stats(spec_reals, spec_real_s);
    const std::vector<int> vs = views();
    // One stream of generated images feeds a FeatureStats per distinct count and detector view.
    std::map<int64_t, std::vector<std::shared_ptr<FeatureStats>>> gens;
    for (const auto& s : specs) {
      auto& sts = gens[s.num_gen];
      sts.resize(vs.size());
      for (auto& st : sts) {
        bool all = s.needs_features || (st && st->captures_all());
        bool mc = s.needs_mean_cov || (st && st->captures_mean_cov());
        st = std::make_shared<FeatureStats>(all, mc, s.num_gen);
      }
    }
    const auto t_gen = Clock::now();
    generate(g, gens);
    const double gen_s = seconds_since(t_gen);
    std::vector<nlohmann::json> out;
    for (size_t i = 0; i < specs.size(); ++i) {
      const auto t0 = Clock::now();
      const MetricSpec& s = specs[i];
      nlohmann::json results = nlohmann::json::object(), per_channel = nlohmann::json::object();
      for (size_t v = 0; v < vs.size(); ++v) {
        nlohmann::json r =
            metric_family(s.family).compute(s, MetricInputs{*spec_reals[i][v], *gens[s.num_gen][v], o.seed});
        for (auto& [k, x] : r.items()) {
          if (vs.size() == 1) {
            results[k + suffix] = x;
            continue;
          }
          // Per channel: each channel's value, and their mean as the metric.
          per_channel[view_name(vs[v])][k + suffix] = x;
          const double add = x.is_number() ? x.get<double>() / static_cast<double>(vs.size()) : NAN;
          results[k + suffix] = (v == 0 ? 0.0 : results[k + suffix].get<double>()) + add;
        }
      }
      const double total = spec_real_s[i] + gen_s + seconds_since(t0);
      nlohmann::json line = {{"results", results},
                             {"metric", names[i]},
                             {"total_time", total},
                             {"total_time_str", format_time(total)},
                             {"num_gpus", o.num_gpus}};
      if (vs.size() > 1) line["per_channel"] = per_channel;
      out.push_back(line);
    }
    return out;
  }

  // z and labels are drawn per image (so the values do not depend on batch sizes); the synthesis
  // noise is drawn per generator batch from its own generator.
  void generate(trainer::Generator& g, std::map<int64_t, std::vector<std::shared_ptr<FeatureStats>>>& gens) {
    int64_t total = 0;
    for (auto& [n, _] : gens) total = std::max(total, n);
    const auto& cfg = g.config();
    at::Generator zgen = at::detail::createCPUGenerator(o.seed);
    // Synthesis noise from a generator on the device (the CPU's keeps the reference's stream).
    at::Generator noise_gen = trainer::make_device_generator(dev, (uint64_t{1} << 32) + o.seed);
    sharding::NumpyRandomState labels(o.seed);
    const int64_t n_pack = pack->size();
    c10::NoGradGuard no_grad;
    for (int64_t done = 0; done < total;) {
      const int64_t nb = std::min<int64_t>(o.batch, total - done);
      std::vector<at::Tensor> imgs;
      for (int64_t j = 0; j < nb; j += o.batch_gen) {
        const int64_t m = std::min<int64_t>(o.batch_gen, nb - j);
        std::vector<at::Tensor> zs;
        at::Tensor c = at::zeros({m, cfg.c_dim}, at::kFloat);
        for (int64_t k = 0; k < m; ++k) {
          zs.push_back(at::randn({1, cfg.z_dim}, zgen, at::kFloat));
          // The reference draws a dataset label per image (np.random.randint(len(dataset))) even
          // for unconditional networks; so do we, to keep the streams aligned.
          const int64_t idx = static_cast<int64_t>(labels.interval(static_cast<uint64_t>(n_pack - 1)));
          if (cfg.c_dim > 0) pack->label_as_float(idx, c.data_ptr<float>() + k * cfg.c_dim);
        }
        at::Tensor ws = g.mapping(at::cat(zs, 0).to(dev), c.to(dev), 1, -1);
        at::Tensor img = g.synthesis(ws, trainer::NoiseMode::Random, std::nullopt, noise_gen);
        imgs.push_back(to_uint8_images(img).cpu());
      }
      const at::Tensor u8 = at::cat(imgs, 0);
      const std::vector<int> vs = views();
      for (size_t v = 0; v < vs.size(); ++v) {
        at::Tensor f = det->features(view_of(u8, vs[v]));
        for (auto& [_, s] : gens) s[v]->append(f);
      }
      done += nb;
      progress("generated", done, total);
    }
  }
};

MetricsEvaluator::MetricsEvaluator(MetricsOptions opts) : impl_(std::make_unique<Impl>()) {
  Impl& d = *impl_;
  d.o = std::move(opts);
  if (d.o.metrics.empty()) throw std::invalid_argument("no metrics named");
  if (d.o.batch < 1 || d.o.batch_gen < 1) throw std::invalid_argument("batch sizes must be at least 1");
  if (d.o.batch % d.o.batch_gen != 0) throw std::invalid_argument("batch must be a multiple of batch_gen");
  for (const auto& n : d.o.metrics) {
    if (n.find('@') != std::string::npos)
      throw std::invalid_argument("metric '" + n + "': name it without @detector (the detector file decides that)");
    d.specs.push_back(parse_metric(n, d.o.num_gen));
  }
  if (d.o.cache_dir.empty()) d.o.cache_dir = trainer::default_cache_dir();
  d.pack = std::make_unique<data::PackReader>(d.o.pack);
  if (d.pack->size() < 1) throw std::runtime_error(d.o.pack + ": no images");
  if (d.o.threads > 0) at::set_num_threads(d.o.threads);
  d.dev = trainer::resolve_device(d.o.device, 0, 1, /*shared_ok=*/true);
  DetectorLocation loc = locate_detector(d.o.detector, d.o.cache_dir);
  if (loc.found) {
    try {
      d.det = std::make_unique<Detector>(loc.path, d.dev);
      d.detector_path = loc.path;
      if (!d.det->is_standard()) d.suffix = "@" + d.det->name();
    } catch (const std::exception& e) {
      loc.message = std::string("metrics off: ") + e.what();
    }
  }
  for (const auto& s : d.specs) d.names.push_back(s.name + d.suffix);
  if (!d.det) {
    d.status = loc.message;
    d.log(d.status);
    return;
  }
  std::string list;
  for (const auto& n : d.names) list += (list.empty() ? "" : ", ") + n;
  d.status = "metrics: " + list + " against " + d.o.pack + " with detector " + d.detector_path;
}

MetricsEvaluator::~MetricsEvaluator() = default;

bool MetricsEvaluator::enabled() const { return impl_->det != nullptr; }
const std::string& MetricsEvaluator::status() const { return impl_->status; }
const std::vector<std::string>& MetricsEvaluator::metric_names() const { return impl_->names; }
const std::string& MetricsEvaluator::detector_path() const { return impl_->detector_path; }

void MetricsEvaluator::prepare() {
  Impl& d = *impl_;
  if (!d.det) return;
  std::vector<std::vector<std::shared_ptr<FeatureStats>>> stats;
  std::vector<double> secs;
  d.all_real_stats(stats, secs);
}

std::vector<nlohmann::json> MetricsEvaluator::evaluate(const std::string& checkpoint_path) {
  Impl& d = *impl_;
  if (!d.det) return {};
  trainer::CheckpointInfo info = trainer::read_checkpoint_info(checkpoint_path);
  trainer::Generator& g = d.generator_for(info.G);
  trainer::load_networks(checkpoint_path, nullptr, nullptr, &g);
  g.train(false);
  return d.run(g);
}

std::vector<nlohmann::json> MetricsEvaluator::evaluate_flat(const nlohmann::json& generator_config,
                                                            const std::vector<std::string>& keys, const float* data,
                                                            size_t count) {
  Impl& d = *impl_;
  if (!d.det) return {};
  trainer::Generator& g = d.generator_for(trainer::GeneratorConfig::from_json(generator_config));
  const auto& entries = g.state().entries();
  if (keys.size() != entries.size())
    throw std::runtime_error("snapshot has " + std::to_string(keys.size()) + " tensors, the generator " +
                             std::to_string(entries.size()));
  size_t off = 0;
  c10::NoGradGuard no_grad;
  for (const auto& k : keys) {
    const trainer::NamedTensor* e = g.state().find(k);
    if (!e) throw std::runtime_error("snapshot tensor '" + k + "' is not in the generator");
    const size_t n = static_cast<size_t>(e->tensor.numel());
    if (off + n > count) throw std::runtime_error("snapshot buffer too short at '" + k + "'");
    at::Tensor src = at::from_blob(const_cast<float*>(data + off), e->tensor.sizes(), at::kFloat);
    const_cast<at::Tensor&>(e->tensor).copy_(src);
    off += n;
  }
  if (off != count) throw std::runtime_error("snapshot buffer has " + std::to_string(count - off) + " values too many");
  g.train(false);
  return d.run(g);
}

std::string report_metric(const nlohmann::json& result, const std::string& run_dir, const std::string& snapshot) {
  nlohmann::ordered_json line;
  for (const char* k : {"results", "metric", "total_time", "total_time_str", "num_gpus"})
    if (result.contains(k)) line[k] = result[k];
  for (auto& [k, v] : result.items())
    if (!line.contains(k)) line[k] = v;
  if (snapshot.empty()) {
    line["snapshot_pkl"] = nullptr;
  } else if (!run_dir.empty()) {
    line["snapshot_pkl"] = fs::absolute(snapshot).lexically_normal().lexically_proximate(fs::absolute(run_dir).lexically_normal()).string();
  } else {
    line["snapshot_pkl"] = snapshot;
  }
  line["timestamp"] = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  const std::string text = line.dump();
  if (!run_dir.empty() && fs::is_directory(run_dir)) {
    const std::string metric = result.value("metric", std::string("unknown"));
    std::ofstream f(fs::path(run_dir) / ("metric-" + metric + ".jsonl"), std::ios::app);
    if (!f) throw std::runtime_error("cannot append to " + (fs::path(run_dir) / ("metric-" + metric + ".jsonl")).string());
    f << text << "\n";
  }
  return text;
}

std::string check_metric_names(const std::vector<std::string>& names) {
  try {
    if (names.empty()) return "no metrics named";
    for (const auto& n : names) parse_metric(n);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

std::vector<std::string> describe_metrics() {
  std::vector<std::string> out;
  for (const auto& f : metric_families()) out.push_back(f.help);
  return out;
}

int run_metrics_command(const MetricsCommandOptions& c) {
  const trainer::NetworkFile net(c.network);  // a reference .pkl is imported on the fly
  if (net.imported() && c.log) c.log(c.network + ": reference network pickle, imported (" + net.import_result().summary() + ")");
  trainer::CheckpointInfo info = trainer::read_checkpoint_info(net.checkpoint());
  MetricsOptions o;
  o.pack = c.data;
  if (o.pack.empty()) {
    if (!info.options || info.options->data.empty())
      throw std::invalid_argument(c.network + " holds no training options: name the dataset pack with --data");
    // Stored as typed when training started: found again from here or relative to the run.
    o.pack = data::resolve_stored_pack(info.options->data, c.network, info.options->dataset_hash);
  }
  o.mirror = c.mirror.value_or(info.options ? info.options->mirror : false);
  o.metrics = c.metrics;
  o.detector = c.detector;
  o.cache_dir = c.cache_dir;
  o.num_gen = c.num_gen;
  o.seed = c.seed;
  o.batch = c.batch;
  o.batch_gen = c.batch_gen;
  o.threads = c.threads;
  o.device = c.device;
  o.use_cache = c.use_cache;
  o.log = c.log;
  o.progress = c.progress;
  std::string run_dir = c.run_dir;
  if (run_dir.empty()) {
    fs::path dir = fs::path(c.network).parent_path();
    if (dir.empty()) dir = ".";
    if (fs::is_regular_file(dir / "training_options.json")) run_dir = dir.string();
  }
  MetricsEvaluator ev(o);
  if (!ev.enabled()) return 1;  // the evaluator has said why and where to put the detector
  if (c.log) c.log(ev.status());
  for (const auto& r : ev.evaluate(net.checkpoint())) std::cout << report_metric(r, run_dir, c.network) << std::endl;
  return 0;
}

}  // namespace sf::metrics
