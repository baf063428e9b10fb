// `styleforge bench` and the seeds of `styleforge generate` (see training_loop.h, generate.h);
// the images of `generate` are computed in generate_images.cpp.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <thread>

#include "data/image.h"
#include "sharding/sampler.h"
#include "sharding/mpi_comm.h"
#include "trainer/checkpoint.h"
#include "trainer/device.h"
#include "trainer/import.h"
#include "trainer/ops.h"
#include "trainer/snapshot_images.h"
#include "trainer/training_loop.h"
#include "trainer/training_step.h"
#ifdef STYLEFORGE_WITH_NCCL
#include "sharding/nccl_comm.h"
#endif
#ifdef STYLEFORGE_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace fs = std::filesystem;

namespace sf::trainer {

// numpy's legacy RandomState(seed).randn(n): MT19937, 53-bit doubles, polar Box-Muller with the
// second value of each pair cached — so that seeds give the same z as the reference's generate.py.
std::vector<double> numpy_randn(uint32_t seed, int n) {
  sharding::NumpyRandomState rs(seed);
  auto uniform = [&rs] {
    const uint32_t a = rs.next_u32() >> 5, b = rs.next_u32() >> 6;
    return (a * 67108864.0 + b) / 9007199254740992.0;
  };
  std::vector<double> out;
  bool has = false;
  double cached = 0;
  while (static_cast<int>(out.size()) < n) {
    if (has) {
      out.push_back(cached);
      has = false;
      continue;
    }
    double x1, x2, r2;
    do {
      x1 = 2.0 * uniform() - 1.0;
      x2 = 2.0 * uniform() - 1.0;
      r2 = x1 * x1 + x2 * x2;
    } while (r2 >= 1.0 || r2 == 0.0);
    const double f = std::sqrt(-2.0 * std::log(r2) / r2);
    cached = f * x1;
    has = true;
    out.push_back(f * x2);
  }
  return out;
}

std::vector<int64_t> parse_seed_list(const std::string& text) {
  std::vector<int64_t> out;
  size_t pos = 0;
  auto bad = [&] { throw std::invalid_argument("--seeds: cannot parse '" + text + "' (e.g. 0-31 or 1,5,7-9)"); };
  if (text.empty()) bad();
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    std::string part = text.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    if (part.empty()) bad();
    size_t dash = part.find('-', 1);
    try {
      size_t used = 0;
      if (dash == std::string::npos) {
        int64_t v = std::stoll(part, &used);
        if (used != part.size() || v < 0) bad();
        out.push_back(v);
      } else {
        int64_t a = std::stoll(part.substr(0, dash), &used);
        if (used != dash) bad();
        int64_t b = std::stoll(part.substr(dash + 1), &used);
        if (used != part.size() - dash - 1 || a < 0 || b < a || b - a > 1000000) bad();
        for (int64_t v = a; v <= b; ++v) out.push_back(v);
      }
    } catch (const std::logic_error&) {
      bad();
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return out;
}

int run_bench(const BenchRequest& r, sharding::Communicator& comm) {
  at::set_num_threads(std::max(1, r.threads));
  TrainOptions o;
  o.data = "(in memory)";
  o.dataset_name = "bench";
  o.cfg = r.cfg.empty() ? "auto" : r.cfg;
  o.aug = r.aug;
  o.seed = r.seed;
  o.batch_override = r.batch;
  if (r.cfg.empty()) {  // a small CPU network unless a preset is named
    o.gamma_override = 0.0002 * r.resolution * r.resolution / r.batch;
    o.cbase_override = r.cbase;
    o.cmax_override = r.cmax;
    o.map_override = 2;
    o.mbstd_override = 4;
  }
  if (r.aug == "fixed") o.p_override = 0.5;
  o.fp32 = r.fp32, o.nhwc = r.nhwc;
  ops::set_conv_cpu_path(ops::parse_conv_cpu_path(r.cpu_conv));
  o.resolve(r.resolution, r.channels, 0, r.batch, comm.size());
  const c10::Device dev = resolve_device(r.device, comm.rank(), comm.size(), false);
  if (dev.is_cuda()) apply_backend_flags(true, false);
  std::unique_ptr<sharding::Communicator> device_comm;
#ifdef STYLEFORGE_WITH_NCCL
  if (dev.is_cuda() && comm.size() > 1) {
    auto* mpi = dynamic_cast<sharding::MpiCommunicator*>(&comm);
    if (!mpi) throw std::invalid_argument("bench: GPU ranks need the MPI communicator for NCCL's bootstrap");
    device_comm = std::make_unique<sharding::NcclCommunicator>(*mpi, dev.index(), mpi->timeout_s());
  }
#endif
  TrainingStep step(o, comm, {}, dev, device_comm.get());
  step.set_bucket_bytes(static_cast<int64_t>(r.bucket_mb * (1 << 20)));
  at::Generator gen = make_cpu_generator(r.seed);
  at::Tensor all = at::randint(0, 256, {r.batch, r.channels, r.resolution, r.resolution}, gen, at::kByte);
  const int64_t bpr = o.batch_per_trainer();
  at::Tensor reals = all.narrow(0, comm.rank() * bpr, bpr).contiguous();
  const bool rank0 = comm.rank() == 0;
  if (rank0)
    std::printf("bench: resolution %d, channels %d, cbase %d, cmax %d, batch %d (%d ranks x %lld), aug %s, threads %d, "
                "iters %d, device %s, %s%s\n",
                r.resolution, r.channels, o.G.channel_base, o.G.channel_max, o.batch_size, comm.size(),
                static_cast<long long>(bpr), r.aug.c_str(), at::get_num_threads(), r.iters,
                describe_device(dev).c_str(),
                r.fp32 || !dev.is_cuda() ? "float32" : r.nhwc ? "mixed precision, nhwc" : "mixed precision",
                dev.is_cuda() ? "" : (", 3x3 convolutions " + r.cpu_conv).c_str());
  if (rank0) {
    std::printf("phases:");
    for (const auto& ph : step.phases()) std::printf(" %s(every %d)", ph.name.c_str(), ph.interval);
    std::printf("; style mixing %.1f, R1 gamma %.4g, pl weight %.0f\n", o.style_mixing_prob, o.r1_gamma, o.pl_weight);
  }
  auto sync_device = [&] {
    if (dev.is_cuda()) (void)step.G().state().entries().front().tensor.sum().item<double>();  // drain the queue
  };
  step.iteration(reals, at::Tensor());  // warm-up (allocations, cuDNN autotuning), not timed
  sync_device();
  // Blocks of `iters` iterations per mode; with --overlap both the modes alternate in pairs.
  std::vector<bool> modes;
  if (r.overlap == "both") {
    for (int p = 0; p < std::max(1, r.pairs); ++p) modes.insert(modes.end(), {false, true});
  } else {
    modes.assign(static_cast<size_t>(std::max(1, r.pairs)), r.overlap != "off");
  }
  struct Acc { std::vector<double> per; double total = 0, sync = 0; };
  Acc acc[2];
  for (bool mode : modes) {
    step.set_overlap(mode);
    comm.barrier();
    const double sync0 = step.sync_seconds();
    for (int i = 0; i < r.iters; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      step.iteration(reals, at::Tensor());
      sync_device();
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      acc[mode].per.push_back(s);
      acc[mode].total += s;
    }
    acc[mode].sync += step.sync_seconds() - sync0;
  }
  double sums[4] = {acc[0].sync, acc[1].sync, acc[0].total, acc[1].total};
  comm.allreduce_sum(sums, 4);  // averaged over ranks below
  double last_sec_per_kimg = 0;
  for (int m = 0; m < 2; ++m) {
    if (acc[m].per.empty()) continue;
    std::vector<double> per = acc[m].per;
    std::sort(per.begin(), per.end());
    const double n_it = static_cast<double>(per.size());
    const double sync_it = sums[m] / comm.size() / n_it, step_it = sums[2 + m] / comm.size() / n_it;
    last_sec_per_kimg = acc[m].total / (n_it * o.batch_size) * 1000;
    if (rank0) {
      std::printf("overlap %-3s: sec/iter mean %.4f  median %.4f  min %.4f  max %.4f", m ? "on" : "off",
                  acc[m].total / n_it, per[per.size() / 2], per.front(), per.back());
      if (comm.size() > 1)
        std::printf("  sync wait %.4f s/iter (%.1f%% of the step)", sync_it, 100.0 * sync_it / step_it);
      std::printf("  sec/kimg %.2f\n", last_sec_per_kimg);
    }
  }
  if (rank0 && comm.size() > 1 && !acc[0].per.empty() && !acc[1].per.empty() && sums[0] > 0) {
    const double before = sums[0] / acc[0].per.size(), after = sums[1] / acc[1].per.size();
    std::printf("exposed gradient sync with overlap / without: %.3f (%.4f vs %.4f s/iter per rank)\n", after / before,
                after / comm.size(), before / comm.size());
  }
#ifdef STYLEFORGE_WITH_CUDA
  if (rank0 && dev.is_cuda()) {
    // Index 0 of the allocator's stat arrays is the aggregate over pools (every LibTorch version).
    const auto st = c10::cuda::CUDACachingAllocator::getDeviceStats(dev.index());
    std::printf("peak GPU memory %.1f MiB allocated, %.1f MiB reserved\n", st.allocated_bytes[0].peak / 1048576.0,
                st.reserved_bytes[0].peak / 1048576.0);
  }
#endif
  if (rank0) std::printf("sec/kimg %.2f\n", last_sec_per_kimg);
  return 0;
}

std::vector<BenchCommRow> run_bench_comm(const std::vector<int64_t>& bytes, int iters, sharding::Communicator& comm,
                                         const std::function<void(float*, size_t)>& raw) {
  std::vector<BenchCommRow> rows;
  const int n = comm.size();
  const double factor = 2.0 * (n - 1) / n;
  for (int64_t b : bytes) {
    const int64_t numel = std::max<int64_t>(1, b / 4);
    // A gradient-like list: tensors from 1/64 of the total down to small biases, then the rest.
    std::vector<at::Tensor> grads;
    int64_t left = numel, size = std::max<int64_t>(1, numel / 64);
    while (left > 0) {
      const int64_t m = std::min(left, size);
      grads.push_back(at::ones({m}));
      left -= m;
      size = size > 512 ? size / 2 : numel / 64 + 1;
    }
    at::Tensor flat = at::ones({numel});
    auto time_it = [&](const std::function<void()>& f) {
      f();  // warm-up
      comm.barrier();
      const auto t0 = std::chrono::steady_clock::now();
      for (int i = 0; i < iters; ++i) f();
      comm.barrier();
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters;
    };
    BenchCommRow row;
    row.bytes = numel * 4;
    // Our sync as training runs it: gradients live in the bucket buffers (attached views).
    GradientSync sync(25 << 20);
    sync.attach(grads);
    row.ours_s = time_it([&] { sync.run_attached(grads, comm); });
    row.raw_s = time_it([&] { raw(flat.data_ptr<float>(), static_cast<size_t>(numel)); });
    row.flat_s = time_it([&] { comm.allreduce_sum(flat.data_ptr<float>(), static_cast<size_t>(numel)); });
    row.ours_busbw = factor * row.bytes / row.ours_s;
    row.raw_busbw = factor * row.bytes / row.raw_s;
    rows.push_back(row);
  }
  return rows;
}

}  // namespace sf::trainer
