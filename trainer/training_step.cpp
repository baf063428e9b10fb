#include "trainer/training_step.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/autograd.h>

#include <chrono>
#include <cmath>
#include <stdexcept>

namespace sf::trainer {

uint64_t derive_seed(uint64_t seed, int rank, const char* tag) {
  // splitmix64 over the seed, the rank and the tag's characters.
  auto mix = [](uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
  };
  uint64_t h = mix(seed);
  h = mix(h ^ static_cast<uint64_t>(rank + 1));
  for (const char* p = tag; *p; ++p) h = mix(h ^ static_cast<unsigned char>(*p));
  return h;
}

at::Generator make_cpu_generator(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

TrainingStep::TrainingStep(const TrainOptions& o, sharding::Communicator& comm, std::vector<float> labels)
    : o_(o), comm_(comm), labels_(std::move(labels)), stats_(comm.rank()) {
  if (o_.label_dim > 0 && labels_.size() != static_cast<size_t>(o_.dataset_size) * o_.label_dim)
    throw std::invalid_argument("training: label table does not match the dataset");
  at::Generator init = make_cpu_generator(derive_seed(o_.seed, 0, "init"));
  G_ = std::make_unique<Generator>(o_.G, init);
  D_ = std::make_unique<Discriminator>(o_.D, init);
  G_ema_ = std::make_unique<Generator>(o_.G, init);
  G_ema_->state().copy_from(G_->state());
  G_->train(true);
  G_ema_->train(false);
  set_trainable(G_->state(), false);
  set_trainable(D_->state(), false);
  set_trainable(G_ema_->state(), false);

  auto make_opt = [&](const ParamStore& s, int reg_interval) {
    Adam::Options a{o_.lrate, o_.adam_beta1, o_.adam_beta2, o_.adam_eps};
    if (reg_interval > 0) {
      const double r = static_cast<double>(reg_interval) / (reg_interval + 1);
      a.lr *= r;
      a.beta1 = std::pow(a.beta1, r);
      a.beta2 = std::pow(a.beta2, r);
    }
    return std::make_unique<Adam>(s, a);
  };
  G_opt_ = make_opt(G_->state(), o_.G_reg_interval);
  D_opt_ = make_opt(D_->state(), o_.D_reg_interval);
  for (bool is_G : {true, false}) {
    const int reg = is_G ? o_.G_reg_interval : o_.D_reg_interval;
    const std::string n = is_G ? "G" : "D";
    if (reg <= 0) {
      phases_.push_back({n + "both", is_G, 1, true, true});
    } else {
      phases_.push_back({n + "main", is_G, 1, true, false});
      phases_.push_back({n + "reg", is_G, reg, false, true});
    }
  }

  counters_.augment_p = o_.augment_p;
  if (o_.augment_enabled()) {
    augment_ = std::make_unique<AugmentPipe>(AugmentConfig::from_pipeline(o_.augpipe));
    augment_->set_p(o_.augment_p);
  }
  if (o_.ada_target) {
    ada_.target = *o_.ada_target;
    ada_.interval = o_.ada_interval;
    ada_.ada_kimg = o_.ada_kimg;
    ada_.batch_size = o_.batch_size;
  }
  pl_mean_ = at::zeros({});
  noise_mode_ = parse_noise_mode(o_.noise_mode);
  global_gen_ = make_cpu_generator(derive_seed(o_.seed, 0, "global"));
  local_gen_ = make_cpu_generator(derive_seed(o_.seed, comm_.rank(), "local"));
  augment_gen_ = make_cpu_generator(derive_seed(o_.seed, comm_.rank(), "augment"));
}

TrainingStep::~TrainingStep() = default;

void TrainingStep::set_augment_p(double p) {
  counters_.augment_p = p;
  if (augment_) augment_->set_p(p);
}

std::pair<at::Tensor, at::Tensor> TrainingStep::run_G(const at::Tensor& z, const at::Tensor& c) {
  at::Tensor ws = G_->mapping(z, c);  // [N, num_ws, w_dim]; updates w_avg (training mode)
  const int64_t num_ws = ws.size(1);
  if (o_.style_mixing_prob > 0 && num_ws > 1) {
    // The reference's draws: a cutoff in [1, num_ws), a coin, and a second z; one cutoff per round.
    const int64_t cutoff = at::randint(1, num_ws, {}, local_gen_, at::kLong).item<int64_t>();
    const double coin = at::rand({}, local_gen_).item<double>();
    at::Tensor z2 = at::randn(z.sizes(), local_gen_, z.options());
    if (coin < o_.style_mixing_prob) {
      at::Tensor ws2 = G_->mapping(z2, c, 1, -1, /*skip_w_avg_update=*/true);
      ws = at::cat({ws.narrow(1, 0, cutoff), ws2.narrow(1, cutoff, num_ws - cutoff)}, 1);
    }
  }
  at::Tensor img = G_->synthesis(ws, noise_mode_, std::nullopt, local_gen_);
  return {img, ws};
}

at::Tensor TrainingStep::run_D(const at::Tensor& img, const at::Tensor& c) {
  if (augment_) return D_->forward(augment_->forward(img, augment_gen_, o_.augment_debug_percentile), c);
  return D_->forward(img, c);
}

void TrainingStep::accumulate(const Phase& ph, const at::Tensor& real_img, const at::Tensor& real_c,
                              const at::Tensor& gen_z, const at::Tensor& gen_c, double gain) {
  const bool do_Gmain = ph.is_G && ph.main;
  const bool do_Dmain = !ph.is_G && ph.main;
  const bool do_Gpl = ph.is_G && ph.reg && o_.pl_weight != 0;
  const bool do_Dr1 = !ph.is_G && ph.reg && o_.r1_gamma != 0;

  if (do_Gmain) {
    auto [gen_img, ws] = run_G(gen_z, gen_c);
    at::Tensor gen_logits = run_D(gen_img, gen_c);
    stats_.report("Loss/scores/fake", gen_logits);
    stats_.report("Loss/signs/fake", gen_logits.sign());
    at::Tensor loss = at::softplus(-gen_logits);
    stats_.report("Loss/G/loss", loss);
    loss.mean().mul(gain).backward();
  }

  if (do_Gpl) {
    const int64_t n = std::max<int64_t>(1, gen_z.size(0) / o_.pl_batch_shrink);
    auto [gen_img, ws] = run_G(gen_z.narrow(0, 0, n), gen_c.narrow(0, 0, n));
    // Path-length noise from the global stream: every rank draws all ranks' noise, takes its own.
    const int world = comm_.size();
    std::vector<int64_t> shape(gen_img.sizes().begin(), gen_img.sizes().end());
    shape[0] = n * world;
    at::Tensor noise = at::randn(shape, global_gen_, gen_img.options()).narrow(0, n * comm_.rank(), n);
    noise = noise / std::sqrt(static_cast<double>(gen_img.size(2) * gen_img.size(3)));
    auto grads = torch::autograd::grad({(gen_img * noise).sum()}, {ws}, {}, /*retain_graph=*/true,
                                       /*create_graph=*/true);
    at::Tensor lengths = grads[0].square().sum(2).mean(1).sqrt();
    // One global running mean over the path lengths of all ranks, used as a constant in the
    // penalty (as the reference fixtures define it), so the result does not depend on the split.
    at::Tensor mean_len = lengths.detach().mean();
    if (world > 1) {
      double buf[1] = {mean_len.item<double>()};
      comm_.allreduce_sum(buf, 1);
      mean_len = at::full({}, buf[0] / world, lengths.options());
    }
    at::Tensor pl_mean = pl_mean_.lerp(mean_len, o_.pl_decay);
    pl_mean_.copy_(pl_mean.detach());
    at::Tensor penalty = (lengths - pl_mean).square();
    stats_.report("Loss/pl_penalty", penalty);
    at::Tensor loss_pl = penalty * o_.pl_weight;
    stats_.report("Loss/G/reg", loss_pl);
    (gen_img.select(1, 0).select(1, 0).select(1, 0) * 0 + loss_pl).mean().mul(gain).backward();
  }

  at::Tensor loss_Dgen;
  if (do_Dmain) {
    auto [gen_img, ws] = run_G(gen_z, gen_c);
    at::Tensor gen_logits = run_D(gen_img, gen_c);
    stats_.report("Loss/scores/fake", gen_logits);
    stats_.report("Loss/signs/fake", gen_logits.sign());
    loss_Dgen = at::softplus(gen_logits);
    loss_Dgen.mean().mul(gain).backward();
  }

  if (do_Dmain || do_Dr1) {
    at::Tensor real_tmp = real_img.detach().requires_grad_(do_Dr1);
    at::Tensor real_logits = run_D(real_tmp, real_c);
    stats_.report("Loss/scores/real", real_logits);
    stats_.report("Loss/signs/real", real_logits.sign());
    if (augment_ && o_.ada_target) ada_signal_.add(real_logits);
    at::Tensor total = real_logits * 0;
    if (do_Dmain) {
      at::Tensor loss_Dreal = at::softplus(-real_logits);
      stats_.report("Loss/D/loss", loss_Dgen.detach() + loss_Dreal.detach());
      total = total + loss_Dreal;
    }
    if (do_Dr1) {
      auto grads = torch::autograd::grad({real_logits.sum()}, {real_tmp}, {}, /*retain_graph=*/true,
                                         /*create_graph=*/true);
      at::Tensor r1 = grads[0].square().sum({1, 2, 3});
      at::Tensor loss_r1 = r1 * (o_.r1_gamma / 2);
      stats_.report("Loss/r1_penalty", r1);
      stats_.report("Loss/D/reg", loss_r1);
      total = total + loss_r1.unsqueeze(1);
    }
    total.mean().mul(gain).backward();
  }
}

void GradientSync::plan(const std::vector<int64_t>& numels) {
  if (numels == plan_numels_) return;
  // Buckets in reverse order (as backward produces gradients), buffers allocated once.
  plan_.assign(1, {});
  flats_.clear();
  int64_t bytes = 0;
  for (int64_t i = static_cast<int64_t>(numels.size()) - 1; i >= 0; --i) {
    if (bytes >= bucket_bytes_ && !plan_.back().empty()) {
      plan_.emplace_back();
      bytes = 0;
    }
    plan_.back().push_back(i);
    bytes += numels[i] * 4;
  }
  for (const auto& b : plan_) {
    int64_t n = 0;
    for (int64_t i : b) n += numels[i];
    flats_.push_back(at::empty({n}, at::kFloat));
  }
  plan_numels_ = numels;
}

void GradientSync::attach(const std::vector<at::Tensor>& params) {
  at::NoGradGuard no_grad;
  std::vector<int64_t> numels;
  for (const auto& p : params) numels.push_back(p.numel());
  plan(numels);
  for (size_t k = 0; k < plan_.size(); ++k) {
    flats_[k].zero_();
    int64_t off = 0;
    for (int64_t i : plan_[k]) {
      const_cast<at::Tensor&>(params[i]).mutable_grad() = flats_[k].narrow(0, off, numels[i]).view_as(params[i]);
      off += numels[i];
    }
  }
}

void GradientSync::run_attached(const std::vector<at::Tensor>& params, sharding::Communicator& comm) {
  at::NoGradGuard no_grad;
  std::vector<std::pair<float*, size_t>> bufs;
  for (size_t k = 0; k < plan_.size(); ++k) {
    int64_t off = 0;
    float* const base = flats_[k].data_ptr<float>();
    for (int64_t i : plan_[k]) {
      const at::Tensor& g = params[i].grad();
      if (!g.defined() || g.data_ptr() != static_cast<void*>(base + off)) {  // replaced, not accumulated
        at::Tensor view = flats_[k].narrow(0, off, plan_numels_[i]);
        if (g.defined()) view.copy_(g.reshape({-1}));
        const_cast<at::Tensor&>(params[i]).mutable_grad() = view.view_as(params[i]);
      }
      off += plan_numels_[i];
    }
    bufs.emplace_back(flats_[k].data_ptr<float>(), static_cast<size_t>(flats_[k].numel()));
  }
  comm.allreduce_mean_many(bufs);  // sum over trainers, divided by their number
}

void TrainingStep::run_phase(Phase& ph, const std::vector<at::Tensor>& reals, const std::vector<at::Tensor>& real_cs,
                             const at::Tensor& gen_z, const at::Tensor& gen_c) {
  const auto t0 = std::chrono::steady_clock::now();
  ParamStore& store = ph.is_G ? G_->state() : D_->state();
  Adam& opt = ph.is_G ? *G_opt_ : *D_opt_;
  store.zero_grad();
  // Several trainers: gradients accumulate directly in the allreduce buckets (no copies).
  GradientSync& sync = ph.is_G ? G_sync_ : D_sync_;
  const std::vector<at::Tensor> params = store.trainable_parameters();
  if (comm_.size() > 1) sync.attach(params);
  set_trainable(store, true);
  const int64_t bg = o_.batch_gpu;
  for (size_t r = 0; r < reals.size(); ++r)
    accumulate(ph, reals[r], real_cs[r], gen_z.narrow(0, r * bg, bg), gen_c.narrow(0, r * bg, bg), ph.interval);
  set_trainable(store, false);
  if (comm_.size() > 1) {
    const auto s0 = std::chrono::steady_clock::now();
    sync.run_attached(params, comm_);
    sync_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count();
  }
  sanitize_gradients(store);
  opt.step();
  ph.ms_last = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

void TrainingStep::iteration(const at::Tensor& real_img_u8, const at::Tensor& real_c) {
  const int64_t bpr = o_.batch_per_trainer();
  if (real_img_u8.size(0) != bpr) throw std::invalid_argument("training: wrong number of real images for this rank");
  at::Tensor real = real_img_u8.to(at::kFloat) / 127.5 - 1;
  std::vector<at::Tensor> reals = real.split(o_.batch_gpu);
  at::Tensor rc = real_c.defined() && real_c.size(1) > 0 ? real_c.to(at::kFloat) : at::zeros({bpr, 0});
  std::vector<at::Tensor> real_cs = rc.split(o_.batch_gpu);

  const int64_t B = o_.batch_size, nph = static_cast<int64_t>(phases_.size());
  at::Tensor all_z = at::randn({nph * B, o_.G.z_dim}, global_gen_);
  at::Tensor all_c = at::zeros({nph * B, o_.label_dim});
  if (o_.label_dim > 0) {
    at::Tensor idx = at::randint(0, o_.dataset_size, {nph * B}, global_gen_, at::kLong);
    at::Tensor table = at::from_blob(labels_.data(), {o_.dataset_size, o_.label_dim}, at::kFloat);
    all_c = table.index_select(0, idx).clone();
  }
  const int64_t off = comm_.rank() * bpr;
  for (int64_t p = 0; p < nph; ++p) {
    Phase& ph = phases_[p];
    if (counters_.batch_idx % ph.interval != 0) continue;
    run_phase(ph, reals, real_cs, all_z.narrow(0, p * B + off, bpr), all_c.narrow(0, p * B + off, bpr));
  }

  double ema_nimg = o_.ema_kimg * 1000;
  if (o_.ema_rampup) ema_nimg = std::min(ema_nimg, static_cast<double>(counters_.cur_nimg) * *o_.ema_rampup);
  const double ema_beta = std::pow(0.5, static_cast<double>(B) / std::max(ema_nimg, 1e-8));
  update_ema(G_ema_->state(), G_->state(), ema_beta);

  counters_.cur_nimg += B;
  counters_.batch_idx += 1;
  if (augment_ && o_.ada_target && counters_.batch_idx % o_.ada_interval == 0) {
    auto [s, n] = ada_signal_.take(comm_);
    set_augment_p(ada_.next_p(counters_.augment_p, s, n));
  }
}

TrainCounters TrainingStep::counters_for_checkpoint() {
  auto [s, n] = ada_signal_.take(comm_);
  ada_signal_.set_local(comm_.rank() == 0 ? s : 0, comm_.rank() == 0 ? n : 0);
  TrainCounters c = counters_;
  c.ada_sign_sum = s;
  c.ada_sign_count = n;
  c.pl_mean = pl_mean_.item<double>();
  return c;
}

void TrainingStep::restore(const TrainCounters& c) {
  counters_ = c;
  at::NoGradGuard no_grad;
  pl_mean_.fill_(c.pl_mean);
  set_augment_p(c.augment_p);
  if (comm_.rank() == 0)
    ada_signal_.set_local(c.ada_sign_sum, c.ada_sign_count);
  else
    ada_signal_.set_local(0, 0);
}

std::map<std::string, at::Tensor> TrainingStep::gather_rng_states() {
  std::map<std::string, at::Tensor> out;
  out["global"] = global_gen_.get_state();
  const int world = comm_.size(), me = comm_.rank();
  for (const char* name : {"local", "augment"}) {
    at::Tensor mine = (std::string(name) == "local" ? local_gen_ : augment_gen_).get_state();
    const int64_t n = mine.numel();
    // Gather through a sum: each rank fills its own slot (bytes are exact in float64).
    std::vector<double> all(static_cast<size_t>(n * world), 0.0);
    const uint8_t* p = mine.data_ptr<uint8_t>();
    for (int64_t i = 0; i < n; ++i) all[static_cast<size_t>(me * n + i)] = p[i];
    comm_.allreduce_sum(all.data(), all.size());
    for (int r = 0; r < world; ++r) {
      at::Tensor t = at::empty({n}, at::kByte);
      for (int64_t i = 0; i < n; ++i) t.data_ptr<uint8_t>()[i] = static_cast<uint8_t>(all[static_cast<size_t>(r * n + i)]);
      out[std::string(name) + ".rank" + std::to_string(r)] = t;
    }
  }
  return out;
}

void TrainingStep::restore_rng_states(const std::map<std::string, at::Tensor>& states) {
  auto find = [&](const std::string& base) -> const at::Tensor& {
    auto it = states.find(base + ".rank" + std::to_string(comm_.rank()));
    if (it == states.end() && comm_.size() == 1) it = states.find(base);
    if (it == states.end()) throw std::runtime_error("checkpoint has no random state '" + base + "' for rank " +
                                                     std::to_string(comm_.rank()));
    return it->second;
  };
  auto g = states.find("global");
  if (g == states.end()) throw std::runtime_error("checkpoint has no random state 'global'");
  global_gen_.set_state(g->second);
  local_gen_.set_state(find("local"));
  augment_gen_.set_state(find("augment"));
}

void TrainingStep::check_consistency() {
  if (comm_.size() <= 1) return;
  at::NoGradGuard no_grad;
  for (std::pair<const char*, ParamStore*> net : {std::pair<const char*, ParamStore*>{"G", &G_->state()},
                                                  {"D", &D_->state()}, {"G_ema", &G_ema_->state()}}) {
    std::vector<at::Tensor> parts;
    std::vector<const NamedTensor*> keys;
    for (const auto& e : net.second->entries()) {
      if (e.name.size() >= 5 && e.name.compare(e.name.size() - 5, 5, "w_avg") == 0) continue;
      parts.push_back(e.tensor.detach().reshape({-1}).to(at::kFloat));
      keys.push_back(&e);
    }
    at::Tensor mine = at::cat(parts).contiguous();
    at::Tensor ref = mine.clone();
    comm_.broadcast(ref.data_ptr(), static_cast<size_t>(ref.numel()) * 4, 0);
    double bad = at::equal(mine, ref) ? 0 : 1;
    std::string first;
    if (bad > 0) {
      int64_t off = 0;
      for (size_t i = 0; i < keys.size(); ++i) {
        const int64_t n = keys[i]->tensor.numel();
        if (!at::equal(mine.narrow(0, off, n), ref.narrow(0, off, n))) {
          first = keys[i]->name;
          break;
        }
        off += n;
      }
    }
    double total = bad;
    comm_.allreduce_sum(&total, 1);
    if (bad > 0)
      throw std::runtime_error("rank " + std::to_string(comm_.rank()) + ": " + net.first + "." + first +
                               " differs from rank 0 (ranks diverged)");
    if (total > 0)
      throw std::runtime_error("rank " + std::to_string(comm_.rank()) + ": " + std::to_string(static_cast<int>(total)) +
                               " rank(s) diverged from rank 0 in " + net.first);
  }
}

void TrainingStep::broadcast_parameters() {
  if (comm_.size() <= 1) return;
  at::NoGradGuard no_grad;
  for (ParamStore* s : {&G_->state(), &D_->state(), &G_ema_->state()})
    for (const auto& e : s->entries()) {
      at::Tensor t = e.tensor;
      comm_.broadcast(t.data_ptr(), static_cast<size_t>(t.numel() * t.element_size()), 0);
    }
}

}  // namespace sf::trainer
