#include "trainer/training_step.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <chrono>
#include <cmath>
#include <iostream>
#include <mutex>
#include <stdexcept>

#include "trainer/cuda/bucket_ops.h"
#include "trainer/device.h"
#ifdef STYLEFORGE_WITH_CUDA
#include <c10/cuda/CUDAStream.h>
#endif
#ifdef STYLEFORGE_WITH_NCCL
#include "sharding/nccl_comm.h"
#endif

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

TrainingStep::TrainingStep(const TrainOptions& o, sharding::Communicator& comm, std::vector<float> labels,
                           c10::Device device, sharding::Communicator* device_comm)
    : o_(o), comm_(comm), labels_(std::move(labels)), stats_(comm.rank()), device_(device),
      dcomm_(device_comm ? *device_comm : comm) {
  if (o_.label_dim > 0 && labels_.size() != static_cast<size_t>(o_.dataset_size) * o_.label_dim)
    throw std::invalid_argument("training: label table does not match the dataset");
  at::Generator init = make_cpu_generator(derive_seed(o_.seed, 0, "init"));
  G_ = std::make_unique<Generator>(o_.G, init);
  D_ = std::make_unique<Discriminator>(o_.D, init);
  G_ema_ = std::make_unique<Generator>(o_.G, init);
  G_ema_->state().copy_from(G_->state());
  // Built on the CPU from the seeded CPU generator (the same weights on every device), then moved
  // in place: every layer keeps its handles, now on the device.
  for (ParamStore* st : {&G_->state(), &D_->state(), &G_ema_->state()}) st->to(device_);
  G_->train(true);
  G_ema_->train(false);
  // Mixed precision (not --fp32): float16 blocks on CUDA devices only (trainer/precision.h).
  for (Generator* g : {G_.get(), G_ema_.get()}) g->set_mixed_precision(!o_.fp32, o_.nhwc);
  D_->set_mixed_precision(!o_.fp32, o_.nhwc);
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
  pl_mean_ = at::zeros({}, at::TensorOptions().dtype(at::kFloat).device(device_));
  noise_mode_ = parse_noise_mode(o_.noise_mode);
  global_gen_ = make_cpu_generator(derive_seed(o_.seed, 0, "global"));
  local_gen_ = make_cpu_generator(derive_seed(o_.seed, comm_.rank(), "local"));
  augment_gen_ = make_cpu_generator(derive_seed(o_.seed, comm_.rank(), "augment"));
  if (device_.is_cpu()) {
    global_dev_ = global_gen_, local_dev_ = local_gen_, augment_dev_ = augment_gen_;
  } else {
    global_dev_ = make_device_generator(device_, derive_seed(o_.seed, 0, "device.global"));
    local_dev_ = make_device_generator(device_, derive_seed(o_.seed, comm_.rank(), "device.local"));
    augment_dev_ = make_device_generator(device_, derive_seed(o_.seed, comm_.rank(), "device.augment"));
  }
  make_reducer(/*overlap=*/!device_.is_cpu());  // as --overlap auto; set_overlap() changes it
  verify_devices(/*with_optimizer=*/true);
}

namespace {

// Device gradients over a host communicator (MPI, parameter servers): each bucket is copied to
// host memory when backward has produced it (the copy waits for the compute stream), reduced
// there by `inner` (overlapped or not), and copied back at finish().
class HostStagingReducer final : public sharding::BucketReducer {
 public:
  HostStagingReducer(std::unique_ptr<sharding::BucketReducer> inner, c10::Device device)
      : inner_(std::move(inner)), device_(device) {}
  void launch(float* data, size_t count) override {
    const auto t0 = std::chrono::steady_clock::now();
    at::Tensor dev = at::from_blob(data, {static_cast<int64_t>(count)}, at::TensorOptions().dtype(at::kFloat).device(device_));
    at::Tensor host = at::empty({static_cast<int64_t>(count)}, at::TensorOptions().dtype(at::kFloat).pinned_memory(true));
    host.copy_(dev);  // blocking: the host buffer is complete before MPI reads it
    staged_.emplace_back(dev, host);
    copy_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    inner_->launch(host.data_ptr<float>(), count);
  }
  void finish() override {
    inner_->finish();
    const auto t0 = std::chrono::steady_clock::now();
    for (auto& [dev, host] : staged_) dev.copy_(host);
    staged_.clear();
    exposed_s_ = inner_->exposed_seconds() + copy_s_ +
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    copy_s_ = exposed_s_ - inner_->exposed_seconds();
  }
  std::string describe() const override { return inner_->describe() + ", staged through host memory"; }

 private:
  std::unique_ptr<sharding::BucketReducer> inner_;
  c10::Device device_;
  std::vector<std::pair<at::Tensor, at::Tensor>> staged_;
  double copy_s_ = 0;
};

bool is_nccl(const sharding::Communicator& c) { return c.describe().rfind("nccl", 0) == 0; }

}  // namespace

void TrainingStep::make_reducer(bool overlap) {
  reducer_.reset();
  if (dcomm_.size() <= 1) return;
#ifdef STYLEFORGE_WITH_NCCL
  if (auto* nccl = dynamic_cast<sharding::NcclCommunicator*>(&dcomm_)) {
    auto stream = [] { return static_cast<void*>(c10::cuda::getCurrentCUDAStream().stream()); };
    nccl->set_compute_stream(stream);
    if (overlap) {
      reducer_ = nccl->make_reducer(stream);
      return;
    }
  }
#endif
  if (overlap && sharding::mpi_allows_worker_thread())
    reducer_ = std::make_unique<sharding::ThreadedReducer>(dcomm_);
  else
    reducer_ = std::make_unique<sharding::DeferredReducer>(dcomm_);
  if (!device_.is_cpu() && !is_nccl(dcomm_))  // device gradients, host communicator
    reducer_ = std::make_unique<HostStagingReducer>(std::move(reducer_), device_);
}

void TrainingStep::broadcast_tensor(at::Tensor& t) {
  if (device_.is_cpu() || is_nccl(dcomm_)) {
    dcomm_.broadcast(t.data_ptr(), static_cast<size_t>(t.numel() * t.element_size()), 0);
    return;
  }
  at::Tensor host = t.cpu().contiguous();
  dcomm_.broadcast(host.data_ptr(), static_cast<size_t>(host.numel() * host.element_size()), 0);
  t.copy_(host);
}

void TrainingStep::set_overlap(bool on) {
  const double before = sync_seconds();
  make_reducer(on);
  extra_sync_s_ = before - (reducer_ ? reducer_->exposed_seconds() : 0);
}

void TrainingStep::verify_devices(bool with_optimizer) const {
  require_device(G_->state(), "G", device_);
  require_device(D_->state(), "D", device_);
  require_device(G_ema_->state(), "G_ema", device_);
  require_device(pl_mean_, "pl_mean", device_);
  // Adam creates its states like the parameters; they are checked after loads, not every step.
  if (with_optimizer)
    for (const Adam* a : {G_opt_.get(), D_opt_.get()})
      for (const auto& [name, t] : a->state_tensors())
        if (t.dim() > 0) require_device(t, std::string(a == G_opt_.get() ? "G_opt." : "D_opt.") + name, device_);
}

at::Tensor TrainingStep::mean_over_ranks(const at::Tensor& scalar) {
  if (dcomm_.size() <= 1 || !reducer_) return scalar;
  at::Tensor buf = scalar.detach().to(at::kFloat).reshape({1}).clone();
  reducer_->launch(buf.data_ptr<float>(), 1);
  reducer_->finish();
  return buf.reshape({});
}

at::Tensor TrainingStep::topk_weights(const at::Tensor& local_logits, int64_t k) {
  const int world = comm_.size(), rank = comm_.rank();
  const int64_t n = local_logits.size(0);
  // Every rank's logits in rank order: each rank fills its slice of a zero buffer, and the mean
  // over the ranks times their number restores the values (one exact addition of each value to
  // zeros; all ranks receive the same bits, so all select the same fakes).
  at::Tensor all = at::zeros({n * world}, local_logits.options().dtype(at::kFloat));
  all.narrow(0, n * rank, n).copy_(local_logits);
  if (world > 1 && reducer_) {
    reducer_->launch(all.data_ptr<float>(), static_cast<size_t>(all.numel()));
    reducer_->finish();
    all.mul_(static_cast<double>(world));
  }
  // The k highest scores; equal scores are taken in rank-and-index order (a stable sort).
  at::Tensor order = std::get<1>(at::sort(all, /*stable=*/true, /*dim=*/0, /*descending=*/true));
  at::Tensor selected = at::zeros({n * world}, all.options());
  selected.index_fill_(0, order.narrow(0, 0, k), 1.0);
  // Weight world / k per selected fake: after the gradient mean over the ranks, G's loss is the
  // mean of softplus(-logit) over the k selected fakes of the global batch.
  return selected.narrow(0, n * rank, n).mul(static_cast<double>(world) / static_cast<double>(k)).to(local_logits.scalar_type());
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
    at::Tensor z2 = at::randn(z.sizes(), local_dev_, z.options());
    if (coin < o_.style_mixing_prob) {
      at::Tensor ws2 = G_->mapping(z2, c, 1, -1, /*skip_w_avg_update=*/true);
      ws = at::cat({ws.narrow(1, 0, cutoff), ws2.narrow(1, cutoff, num_ws - cutoff)}, 1);
    }
  }
  at::Tensor img = G_->synthesis(ws, noise_mode_, std::nullopt, local_dev_);
  return {img, ws};
}

at::Tensor TrainingStep::run_D(const at::Tensor& img, const at::Tensor& c) {
  if (augment_) return D_->forward(augment_->forward(img, augment_dev_, o_.augment_debug_percentile), c);
  return D_->forward(img, c);
}

void TrainingStep::accumulate(const Phase& ph, const at::Tensor& real_img, const at::Tensor& real_c,
                              const at::Tensor& gen_z, const at::Tensor& gen_c, double gain, bool last_round) {
  const bool do_Gmain = ph.is_G && ph.main;
  const bool do_Dmain = !ph.is_G && ph.main;
  const bool do_Gpl = ph.is_G && ph.reg && o_.pl_weight != 0;
  const bool do_Dr1 = !ph.is_G && ph.reg && o_.r1_gamma != 0;
  // The last backward pass of the phase arms the bucket hooks: its gradients complete the buckets.
  auto backward = [&](const at::Tensor& loss, bool last_pass) {
    if (last_round && last_pass && active_sync_) active_sync_->arm(reducer_.get());
    loss.backward();
  };

  if (do_Gmain) {
    auto [gen_img, ws] = run_G(gen_z, gen_c);
    at::Tensor gen_logits = run_D(gen_img, gen_c);
    stats_.report("Loss/scores/fake", gen_logits);
    stats_.report("Loss/signs/fake", gen_logits.sign());
    at::Tensor loss = at::softplus(-gen_logits);
    stats_.report("Loss/G/loss", loss);
    if (o_.topk) {
      // Top-k over this round's fakes of all ranks (the global batch when batch_gpu is the
      // per-trainer batch): every rank sees every logit and selects the same k.
      const int world = comm_.size();
      const int64_t n = gen_logits.size(0);
      const int64_t epoch = o_.dataset_size > 0 ? counters_.cur_nimg / o_.dataset_size : 0;
      const int64_t k = topk_count(o_.topk_gamma, o_.topk_min, n * world, epoch);
      at::Tensor weights = topk_weights(gen_logits.detach().reshape({-1}), k);
      stats_.report0("Loss/G/topk", static_cast<double>(k));
      backward((loss.reshape({-1}) * weights).sum().mul(gain), /*last_pass=*/!do_Gpl);
    } else {
      backward(loss.mean().mul(gain), /*last_pass=*/!do_Gpl);
    }
  }

  if (do_Gpl) {
    const int64_t n = std::max<int64_t>(1, gen_z.size(0) / o_.pl_batch_shrink);
    auto [gen_img, ws] = run_G(gen_z.narrow(0, 0, n), gen_c.narrow(0, 0, n));
    // Path-length noise from the global stream: every rank draws all ranks' noise, takes its own.
    const int world = comm_.size();
    std::vector<int64_t> shape(gen_img.sizes().begin(), gen_img.sizes().end());
    shape[0] = n * world;
    at::Tensor noise = at::randn(shape, global_dev_, gen_img.options()).narrow(0, n * comm_.rank(), n);
    noise = noise / std::sqrt(static_cast<double>(gen_img.size(2) * gen_img.size(3)));
    auto grads = torch::autograd::grad({(gen_img * noise).sum()}, {ws}, {}, /*retain_graph=*/true,
                                       /*create_graph=*/true);
    at::Tensor lengths = grads[0].square().sum(2).mean(1).sqrt();
    // One global running mean over the path lengths of all ranks, used as a constant in the
    // penalty (as the reference fixtures define it), so the result does not depend on the split.
    // Reduced on the device (no host round trip): NCCL on GPUs, the host ring on CPUs.
    at::Tensor mean_len = mean_over_ranks(lengths.detach().mean());
    at::Tensor pl_mean = pl_mean_.lerp(mean_len, o_.pl_decay);
    pl_mean_.copy_(pl_mean.detach());
    at::Tensor penalty = (lengths - pl_mean).square();
    stats_.report("Loss/pl_penalty", penalty);
    at::Tensor loss_pl = penalty * o_.pl_weight;
    stats_.report("Loss/G/reg", loss_pl);
    backward((gen_img.select(1, 0).select(1, 0).select(1, 0) * 0 + loss_pl).mean().mul(gain), /*last_pass=*/true);
  }

  at::Tensor loss_Dgen;
  if (do_Dmain) {
    auto [gen_img, ws] = run_G(gen_z, gen_c);
    at::Tensor gen_logits = run_D(gen_img, gen_c);
    stats_.report("Loss/scores/fake", gen_logits);
    stats_.report("Loss/signs/fake", gen_logits.sign());
    loss_Dgen = at::softplus(gen_logits);
    backward(loss_Dgen.mean().mul(gain), /*last_pass=*/false);
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
    backward(total.mean().mul(gain), /*last_pass=*/true);
  }
}

struct GradientSync::State {
  int64_t bucket_bytes = 25 << 20;
  std::vector<std::vector<int64_t>> plan;    // tensor indices per bucket
  std::vector<int64_t> numels, bucket_of, offset_of;
  std::vector<at::Tensor> flats;             // one flat float buffer per bucket
  std::vector<at::Tensor> params;            // the attached parameters
  std::vector<const void*> hooked;           // parameters whose hook is installed
  std::vector<int64_t> remaining;            // gradients still to come per bucket (armed pass)
  size_t next_launch = 0;
  sharding::BucketReducer* reducer = nullptr;
  bool armed = false;
  std::mutex mu;

  // Puts a gradient that backward replaced (instead of accumulating into its view) back into its
  // bucket. Caller holds mu.
  void fix_grad(int64_t i) {
    at::NoGradGuard no_grad;
    at::Tensor& p = params[static_cast<size_t>(i)];
    const at::Tensor& g = p.grad();
    at::Tensor& flat = flats[static_cast<size_t>(bucket_of[i])];
    const void* expected = static_cast<const char*>(flat.data_ptr()) + offset_of[i] * 4;
    if (g.defined() && g.data_ptr() == expected) return;
    at::Tensor view = flat.narrow(0, offset_of[i], numels[i]);
    if (g.defined()) view.copy_(g.reshape({-1}));
    else view.zero_();
    p.mutable_grad() = view.view_as(p);
  }
  void launch_ready() {  // caller holds mu
    while (next_launch < plan.size() && remaining[next_launch] <= 0) {
      at::Tensor& f = flats[next_launch];
      reducer->launch(f.data_ptr<float>(), static_cast<size_t>(f.numel()));
      ++next_launch;
    }
  }
  void mark_ready(int64_t i) {
    std::lock_guard<std::mutex> lock(mu);
    if (!armed || i >= static_cast<int64_t>(params.size())) return;
    fix_grad(i);
    --remaining[static_cast<size_t>(bucket_of[i])];
    launch_ready();
  }
};

namespace {

// Runs after AccumulateGrad wrote a parameter's gradient (PyTorch's post-accumulate-grad hook).
class BucketReadyHook final : public torch::autograd::PostAccumulateGradHook {
 public:
  BucketReadyHook(std::weak_ptr<GradientSync::State> st, int64_t index) : st_(std::move(st)), index_(index) {}
  void operator()(const torch::autograd::Variable&) override {
    if (auto st = st_.lock()) st->mark_ready(index_);
  }

 private:
  std::weak_ptr<GradientSync::State> st_;
  int64_t index_;
};

}  // namespace

GradientSync::GradientSync(int64_t bucket_bytes) : st_(std::make_shared<State>()) { st_->bucket_bytes = bucket_bytes; }
GradientSync::~GradientSync() = default;
GradientSync::GradientSync(GradientSync&&) noexcept = default;
GradientSync& GradientSync::operator=(GradientSync&&) noexcept = default;

int64_t GradientSync::num_buckets() const { return static_cast<int64_t>(st_->plan.size()); }

void GradientSync::attach(const std::vector<at::Tensor>& params) {
  at::NoGradGuard no_grad;
  State& s = *st_;
  std::lock_guard<std::mutex> lock(s.mu);
  std::vector<int64_t> numels;
  for (const auto& p : params) numels.push_back(p.numel());
  const bool same_device = s.flats.empty() || params.empty() || s.flats[0].device() == params[0].device();
  if (numels != s.numels || !same_device) {
    // Buckets in reverse order (as backward produces gradients), buffers allocated once.
    s.plan.assign(1, {});
    s.flats.clear();
    // As PyTorch DDP: the first bucket (the last layers, whose gradients come first) is at most
    // 1 MiB so that communication starts early; the others hold about bucket_bytes.
    int64_t bytes = 0;
    for (int64_t i = static_cast<int64_t>(numels.size()) - 1; i >= 0; --i) {
      const int64_t cap = s.plan.size() == 1 ? std::min<int64_t>(s.bucket_bytes, 1 << 20) : s.bucket_bytes;
      if (bytes >= cap && !s.plan.back().empty()) {
        s.plan.emplace_back();
        bytes = 0;
      }
      s.plan.back().push_back(i);
      bytes += numels[i] * 4;
    }
    s.bucket_of.assign(numels.size(), 0);
    s.offset_of.assign(numels.size(), 0);
    for (size_t b = 0; b < s.plan.size(); ++b) {
      int64_t n = 0;
      for (int64_t i : s.plan[b]) {
        s.bucket_of[i] = static_cast<int64_t>(b);
        s.offset_of[i] = n;
        n += numels[i];
      }
      at::TensorOptions opt = at::TensorOptions().dtype(at::kFloat);
      if (!params.empty()) opt = opt.device(params[0].device());
      s.flats.push_back(at::empty({n}, opt));
    }
    s.numels = numels;
  }
  s.params = params;
  s.armed = false;
  for (size_t b = 0; b < s.plan.size(); ++b) {
    s.flats[b].zero_();
    for (int64_t i : s.plan[b])
      s.params[i].mutable_grad() = s.flats[b].narrow(0, s.offset_of[i], numels[i]).view_as(s.params[i]);
  }
  // Hooks: installed once per parameter list (they look the parameter up by index).
  std::vector<const void*> ids;
  for (const auto& p : params) ids.push_back(p.unsafeGetTensorImpl());
  if (ids != s.hooked) {
    for (size_t i = 0; i < params.size(); ++i)
      torch::autograd::impl::set_post_acc_grad_hooks(
          params[i], std::make_unique<BucketReadyHook>(st_, static_cast<int64_t>(i)));
    s.hooked = ids;
  }
}

void GradientSync::arm(sharding::BucketReducer* reducer) {
  State& s = *st_;
  std::lock_guard<std::mutex> lock(s.mu);
  s.reducer = reducer;
  s.armed = reducer != nullptr;
  s.next_launch = 0;
  s.remaining.assign(s.plan.size(), 0);
  for (size_t b = 0; b < s.plan.size(); ++b) s.remaining[b] = static_cast<int64_t>(s.plan[b].size());
}

void GradientSync::finish(sharding::BucketReducer* reducer) {
  State& s = *st_;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    for (size_t i = 0; i < s.params.size(); ++i) s.fix_grad(static_cast<int64_t>(i));
    s.armed = false;
    if (reducer) {
      if (s.reducer != reducer) s.next_launch = 0;  // never armed: nothing launched yet
      s.reducer = reducer;
      for (auto& r : s.remaining) r = 0;
      s.remaining.resize(s.plan.size(), 0);
      s.launch_ready();  // buckets backward did not complete (unused parameters)
    }
    s.reducer = nullptr;
  }
  if (reducer) reducer->finish();
}

void GradientSync::sanitize() {
  at::NoGradGuard no_grad;
  for (at::Tensor& f : st_->flats) {
    if (f.is_cuda()) {
#ifdef STYLEFORGE_WITH_CUDA
      kernels::sanitize_gradients_device(f.data_ptr<float>(), static_cast<size_t>(f.numel()),
                                         c10::cuda::getCurrentCUDAStream(f.device().index()).stream());
#endif
    } else {
      at::nan_to_num_out(f, f, 0.0, 1e5, -1e5);  // same arithmetic as kernels::sanitize_gradient, vectorised
    }
  }
}

void GradientSync::run_attached(const std::vector<at::Tensor>& params, sharding::Communicator& comm) {
  if (params.size() != st_->params.size()) throw std::logic_error("GradientSync: run_attached on other parameters");
  sharding::DeferredReducer r(comm);
  finish(&r);
}

void TrainingStep::run_phase(Phase& ph, const std::vector<at::Tensor>& reals, const std::vector<at::Tensor>& real_cs,
                             const at::Tensor& gen_z, const at::Tensor& gen_c) {
  const auto t0 = std::chrono::steady_clock::now();
  ParamStore& store = ph.is_G ? G_->state() : D_->state();
  Adam& opt = ph.is_G ? *G_opt_ : *D_opt_;
  store.zero_grad();
  // Gradients accumulate directly in the bucket buffers; buckets are reduced while the last
  // backward pass of the phase still runs.
  GradientSync& sync = ph.is_G ? G_sync_ : D_sync_;
  const std::vector<at::Tensor> params = store.trainable_parameters();
  sync.attach(params);
  active_sync_ = &sync;
  set_trainable(store, true);
  const int64_t bg = o_.batch_gpu;
  try {
    for (size_t r = 0; r < reals.size(); ++r)
      accumulate(ph, reals[r], real_cs[r], gen_z.narrow(0, r * bg, bg), gen_c.narrow(0, r * bg, bg), ph.interval,
                 r + 1 == reals.size());
  } catch (...) {
    active_sync_ = nullptr;
    set_trainable(store, false);
    sync.finish(nullptr);
    throw;
  }
  active_sync_ = nullptr;
  set_trainable(store, false);
  sync.finish(reducer_.get());  // waits only for what backward did not hide
  sync.sanitize();
  opt.step();
  ph.ms_last = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

void TrainingStep::iteration(const at::Tensor& real_img_u8, const at::Tensor& real_c) {
  const int64_t bpr = o_.batch_per_trainer();
  if (real_img_u8.size(0) != bpr) throw std::invalid_argument("training: wrong number of real images for this rank");
  for (const auto* t : {&real_img_u8, &real_c})
    if (t->defined() && !t->device().is_cpu() && t->device() != device_)
      throw std::runtime_error(std::string("training: the real ") + (t == &real_img_u8 ? "images" : "labels") +
                               " are on " + t->device().str() + ", the step runs on " + device_.str());
  verify_devices(/*with_optimizer=*/false);
  const at::TensorOptions fopt = at::TensorOptions().dtype(at::kFloat).device(device_);
  // Host batches in pinned memory are copied without blocking (they overlap the previous step).
  at::Tensor real = real_img_u8.to(device_, /*non_blocking=*/true).to(at::kFloat) / 127.5 - 1;
  std::vector<at::Tensor> reals = real.split(o_.batch_gpu);
  at::Tensor rc = real_c.defined() && real_c.size(1) > 0 ? real_c.to(device_, /*non_blocking=*/true).to(at::kFloat)
                                                         : at::zeros({bpr, 0}, fopt);
  std::vector<at::Tensor> real_cs = rc.split(o_.batch_gpu);

  // z and labels of generated images: the global CPU stream (the same on every device).
  const int64_t B = o_.batch_size, nph = static_cast<int64_t>(phases_.size());
  at::Tensor all_z = at::randn({nph * B, o_.G.z_dim}, global_gen_);
  at::Tensor all_c = at::zeros({nph * B, o_.label_dim});
  if (o_.label_dim > 0) {
    at::Tensor idx = at::randint(0, o_.dataset_size, {nph * B}, global_gen_, at::kLong);
    at::Tensor table = at::from_blob(labels_.data(), {o_.dataset_size, o_.label_dim}, at::kFloat);
    all_c = table.index_select(0, idx).clone();
  }
  all_z = all_z.to(device_);
  all_c = all_c.to(device_);
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
  const int world = comm_.size(), me = comm_.rank();
  const bool dev = !device_.is_cpu();
  const std::string kind = device_.is_cpu() ? "" : std::string(c10::DeviceTypeName(device_.type(), true)) + ".";
  out["global"] = global_gen_.get_state();
  if (dev) out[kind + "global"] = global_dev_.get_state();
  std::vector<std::pair<std::string, at::Generator*>> per_rank = {{"local", &local_gen_}, {"augment", &augment_gen_}};
  if (dev) {
    per_rank.emplace_back(kind + "local", &local_dev_);
    per_rank.emplace_back(kind + "augment", &augment_dev_);
  }
  for (auto& [name, gen] : per_rank) {
    at::Tensor mine = gen->get_state().cpu().contiguous();
    const int64_t n = mine.numel();
    // Gather through a sum: each rank fills its own slot (bytes are exact in float64).
    std::vector<double> all(static_cast<size_t>(n * world), 0.0);
    const uint8_t* p = mine.data_ptr<uint8_t>();
    for (int64_t i = 0; i < n; ++i) all[static_cast<size_t>(me * n + i)] = p[i];
    comm_.allreduce_sum(all.data(), all.size());
    for (int r = 0; r < world; ++r) {
      at::Tensor t = at::empty({n}, at::kByte);
      for (int64_t i = 0; i < n; ++i) t.data_ptr<uint8_t>()[i] = static_cast<uint8_t>(all[static_cast<size_t>(r * n + i)]);
      out[name + ".rank" + std::to_string(r)] = t;
    }
  }
  return out;
}

bool TrainingStep::restore_rng_states(const std::map<std::string, at::Tensor>& states) {
  auto find = [&](const std::string& base) -> const at::Tensor* {
    auto it = states.find(base + ".rank" + std::to_string(comm_.rank()));
    if (it == states.end() && comm_.size() == 1) it = states.find(base);
    return it == states.end() ? nullptr : &it->second;
  };
  auto need = [&](const std::string& base) -> const at::Tensor& {
    const at::Tensor* t = find(base);
    if (!t) throw std::runtime_error("checkpoint has no random state '" + base + "' for rank " + std::to_string(comm_.rank()));
    return *t;
  };
  auto g = states.find("global");
  if (g == states.end()) throw std::runtime_error("checkpoint has no random state 'global'");
  global_gen_.set_state(g->second);
  local_gen_.set_state(need("local"));
  augment_gen_.set_state(need("augment"));
  // Device streams: saved under "<kind>.<name>" by runs on a device other than the CPU.
  std::string saved_kind;
  for (const auto& [name, t] : states)
    if (name.rfind("cuda.", 0) == 0) saved_kind = "cuda";
  const std::string my_kind = device_.is_cpu() ? "" : std::string(c10::DeviceTypeName(device_.type(), true));
  if (saved_kind == my_kind) {
    if (!my_kind.empty()) {
      auto gd = states.find(my_kind + ".global");
      if (gd == states.end()) throw std::runtime_error("checkpoint has no random state '" + my_kind + ".global'");
      global_dev_.set_state(gd->second);
      local_dev_.set_state(need(my_kind + ".local"));
      augment_dev_.set_state(need(my_kind + ".augment"));
    }
    return true;
  }
  // Another device kind: the CPU streams continue exactly; the device streams start anew from
  // seeds that depend on the resume point (on the CPU the device streams are the CPU streams).
  if (!device_.is_cpu()) {
    const uint64_t salt = static_cast<uint64_t>(counters_.batch_idx) * 0x9e3779b97f4a7c15ULL;
    global_dev_ = make_device_generator(device_, derive_seed(o_.seed ^ salt, 0, "device.global"));
    local_dev_ = make_device_generator(device_, derive_seed(o_.seed ^ salt, comm_.rank(), "device.local"));
    augment_dev_ = make_device_generator(device_, derive_seed(o_.seed ^ salt, comm_.rank(), "device.augment"));
  }
  return false;
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
    broadcast_tensor(ref);
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
  if (dcomm_.size() <= 1) return;
  at::NoGradGuard no_grad;
  for (ParamStore* s : {&G_->state(), &D_->state(), &G_ema_->state()})
    for (const auto& e : s->entries()) {
      at::Tensor t = e.tensor;
      broadcast_tensor(t);
    }
}

}  // namespace sf::trainer
