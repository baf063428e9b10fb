// `styleforge train`: the training loop around TrainingStep (see training_loop.h).
#include "trainer/training_loop.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "data/loader.h"
#include "data/pack.h"
#include "data/pack_path.h"
#include "data/tb_events.h"
#include "metrics/monitor.h"
#include "sharding/metrics_link.h"
#include "sharding/mpi_comm.h"
#include "sharding/sampler.h"
#ifdef STYLEFORGE_WITH_NCCL
#include "sharding/nccl_comm.h"
#endif
#include "trainer/checkpoint.h"
#include "trainer/device.h"
#include "trainer/ops.h"
#include "trainer/precision.h"
#include "trainer/snapshot_images.h"
#include "trainer/training_step.h"
#include "trainer/transfer.h"

namespace fs = std::filesystem;

namespace sf::trainer {
namespace {

// A number as people write it: 0.1, 25000, 0.004 (std::to_string would print 0.100000).
std::string num_text(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

std::string g_last_run_dir;

// Iterations between agreements on a stop request (see the loop).
constexpr int64_t kStopCheckInterval = 4;

// Lines printed by rank 0 go to stdout and to log.txt in the run directory.
class RunLog {
 public:
  explicit RunLog(bool active) : active_(active) {}
  void open(const std::string& path) {
    if (active_) file_.open(path, std::ios::app);
  }
  void line(const std::string& s) {
    if (!active_) return;
    std::cout << s << std::endl;
    if (file_.is_open()) file_ << s << std::endl;
  }

 private:
  bool active_;
  std::ofstream file_;
};

std::string format_time(double seconds) {
  const long long s = std::llround(seconds);
  char buf[64];
  if (s < 60)
    std::snprintf(buf, sizeof buf, "%llds", s);
  else if (s < 3600)
    std::snprintf(buf, sizeof buf, "%lldm %02llds", s / 60, s % 60);
  else if (s < 86400)
    std::snprintf(buf, sizeof buf, "%lldh %02lldm %02llds", s / 3600, (s / 60) % 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%lldd %02lldh %02lldm", s / 86400, (s / 3600) % 24, (s / 60) % 60);
  return buf;
}

int run_id(const std::string& name) {
  static const std::regex re(R"(^(\d+)-.*)");
  std::smatch m;
  return std::regex_match(name, m, re) ? std::stoi(m[1]) : -1;
}

std::string create_run_dir(const std::string& outdir, const std::string& desc) {
  fs::create_directories(outdir);
  int next = 0;
  for (const auto& e : fs::directory_iterator(outdir))
    if (e.is_directory()) next = std::max(next, run_id(e.path().filename().string()) + 1);
  char name[32];
  std::snprintf(name, sizeof name, "%05d", next);
  fs::path dir = fs::path(outdir) / (std::string(name) + "-" + desc);
  if (!fs::create_directory(dir)) throw std::runtime_error(dir.string() + ": run directory already exists");
  return dir.string();
}

std::string find_latest_checkpoint(const TrainOptions& o) {
  std::vector<std::string> dirs;
  if (!o.run_dir.empty()) {
    dirs.push_back(o.run_dir);
  } else {
    if (o.outdir.empty() || !fs::is_directory(o.outdir))
      throw std::invalid_argument("--resume latest: no --outdir (or --run-dir) to search for checkpoints");
    std::vector<std::pair<int, std::string>> runs;
    for (const auto& e : fs::directory_iterator(o.outdir))
      if (e.is_directory() && run_id(e.path().filename().string()) >= 0)
        runs.emplace_back(run_id(e.path().filename().string()), e.path().string());
    std::sort(runs.rbegin(), runs.rend());
    for (auto& r : runs) dirs.push_back(r.second);
  }
  for (const auto& d : dirs) {
    auto snaps = list_snapshots(d);
    if (!snaps.empty()) return snaps.back();
  }
  throw std::invalid_argument("--resume latest: no network-snapshot-*.h5 under " +
                              (o.run_dir.empty() ? o.outdir : o.run_dir));
}

void set_threads(int threads) {
  const int n = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(n);
}

std::string kimg_name(const std::string& prefix, int64_t nimg, const std::string& ext) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s%06lld%s", prefix.c_str(), static_cast<long long>(nimg / 1000), ext.c_str());
  return buf;
}

// The reference's snapshot name (kimg rounded down) unless an earlier tick of this run already
// used it (ticks shorter than 1 kimg); then the image count is appended, so nothing is replaced.
std::string snapshot_path(const std::string& run_dir, const std::string& prefix, int64_t nimg, const std::string& ext) {
  fs::path p = fs::path(run_dir) / kimg_name(prefix, nimg, ext);
  if (!fs::exists(p)) return p.string();
  char buf[64];
  std::snprintf(buf, sizeof buf, "-%09lld", static_cast<long long>(nimg));
  return (fs::path(run_dir) / kimg_name(prefix, nimg, buf + ext)).string();
}

// G_ema's tensors as one flat float32 buffer (registration order) and their names: what the
// metrics rank receives and what in-process metrics evaluate.
void flatten_state(TrainingStep& step, std::vector<float>* flat, std::vector<std::string>* keys) {
  flat->clear();
  keys->clear();
  for (const auto& e : step.G_ema().state().entries()) {
    at::Tensor t = e.tensor.detach().to(at::kFloat).cpu().contiguous();
    flat->insert(flat->end(), t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
    keys->push_back(e.name);
  }
}

}  // namespace

const std::string& last_run_dir() { return g_last_run_dir; }

int run_training(const TrainRequest& req, sharding::Communicator& comm) {
  const auto start_time = std::chrono::steady_clock::now();
  auto seconds_since = [](std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  };
  const bool rank0 = comm.rank() == 0;
  RunLog log(rank0);
  TrainOptions o = req.options;
  std::string resume_path;
  CheckpointInfo resume_info;
  std::string run_dir;

  // --resume: "latest" or a training checkpoint continues that run; anything else (a named
  // network, a reference .pkl, a network-only checkpoint) starts a new run from its weights.
  std::string transfer_path;
  bool continue_run = req.resume == "latest";
  if (!req.resume.empty() && !continue_run && fs::path(req.resume).extension() == ".h5" && fs::exists(req.resume)) {
    CheckpointInfo probe = read_checkpoint_info(req.resume);
    continue_run = probe.has_training_state && probe.options.has_value();
  }
  if (!req.resume.empty() && !continue_run) {
    const std::string scratch = (fs::temp_directory_path() / ("styleforge-import-" + std::to_string(comm.rank()))).string();
    transfer_path = resolve_transfer_source(req.resume, default_cache_dir(), scratch);
    o.resume_source = req.resume;
  }
  if (continue_run) {
    resume_path = req.resume == "latest" ? find_latest_checkpoint(o) : req.resume;
    resume_info = read_checkpoint_info(resume_path);
    if (!resume_info.has_training_state || !resume_info.options)
      throw std::invalid_argument(resume_path + ": has no training state to continue (only networks)");
    TrainOptions saved = *resume_info.options;
    if (!o.data.empty() && o.data != saved.data)
      saved.data = o.data;  // the pack may have moved
    else if (!saved.data.empty())  // stored as typed at the start: found again from here or the run
      saved.data = data::resolve_stored_pack(saved.data, resume_path, saved.dataset_hash);
    if (o.kimg_override) saved.total_kimg = *o.kimg_override;
    saved.threads = o.threads > 0 ? o.threads : saved.threads;
    saved.device = o.device, saved.comm = o.comm, saved.shared_gpu = o.shared_gpu, saved.overlap = o.overlap;
    saved.bucket_mb = o.bucket_mb, saved.cpu_conv = o.cpu_conv;
    saved.cudnn_benchmark = o.cudnn_benchmark, saved.allow_tf32 = o.allow_tf32, saved.fp32 = o.fp32, saved.nhwc = o.nhwc;
    const double total_kimg = saved.total_kimg;
    o = saved;
    o.total_kimg = total_kimg;
    run_dir = fs::path(resume_path).parent_path().string();
    if (run_dir.empty()) run_dir = ".";
  }
  if (o.data.empty()) throw std::invalid_argument("--data is required");
  set_threads(o.threads);

  data::PackReader pack(o.data);
  const data::PackInfo& info = pack.info();
  if (!resume_path.empty()) {
    if (info.content_hash != o.dataset_hash)
      throw std::runtime_error(o.data + ": content hash " + info.content_hash + " differs from the run's dataset (" +
                               o.dataset_hash + ")");
    if (o.num_trainers != comm.size())
      throw std::runtime_error(resume_path + ": the run had " + std::to_string(o.num_trainers) +
                               " trainers, this job has " + std::to_string(comm.size()));
  } else {
    o.dataset_name = fs::path(o.data).stem().string();
    o.dataset_hash = info.content_hash;
    o.resolve(info.resolution, info.channels, info.label_dim, info.num_images, comm.size());
    // Transfer learning: G/D keep the source's architecture; resolution, channels, c_dim are the dataset's.
    if (!transfer_path.empty()) adopt_source_architecture(transfer_path, o);
  }

  // The device of this trainer: one GPU per trainer on its host (trainers' hosts from the topology).
  int local_rank = 0, local_size = 1;
  if (!req.hosts.empty()) {
    const std::string& me = req.hosts[static_cast<size_t>(std::min<int>(comm.rank(), static_cast<int>(req.hosts.size()) - 1))];
    local_size = 0;
    for (int r = 0; r < static_cast<int>(req.hosts.size()); ++r) {
      if (req.hosts[static_cast<size_t>(r)] != me) continue;
      if (r < comm.rank()) ++local_rank;
      ++local_size;
    }
  }
  const c10::Device device = resolve_device(o.device, local_rank, local_size, o.shared_gpu);
  if (o.nhwc && o.fp32) throw std::invalid_argument("--nhwc needs mixed precision (--fp32 false)");
  if (device.is_cuda()) apply_backend_flags(o.cudnn_benchmark, o.allow_tf32);
  ops::set_conv_cpu_path(ops::parse_conv_cpu_path(o.cpu_conv));
  {
    // Two trainers on one physical GPU (same host, same PCI address) only when asked for.
    const int W = comm.size(), me = comm.rank();
    std::vector<double> ids(static_cast<size_t>(2 * W), 0.0);
    ids[2 * me] = static_cast<double>(std::hash<std::string>{}(sharding::host_name()) % 1000000007ULL);
    ids[2 * me + 1] = device_physical_id(device);
    if (W > 1) comm.allreduce_sum(ids.data(), ids.size());
    for (int r = 0; r < W && device.is_cuda() && !o.shared_gpu; ++r)
      if (r != me && ids[2 * r] == ids[2 * me] && ids[2 * r + 1] == ids[2 * me + 1])
        throw std::invalid_argument("trainer ranks " + std::to_string(std::min(r, me)) + " and " +
                                    std::to_string(std::max(r, me)) + " share the GPU " + describe_device(device) +
                                    "; bind one GPU per trainer or pass --shared-gpu");
  }

  if (resume_path.empty()) {
    if (rank0) {
      log.line("Training options:");
      log.line(o.to_json().dump(2));
      log.line("");
      log.line("Output directory:   " + (o.run_dir.empty() ? o.outdir + "/NNNNN-" + o.desc : o.run_dir));
      log.line("Training data:      " + o.data + " (" + std::to_string(info.num_images) + " images, " +
               std::to_string(info.resolution) + "x" + std::to_string(info.resolution) + "x" +
               std::to_string(info.channels) + ")");
      log.line("Training duration:  " + num_text(o.total_kimg) + " kimg");
      log.line("Number of trainers: " + std::to_string(o.num_trainers));
      log.line("Device:             " + describe_device(device) + (device.is_cuda() ? (o.cudnn_benchmark ? ", cuDNN benchmark" : ", cuDNN benchmark off") + std::string(o.allow_tf32 ? ", TF32 allowed" : ", TF32 off") : std::string()) + (o.fp32 || !device.is_cuda() ? ", float32" : ", mixed precision") + (device.is_cuda() ? std::string() : ", 3x3 convolutions " + o.cpu_conv));
      log.line("Conditional model:  " + std::string(o.label_dim > 0 ? "true" : "false"));
    }
    if (req.dry_run) {
      log.line("Dry run; exiting.");
      return 0;
    }
    if (o.outdir.empty() && o.run_dir.empty()) throw std::invalid_argument("--outdir is required");
    if (rank0) {
      if (!o.run_dir.empty()) {
        fs::create_directories(o.run_dir);
        if (!list_snapshots(o.run_dir).empty() || fs::exists(fs::path(o.run_dir) / "stats.jsonl"))
          throw std::invalid_argument(o.run_dir + ": already holds a run (use --resume latest to continue it)");
        run_dir = o.run_dir;
      } else {
        run_dir = create_run_dir(o.outdir, o.desc);
      }
      std::ofstream(fs::path(run_dir) / "training_options.json") << o.to_json().dump(2) << "\n";
    }
  } else if (req.dry_run) {
    log.line("Resuming " + resume_path + " to " + num_text(o.total_kimg) + " kimg; dry run, exiting.");
    return 0;
  }
  {
    // Every rank learns the run directory rank 0 chose.
    std::vector<double> len(1, rank0 ? static_cast<double>(run_dir.size()) : 0.0);
    comm.allreduce_sum(len.data(), 1);
    std::string buf(static_cast<size_t>(len[0]), '\0');
    if (rank0) buf = run_dir;
    if (!buf.empty()) comm.broadcast(buf.data(), buf.size(), 0);
    run_dir = buf;
  }
  g_last_run_dir = run_dir;
  log.open((fs::path(run_dir) / "log.txt").string());
  if (!resume_path.empty()) log.line("Resuming from \"" + resume_path + "\"");
  if (!req.topology.empty()) log.line("Topology: " + req.topology);

  // Labels of every image (the table conditioning labels of generated images are drawn from).
  std::vector<float> labels;
  if (o.label_dim > 0) {
    labels.resize(static_cast<size_t>(o.dataset_size) * o.label_dim);
    for (int64_t i = 0; i < o.dataset_size; ++i) pack.label_as_float(i, labels.data() + i * o.label_dim);
  }

  // Gradient communicator: NCCL for GPU tensors (host-side collectives stay on `comm`, MPI); with
  // --comm mpi or parameter servers, GPU gradients are staged through host memory.
  if (!(o.bucket_mb > 0)) throw std::invalid_argument("--bucket-mb must be positive");
  if (o.comm != "auto" && o.comm != "nccl" && o.comm != "mpi")
    throw std::invalid_argument("--comm must be auto, nccl or mpi, got '" + o.comm + "'");
  std::unique_ptr<sharding::Communicator> device_comm;
  // NCCL allows one rank per GPU: trainers sharing a GPU (--shared-gpu) use MPI unless told otherwise.
  if (comm.size() > 1 && device.is_cuda() && (o.comm == "nccl" || (o.comm == "auto" && !o.shared_gpu))) {
#ifdef STYLEFORGE_WITH_NCCL
    auto* mpi = dynamic_cast<sharding::MpiCommunicator*>(&comm);
    if (!mpi && o.comm == "nccl")
      throw std::invalid_argument("--comm nccl: parameter servers (--param-servers) sum host memory; leave --comm auto");
    if (mpi) device_comm = std::make_unique<sharding::NcclCommunicator>(*mpi, device.index(), mpi->timeout_s());
#else
    if (o.comm == "nccl") throw std::invalid_argument("--comm nccl: this build has no NCCL (STYLEFORGE_WITH_NCCL)");
#endif
  } else if (o.comm == "nccl" && comm.size() > 1) {
    throw std::invalid_argument("--comm nccl needs GPU tensors (--device cuda); on the CPU gradients go through MPI");
  }

  log.line("Constructing networks on " + describe_device(device) + "...");
  TrainingStep step(o, comm, labels, device, device_comm.get());
  if (!o.fp32) {
    const PrecisionPlan plan = make_precision_plan(o.G, o.D, device.is_cuda() ? DeviceKind::Cuda : DeviceKind::Cpu,
                                                   true, o.nhwc);
    log.line(device.is_cuda() ? "Mixed precision: float16 from " + std::to_string(plan.g_fp16_resolution) + "x" +
                                    std::to_string(plan.g_fp16_resolution) + " (G) and " +
                                    std::to_string(plan.d_fp16_resolution) + "x" +
                                    std::to_string(plan.d_fp16_resolution) + " (D) up" +
                                    (o.nhwc ? ", channels_last" : "")
                              : "Mixed precision: the CPU computes in float32 (float16 blocks are GPU only)");
  }
  step.set_bucket_bytes(static_cast<int64_t>(o.bucket_mb * (1 << 20)));
  step.set_overlap(o.overlap == "on" || (o.overlap == "auto" && device.is_cuda()));
  if (comm.size() > 1) log.line("Gradient sync: " + step.reducer_description());
  if (!resume_path.empty()) {
    load_networks(resume_path, &step.G(), &step.D(), &step.G_ema());
    std::map<std::string, at::Tensor> rng_states;
    load_training_state(resume_path, &step.G_opt(), &step.D_opt(), &rng_states);
    step.restore(resume_info.counters);
    step.verify_devices();  // the loaded optimizer states too
    if (!step.restore_rng_states(rng_states))
      log.line("Note: the checkpoint's noise and augmentation streams were drawn on another device kind; they were "
               "re-seeded for " + device.str() + " (training continues, not bit for bit as on the original device)");
  }
  if (!transfer_path.empty()) log.line("Transfer from \"" + req.resume + "\": " +
                                       transfer_networks(transfer_path, step.G(), step.D(), step.G_ema()));
  step.broadcast_parameters();
  TrainCounters& k = step.counters();

  // Snapshot grid (rank 0).
  SnapshotGrid grid;
  if (rank0) {
    log.line("Exporting sample images...");
    grid = make_snapshot_grid(pack, o, labels);
    if (resume_path.empty()) {
      save_reals_grid(pack, grid, (fs::path(run_dir) / "reals.png").string());
      save_fakes_grid(step.G_ema(), grid, o.batch_gpu, (fs::path(run_dir) / "fakes_init.png").string());
    }
  }

  // In-process metrics (no metrics rank): rank 0 builds the evaluator now, so that a missing
  // detector is reported before training; every trainer learns whether snapshots are evaluated.
  bool local_metrics = false;
  if (req.local_metrics) {
    double on = 0;
    if (rank0) {
      const nlohmann::json run = {{"data", o.data}, {"seed", o.seed}, {"mirror", o.mirror},
                                  {"num_trainers", o.num_trainers}, {"device", device.str()}};
      on = req.local_metrics->start(run, [&log](const std::string& line) { log.line(line); }) ? 1 : 0;
    }
    if (comm.size() > 1) comm.allreduce_sum(&on, 1);
    local_metrics = on > 0;
  }

  // Data: this rank's shard of the infinite sampler, skipping what the run already consumed.
  const int64_t bpr = o.batch_per_trainer();
  sharding::InfiniteSampler::Options so;
  so.seed = static_cast<uint32_t>(o.seed);
  so.xflip = o.mirror;
  auto sampler = std::make_shared<sharding::InfiniteSampler>(o.dataset_size, comm.rank(), comm.size(), so);
  for (int64_t i = 0; i < k.batch_idx * bpr; ++i) sampler->next();
  data::BatchLoader loader(o.data, [sampler] { return sampler->next(); }, {static_cast<int>(bpr), 2});

  std::ofstream stats_jsonl;
  if (rank0) stats_jsonl.open(fs::path(run_dir) / "stats.jsonl", std::ios::app);
  // TensorBoard: as the reference's SummaryWriter, one new event file per start or resume (the
  // files of a run directory form one run in TensorBoard), step int(cur_nimg / 1000) and wall time
  // in seconds since this process started training; the fakes grids as images besides.
  std::unique_ptr<data::TbEventWriter> tb;
  const auto tb_step = [&] { return k.cur_nimg / 1000; };
  if (rank0 && req.tensorboard) {
    tb = std::make_unique<data::TbEventWriter>(run_dir);
    // Every segment starts with SessionLog START (TensorBoard's server takes the first one of a run
    // as its beginning and each later one as a restart). A resume's START drops the points an
    // interrupted segment wrote after its checkpoint: steps from the checkpoint's kimg + 1 on (all
    // of them when ticks are at least 1 kimg apart).
    tb->add_session_start(resume_path.empty() ? 0 : tb_step() + 1, seconds_since(start_time), resume_path);
  }
  log.line("Training for " + num_text(o.total_kimg) + " kimg...");
  log.line("");

  auto tick_start_time = std::chrono::steady_clock::now();
  double sync_at_tick_start = 0;
  double maintenance_sec = seconds_since(start_time);
  const int64_t total_nimg = static_cast<int64_t>(std::llround(o.total_kimg * 1000));
  bool stopped = false;
  while (true) {
    data::Batch b = loader.next();
    at::Tensor imgs = at::from_blob(b.images.data(), {b.size, o.channels, o.resolution, o.resolution}, at::kByte);
    at::Tensor cs;
    if (o.label_dim > 0) cs = at::from_blob(b.labels.data(), {b.size, o.label_dim}, at::kFloat);
    if (device.is_cuda()) {
      // Staged in pinned memory so the step copies it without blocking; LibTorch's pinned
      // allocator keeps each buffer until its copy has completed.
      imgs = imgs.pin_memory();
      if (cs.defined()) cs = cs.pin_memory();
    }
    step.iteration(imgs, cs);

    // Stop requests (signals, the metrics rank) are agreed on every kStopCheckInterval iterations
    // and at ticks, not at every iteration: a host round trip less in the hot path.
    bool stop_now = req.stop && req.stop->load() != 0;
    if (req.metrics && req.metrics->stop_requested()) stop_now = true;
    const bool at_tick = k.cur_nimg >= total_nimg || k.cur_tick == 0 ||
                         static_cast<double>(k.cur_nimg) >= k.tick_start_nimg + o.kimg_per_tick * 1000;
    if (comm.size() > 1) {
      if (at_tick || k.batch_idx % kStopCheckInterval == 0) {
        double flag = stop_now ? 1 : 0;
        comm.allreduce_sum(&flag, 1);
        stop_now = flag > 0;
      } else {
        stop_now = false;  // acted on at the next agreement, on every rank at once
      }
    }
    bool done = k.cur_nimg >= total_nimg || stop_now;
    if (!done && !at_tick) continue;

    // ---- tick ----
    const auto tick_end_time = std::chrono::steady_clock::now();
    const double total_sec = seconds_since(start_time);
    const double tick_sec = std::chrono::duration<double>(tick_end_time - tick_start_time).count();
    const double sec_per_kimg = tick_sec / std::max<int64_t>(1, k.cur_nimg - k.tick_start_nimg) * 1e3;
    const double rss = metrics::process_rss_gb();
    StatsCollector& st = step.stats();
    st.report0("Progress/tick", static_cast<double>(k.cur_tick));
    st.report0("Progress/kimg", k.cur_nimg / 1e3);
    st.report0("Timing/total_sec", total_sec);
    st.report0("Timing/sec_per_tick", tick_sec);
    st.report0("Timing/sec_per_kimg", sec_per_kimg);
    st.report0("Timing/maintenance_sec", maintenance_sec);
    st.report0("Resources/cpu_mem_gb", rss);
    st.report0("Progress/augment", step.augment_p());
    st.report0("Timing/total_hours", total_sec / 3600);
    st.report0("Timing/total_days", total_sec / 86400);
    for (const auto& ph : step.phases()) st.report0("Timing/" + ph.name, ph.ms_last);

    // In-process metrics of this snapshot (not of the checkpoint a stop request writes: a job
    // about to be preempted has no time for them). Rank 0 evaluates; the other trainers wait in
    // small sums that rank 0 joins every few seconds, so no collective outlasts --timeout; a sum
    // of 1 releases them. The results are written after the checkpoint, which they name.
    const bool snapshot = done || k.cur_tick % o.snap == 0;
    std::vector<nlohmann::json> metric_results;
    double metrics_sec = -1;
    if (local_metrics && snapshot && !stop_now) {
      const auto t0 = std::chrono::steady_clock::now();
      if (rank0) {
        // Often enough that a waiting rank hears from rank 0 well within --timeout.
        const double alive_every_s = std::min(5.0, std::max(0.05, req.metrics_timeout_s / 4));
        auto last_alive = t0;
        auto alive = [&] {
          if (comm.size() < 2 || seconds_since(last_alive) < alive_every_s) return;
          double v = 0;
          comm.allreduce_sum(&v, 1);
          last_alive = std::chrono::steady_clock::now();
        };
        try {
          std::vector<float> flat;
          std::vector<std::string> keys;
          flatten_state(step, &flat, &keys);
          metric_results = req.local_metrics->evaluate(o.G.to_json(), keys, flat, alive);
        } catch (const std::exception& e) {
          log.line(std::string("metrics: evaluation failed (training continues): ") + e.what());
        }
        if (comm.size() > 1) {
          double v = 1;
          comm.allreduce_sum(&v, 1);
        }
      } else {
        for (double v = 0; v == 0;) {
          v = 0;
          comm.allreduce_sum(&v, 1);
        }
      }
      metrics_sec = seconds_since(t0);
    }
    {
      const double eta = std::max(0.0, (total_nimg - k.cur_nimg) / 1e3 * sec_per_kimg);
      char line[512];
      std::snprintf(line, sizeof line,
                    "tick %-5lld kimg %-8.1f time %-12s sec/tick %-7.1f sec/kimg %-7.2f maintenance %-6.1f "
                    "cpumem %-6.2f augment %.3f eta %s",
                    static_cast<long long>(k.cur_tick), k.cur_nimg / 1e3, format_time(total_sec).c_str(), tick_sec,
                    sec_per_kimg, maintenance_sec, rss, step.augment_p(), format_time(eta).c_str());
      char metrics_part[64] = "";
      if (metrics_sec >= 0) std::snprintf(metrics_part, sizeof metrics_part, " metrics %.1fs", metrics_sec);
      log.line(line + std::string(metrics_part));
    }
    // Per-rank throughput (time outside gradient sync), memory, progress and clock, gathered
    // through a sum (one slot per rank): the tick log line and the heartbeats of status.json.
    const int W = comm.size(), me = comm.rank();
    std::vector<double> g(static_cast<size_t>(4 * W), 0.0);
    {
      const double busy = std::max(tick_sec - (step.sync_seconds() - sync_at_tick_start), 1e-9);
      g[4 * me] = (k.cur_nimg - k.tick_start_nimg) / static_cast<double>(W) / busy;
      g[4 * me + 1] = rss;
      g[4 * me + 2] = static_cast<double>(k.batch_idx);
      g[4 * me + 3] = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
      sync_at_tick_start = step.sync_seconds();
    }
    comm.allreduce_sum(g.data(), g.size());
    auto host_of = [&](int r) { return r < static_cast<int>(req.hosts.size()) ? req.hosts[r] : sharding::host_name(); };
    if (W > 1) {
      std::string line = "  per rank:";
      for (int r = 0; r < W; ++r) {
        char buf[200];
        std::snprintf(buf, sizeof buf, " [%d %s %.2f img/s %.2f GB]", r, host_of(r).c_str(), g[4 * r], g[4 * r + 1]);
        line += buf;
      }
      log.line(line);
    }
    if (stop_now) log.line("Stop requested: writing a checkpoint and exiting for requeue.");

    if (snapshot && rank0) {
      const std::string fakes = snapshot_path(run_dir, "fakes", k.cur_nimg, ".png");
      save_fakes_grid(step.G_ema(), grid, o.batch_gpu, fakes);
      if (tb) tb->add_png_file("Images/fakes", fakes, tb_step(), seconds_since(start_time));
    }
    if (snapshot) {
      step.check_consistency();
      std::map<std::string, at::Tensor> rng_states = step.gather_rng_states();
      TrainCounters c = step.counters_for_checkpoint();
      c.cur_tick = k.cur_tick + 1;
      c.tick_start_nimg = k.cur_nimg;
      if (rank0) {
        CheckpointWrite w;
        w.options = &o;
        w.G = &step.G();
        w.D = &step.D();
        w.G_ema = &step.G_ema();
        w.G_opt = &step.G_opt();
        w.D_opt = &step.D_opt();
        w.counters = c;
        w.rngs = rng_states;
        const std::string path = snapshot_path(run_dir, "network-snapshot-", k.cur_nimg, ".h5");
        write_checkpoint(path, w);
        prune_snapshots(run_dir, o.keep_snapshots);
        log.line("Saved " + path);
        std::vector<std::pair<std::string, double>> metric_scalars;  // `Metrics/<name>`, as the metrics rank writes
        for (const auto& r : metric_results) {
          try {
            log.line("metrics: " + req.local_metrics->report(r, run_dir, path));
            for (auto& sc : data::tb_metric_scalars(r)) metric_scalars.push_back(std::move(sc));
          } catch (const std::exception& e) {
            log.line(std::string("metrics: ") + e.what());
          }
        }
        if (tb && !metric_scalars.empty()) tb->add_scalars(metric_scalars, tb_step(), seconds_since(start_time));
        if (req.metrics) {
          // Hand G_ema to the metrics rank: one flat buffer, sent without waiting.
          std::vector<float> flat;
          std::vector<std::string> keys;
          flatten_state(step, &flat, &keys);
          nlohmann::json h = {{"kimg", k.cur_nimg / 1e3}, {"cur_nimg", k.cur_nimg}, {"checkpoint", path},
                              {"run_dir", run_dir}, {"data", o.data}, {"G", o.G.to_json()}, {"keys", keys},
                              {"num_trainers", o.num_trainers}, {"mirror", o.mirror}, {"seed", o.seed},
                              {"tensorboard", req.tensorboard}, {"tb_step", tb_step()},
                              {"tb_wall_time", seconds_since(start_time)}};
          req.metrics->send_snapshot(h.dump(), std::move(flat));
          log.line("Handed snapshot " + kimg_name("", k.cur_nimg, "") + " to the metrics rank");
        }
      }
      comm.barrier();
    }

    nlohmann::json stats = st.finish(comm);
    if (rank0) {
      stats["timestamp"] = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
      stats_jsonl << stats.dump() << "\n";
      stats_jsonl.flush();
      if (tb) {  // the reference's add_scalar(name, mean) for every statistic of the tick
        std::vector<std::pair<std::string, double>> scalars;
        for (const auto& [name, v] : stats.items())
          if (v.is_object() && v.contains("mean")) scalars.emplace_back(name, v["mean"].get<double>());
        tb->add_scalars(scalars, tb_step(), seconds_since(start_time));
        tb->flush();
      }
      // status.json and Prometheus files for `styleforge status` and admins (metrics/monitor.h).
      metrics::RunStatus rs = metrics::status_from_stats(stats);
      rs.total_kimg = o.total_kimg;
      rs.ranks.clear();
      for (int r = 0; r < W; ++r) {
        metrics::RankHeartbeat h;
        h.rank = r;
        h.host = host_of(r);
        h.step = static_cast<int64_t>(g[4 * r + 2]);
        h.unix_time = g[4 * r + 3];
        h.cpu_mem_gb = g[4 * r + 1];
        h.sec_per_kimg = g[4 * r] > 0 ? 1000.0 / (g[4 * r] * W) : 0;  // at this rank's pace for the whole batch
        rs.ranks.push_back(h);
      }
      metrics::publish_run_status(run_dir, rs);
    }

    k.cur_tick += 1;
    k.tick_start_nimg = k.cur_nimg;
    tick_start_time = std::chrono::steady_clock::now();
    maintenance_sec = std::chrono::duration<double>(tick_start_time - tick_end_time).count();
    if (done) {
      stopped = stop_now;
      break;
    }
  }
  const int exit_code = stopped ? 3 : 0;
  if (req.metrics) {
    if (req.wait_metrics) log.line("Waiting for the metrics rank to finish its last evaluation...");
    req.metrics->finish(exit_code, req.wait_metrics, req.metrics_timeout_s);
  }
  log.line("");
  log.line(stopped ? "Exiting for requeue." : "Exiting...");
  if (rank0) metrics::set_run_state(run_dir, stopped ? "requeue" : "done");
  return exit_code;
}

}  // namespace sf::trainer
