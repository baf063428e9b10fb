// `styleforge train`, `styleforge bench`: CLI wrappers of
// trainer/training_loop.h. Flags follow the reference's train.py names.
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <memory>

#include <unistd.h>

#include <cctype>
#include <cstdio>
#include <sstream>

#include <filesystem>

#include "data/import.h"
#include "data/pack_path.h"
#include "launcher/cli.h"
#include "launcher/progress.h"
#include "launcher/early_signals.h"
#include "metrics/inprocess_metrics.h"
#include "metrics/metrics_rank.h"
#include "metrics/registry.h"
#include "trainer/train_options_validate.h"
#include "metrics/monitor.h"
#include "sharding/communicator.h"
#include "sharding/metrics_link.h"
#include "sharding/mpi_comm.h"
#include "sharding/param_server.h"
#include "sharding/topology.h"
#include "trainer/build_info.h"
#include "trainer/training_loop.h"

namespace po = boost::program_options;

namespace sf::cli {
namespace {

std::atomic<int> g_stop{0};

extern "C" void on_stop_signal(int sig) { g_stop.store(sig); }

template <class T>
void set_opt(const po::variables_map& vm, const char* name, std::optional<T>& out) {
  if (vm.count(name)) out = vm[name].as<T>();
}

// --cpu-conv of train and bench (trainer/ops.h parse_conv_cpu_path takes the same names).
bool cpu_conv_valid(const char* command, const std::string& v) {
  if (v == "auto" || v == "aten" || v == "winograd") return true;
  std::cerr << "styleforge " << command << ": --cpu-conv must be auto, aten or winograd, got '" << v << "'\n";
  return false;
}

}  // namespace

int cmd_train(const std::vector<std::string>& args) {
  trainer::TrainRequest req;
  trainer::TrainOptions& o = req.options;
  std::string metrics_list, metrics_rank_mode, grid_text, tensorboard;
  double timeout_s = 600;
  int ranks = 0, param_servers = 0;
  bool nobench = false, pack_if_needed = false;
  metrics::MetricsRankOptions mopts;
  po::options_description desc("options");
  desc.add_options()
      ("data", po::value(&o.data), "training data: a styleforge pack (.h5, see `styleforge pack`); with --pack-if-needed also an image folder or a reference dataset zip")
      ("pack-if-needed", po::bool_switch(&pack_if_needed), "--data is a folder or zip: pack it first to <outdir>/<name>.h5, beside the runs (reused while it is newer than every source file; under mpirun/srun it must exist already)")
      ("outdir", po::value(&o.outdir), "where run directories NNNNN-<desc>/ are created")
      ("run-dir", po::value(&o.run_dir), "use exactly this run directory instead of a numbered one")
      ("cfg", po::value(&o.cfg)->default_value("auto"), trainer::train_presets_help())
      ("gamma", po::value<double>(), "R1 regularisation weight (default: the preset's)")
      ("kimg", po::value<double>(), "training length in thousands of real images (default: the preset's)")
      ("batch", po::value<int>(), "total batch size over all trainers (default: the preset's)")
      ("batch-gpu", po::value(&o.batch_gpu_override)->default_value(0), "samples per round on one trainer (0: the whole per-trainer batch)")
      ("aug", po::value(&o.aug)->default_value("ada"), "ada | noaug | fixed")
      ("p", po::value<double>(), "augmentation probability for --aug=fixed")
      ("target", po::value<double>(), "ADA target value (default 0.6)")
      ("ada-kimg", po::value<double>(), "ADA speed: kimg for p to move by 1 (default 500; 100 when transferring)")
      ("augpipe", po::value(&o.augpipe)->default_value("bgc"), "blit, geom, color, filter, noise, cutout, bg, bgc, bgcf, bgcfn, bgcfnc")
      ("mirror", po::value(&o.mirror)->default_value(false)->implicit_value(true), "add x-flips of the dataset")
      ("topk", po::bool_switch(&o.topk), "top-k generator training: G's loss keeps the k fakes of the global batch D scores highest")
      ("topk-gamma", po::value(&o.topk_gamma)->default_value(0.99, "0.99"), "--topk: k = max(gamma^epoch * batch, min * batch)")
      ("topk-min", po::value(&o.topk_min)->default_value(0.5, "0.5"), "--topk: the floor of k as a fraction of the batch")
      ("cond", po::value(&o.cond)->default_value(false)->implicit_value(true), "train a conditional model on the pack's labels")
      ("freezed", po::value(&o.freezed)->default_value(0), "freeze the first N layers of D (Freeze-D)")
      ("seed", po::value(&o.seed)->default_value(0), "random seed")
      ("snap", po::value(&o.snap)->default_value(50), "snapshot (checkpoint and fakes) interval in ticks")
      ("tick", po::value(&o.kimg_per_tick)->default_value(4.0), "progress interval in kimg")
      ("keep", po::value(&o.keep_snapshots)->default_value(0), "keep only the newest N checkpoints (0: all)")
      ("cbase", po::value<int>(), "channel base of G and D (default: the preset's)")
      ("cmax", po::value<int>(), "channel maximum of G and D (default 512)")
      ("map", po::value<int>(), "mapping network depth (default: the preset's)")
      ("mbstd-group", po::value<int>(), "minibatch-std group size (default: the preset's)")
      ("threads", po::value(&o.threads)->default_value(0), "LibTorch threads (0: all cores)")
      ("grid", po::value(&grid_text), "snapshot grid COLSxROWS (default: the reference's size for the resolution)")
      ("snapshot-rgb", po::value(&o.snapshot_rgb), "channels shown as R,G,B in snapshot grids, e.g. 0,1,3 (or one index: gray; default: gray panels per channel unless the data is gray or RGB)")
      ("resume", po::value(&req.resume), "continue a run (a training checkpoint, or latest in --outdir/--run-dir), or start from a network: ffhq256, ffhq512, ffhq1024, afhqcat, afhqdog, afhqwild, brecahad, metfaces, celebahq256, lsundog256, a reference .pkl or a network-only .h5")
      ("dry-run", po::bool_switch(&req.dry_run), "print the resolved options and exit")
      ("metrics", po::value(&metrics_list)->default_value("fid50k_full"), "metrics computed at snapshots, comma-separated, or none: by the metrics rank when there is one, else by trainer rank 0 (training pauses meanwhile, as in the reference)")
      ("metrics-rank", po::value(&metrics_rank_mode)->default_value("auto"), "auto (a metrics rank, the last rank, when --metrics is given and the job has >= 2 ranks; --gpus N then starts N + 1 processes) | on (also for the default --metrics) | none (trainer rank 0 computes them)")
      ("wait-metrics", po::bool_switch(&req.wait_metrics), "at the end, wait for the metrics rank's last evaluation")
      ("tensorboard", po::value(&tensorboard)->default_value("on"), "TensorBoard event files in the run directory (tensorboard --logdir): on | off")
      ("detector", po::value(&mopts.detector), "feature detector for metrics (TorchScript .pt)")
      ("metrics-num-gen", po::value(&mopts.num_gen)->default_value(0), "generated images per metric (0: the metric's own count)")
      ("metrics-threads", po::value(&mopts.threads)->default_value(1), "LibTorch threads of the metrics rank")
      ("metrics-nice", po::value(&mopts.nice)->default_value(19), "scheduling niceness of the metrics rank (0: same as trainers)")
      ("timeout", po::value(&timeout_s)->default_value(600.0), "seconds a collective may block before the job is aborted")
      ("prometheus", po::value<std::string>(), "also serve the run's Prometheus metrics over HTTP at ADDR:PORT (a bare PORT binds 127.0.0.1) from rank 0")
      ("gpus", po::value(&ranks)->default_value(0), "start this many trainer processes on this host, plus one for a metrics rank when asked for (re-runs itself under mpirun)")
      ("param-servers", po::value(&param_servers)->default_value(0), "ranks after the trainers that only sum gradients (sum-only parameter servers; 0: trainers allreduce among themselves)")
      ("device", po::value(&o.device)->default_value("auto"), "auto (a GPU when one is visible: trainer i of a host on its GPU i) | cpu | cuda | cuda:N")
      ("comm", po::value(&o.comm)->default_value("auto"), "gradient communicator: auto (NCCL for GPU tensors, MPI on CPUs) | nccl | mpi")
      ("shared-gpu", po::bool_switch(&o.shared_gpu), "allow several trainers on one GPU (otherwise an error)")
      ("overlap", po::value(&o.overlap)->default_value("auto"), "reduce gradients while backward runs: auto (on for GPU tensors, off on CPUs) | on | off")
      ("bucket-mb", po::value(&o.bucket_mb)->default_value(25.0), "gradient bucket size in MiB (the first is at most 1 MiB)")
      ("cpu-conv", po::value(&o.cpu_conv)->default_value("auto"), "CPU 3x3 convolutions: auto (Winograd F(2x2,3x3) where it measured faster) | aten (oneDNN's direct kernels, the reference's) | winograd")
      ("nobench", po::bool_switch(&nobench), "turn cuDNN benchmark mode off (the reference's --nobench)")
      ("allow-tf32", po::bool_switch(&o.allow_tf32), "allow TF32 in matmuls and convolutions (the reference's --allow-tf32)")
      ("fp32", po::value(&o.fp32)->default_value(true)->implicit_value(true), "float32 everywhere (the reference's --fp32); false: float16 for the top num_fp16_res resolutions on GPUs (the CPU computes in float32)")
      ("nhwc", po::value(&o.nhwc)->default_value(false)->implicit_value(true), "channels_last for the float16 blocks (the reference's --nhwc; needs --fp32 false)");
  po::variables_map vm;
  if (int rc = parse_options("train", "--data PACK.h5 --outdir DIR [options]", args, desc, vm); rc >= 0) return rc;
  if (tensorboard != "on" && tensorboard != "off") {
    std::cerr << "styleforge train: --tensorboard must be on or off, got '" << tensorboard << "'\n";
    return kUsage;
  }
  req.tensorboard = tensorboard == "on";
  if (o.overlap != "auto" && o.overlap != "on" && o.overlap != "off") {
    std::cerr << "styleforge train: --overlap must be auto, on or off\n";
    return kUsage;
  }
  if (!cpu_conv_valid("train", o.cpu_conv)) return kUsage;
  o.cudnn_benchmark = !nobench;
  if (o.nhwc && o.fp32) {
    std::cerr << "styleforge train: --nhwc needs mixed precision (--fp32 false)\n";
    return kUsage;
  }
  set_opt(vm, "gamma", o.gamma_override);
  set_opt(vm, "kimg", o.kimg_override);
  set_opt(vm, "batch", o.batch_override);
  set_opt(vm, "p", o.p_override);
  set_opt(vm, "target", o.target_override);
  set_opt(vm, "ada-kimg", o.ada_kimg_override);
  if (!grid_text.empty()) {
    const size_t x = grid_text.find('x');
    try {
      if (x == std::string::npos) throw std::invalid_argument(grid_text);
      o.grid_cols = std::stoi(grid_text.substr(0, x));
      o.grid_rows = std::stoi(grid_text.substr(x + 1));
    } catch (const std::exception&) {
      std::cerr << "styleforge train: --grid must look like 16x8\n";
      return kUsage;
    }
  }
  set_opt(vm, "cbase", o.cbase_override);
  set_opt(vm, "cmax", o.cmax_override);
  set_opt(vm, "map", o.map_override);
  set_opt(vm, "mbstd-group", o.mbstd_override);
  if (vm.count("prometheus")) {  // rank 0 starts it at its first status (metrics/monitor.h)
    if (!metrics::metrics_http_available()) {
      std::cerr << "styleforge train: --prometheus: this build has no prometheus-cpp (the .prom files still work)\n";
      return kUsage;
    }
    metrics::set_metrics_http_bind(vm["prometheus"].as<std::string>());
  }
  std::vector<std::string> run_args = args;  // what a --gpus re-run gets (--data may become the pack)
  if (!o.data.empty()) {
    if (std::string err = data::not_a_pack_error(o.data); !err.empty()) {
      if (!pack_if_needed) {
        std::cerr << "styleforge train: " << err << "\n";
        return kUsage;
      }
      namespace fs = std::filesystem;
      std::string dir = !o.outdir.empty() ? o.outdir : !o.run_dir.empty() ? fs::path(o.run_dir).parent_path().string() : "";
      if (dir.empty()) dir = ".";
      const std::string pack = data::pack_if_needed_path(o.data, dir);
      if (data::pack_is_current(o.data, pack)) {
        std::cout << "--pack-if-needed: " << pack << " is up to date with " << o.data << "\n";
      } else if (sharding::launched_by_mpi()) {
        std::cerr << "styleforge train: --pack-if-needed: " << pack << " is missing or older than " << o.data
                  << ", and ranks started by mpirun/srun do not pack: run `styleforge pack --source " << o.data
                  << " --dest " << pack << "` first (or start with --gpus N, which packs before the ranks start)\n";
        return kUsage;
      } else if (!req.dry_run) {
        std::cout << "--pack-if-needed: packing " << o.data << " to " << pack << "\n";
        fs::create_directories(dir);
        data::ImportOptions io;
        io.source = o.data;
        io.dest = pack;
        io.force = true;
        std::unique_ptr<Progress> bar;
        io.progress = pack_progress(bar);
        try {
          data::ImportSummary packed = data::pack_dataset(io);
          if (bar) bar->finish();
          std::cout << packed.line() << "\n";
        } catch (const std::exception& e) {
          std::cerr << "styleforge train: --pack-if-needed: " << e.what() << " (pack it with `styleforge pack`, which takes --resolution, --channels, ...)\n";
          return kFailure;
        }
      } else {
        std::cout << "--pack-if-needed: would pack " << o.data << " to " << pack << " (dry run)\n";
        return kOk;
      }
      for (size_t i = 0; i < run_args.size(); ++i) {
        if (run_args[i] == "--data" && i + 1 < run_args.size()) run_args[i + 1] = pack;
        else if (run_args[i].rfind("--data=", 0) == 0) run_args[i] = "--data=" + pack;
      }
      o.data = pack;
    }
  }
  if (o.data.empty() && req.resume.empty()) {
    std::cerr << "styleforge train: --data is required (see styleforge train --help)\n";
    return kUsage;
  }
  if (o.outdir.empty() && o.run_dir.empty() && (req.resume.empty() || req.resume == "latest") && !req.dry_run) {
    std::cerr << "styleforge train: --outdir (or --run-dir) is required (see styleforge train --help)\n";
    return kUsage;
  }
  if (metrics_rank_mode != "auto" && metrics_rank_mode != "on" && metrics_rank_mode != "none") {
    std::cerr << "styleforge train: --metrics-rank must be auto, on or none\n";
    return kUsage;
  }
  {
    std::stringstream ss(metrics_list);
    std::string m;
    while (std::getline(ss, m, ','))
      if (!m.empty() && m != "none") mopts.metrics.push_back(m);
  }
  // A metrics rank only when asked for: --metrics-rank on, or --metrics named on the command line
  // (auto). Otherwise the metrics (by default fid50k_full) are computed in the training process.
  const bool want_metrics_rank =
      !mopts.metrics.empty() && (metrics_rank_mode == "on" || (metrics_rank_mode == "auto" && !vm["metrics"].defaulted()));
  if (metrics_rank_mode == "on" && mopts.metrics.empty()) {
    std::cerr << "styleforge train: --metrics-rank on: there are no metrics to compute (--metrics none)\n";
    return kUsage;
  }
  if (metrics_rank_mode == "on" && ranks == 0 && !sharding::launched_by_mpi()) {
    std::cerr << "styleforge train: --metrics-rank on needs a second process: add --gpus N (N trainers + the metrics "
                 "rank) or start the job with mpirun/srun\n";
    return kUsage;
  }
  if (param_servers < 0) {
    std::cerr << "styleforge train: --param-servers must be >= 0\n";
    return kUsage;
  }
  if (int rc = trainer::check_train_options(o, {req.resume, timeout_s, ranks, param_servers, !grid_text.empty(), mopts.metrics, want_metrics_rank, [](const std::string& m) { metrics::parse_metric(m); }}); rc) return rc;

  if (ranks > 0 && !sharding::launched_by_mpi()) {
    // Convenience: re-run this command under mpirun with one process per trainer (+ metrics).
    const int np = ranks + param_servers + (want_metrics_rank ? 1 : 0);
    std::vector<std::string> argv_s = {"mpirun", "--oversubscribe", "-np", std::to_string(np), "/proc/self/exe", "train"};
    for (size_t i = 0; i < run_args.size(); ++i) {
      if (run_args[i] == "--gpus") {
        ++i;
        continue;
      }
      if (run_args[i].rfind("--gpus=", 0) == 0) continue;
      argv_s.push_back(run_args[i]);
    }
    char self[4096] = {0};
    if (::readlink("/proc/self/exe", self, sizeof self - 1) > 0) argv_s[4] = self;
    std::vector<char*> argv_c;
    for (auto& a : argv_s) argv_c.push_back(a.data());
    argv_c.push_back(nullptr);
    std::fflush(stdout);
    ::execvp("mpirun", argv_c.data());
    std::cerr << "styleforge train: --gpus: cannot run mpirun (is openmpi-bin installed?)\n";
    return kFailure;
  }

  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGUSR1, on_stop_signal);
  std::signal(SIGINT, on_stop_signal);
  if (int s = take_early_signal()) g_stop.store(s);  // arrived before these handlers (launcher/early_signals.h)
  req.stop = &g_stop;
  sharding::MpiSession mpi(sharding::launched_by_mpi());
  // Without a metrics rank the training process evaluates the metrics at its snapshots.
  metrics::InProcessMetrics local_metrics(mopts);
  if (!mpi.active()) {
    sharding::LocalCommunicator comm;
    if (!mopts.metrics.empty() && !req.dry_run) req.local_metrics = &local_metrics;
    try {
      return trainer::run_training(req, comm);
    } catch (const std::invalid_argument& e) {
      std::cerr << "styleforge train: " << e.what() << "\n";
      return kUsage;
    } catch (const std::exception&) {
      if (!trainer::last_run_dir().empty()) metrics::set_run_state(trainer::last_run_dir(), "failed");
      throw;
    }
  }

  // Multi-rank: every uncaught error aborts the whole job, naming the rank, host and cause.
  int world_rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  try {
    sharding::Topology topo = sharding::discover_topology(want_metrics_rank, param_servers);
    MPI_Comm tcomm = sharding::trainer_comm(topo);
    MPI_Comm scomm = param_servers > 0 ? sharding::sync_comm(topo) : MPI_COMM_NULL;
    for (int r = 0; r < topo.num_trainers; ++r) req.hosts.push_back(topo.hosts[r]);
    req.topology = topo.describe();
    req.metrics_timeout_s = timeout_s;
    int rc = 0;
    // A dry run: trainers print the options and stop, so nothing is handed to a metrics rank
    // (which stops at once) and no rank sets up the metrics link. Servers serve the trainers'
    // finish as usual.
    const bool use_link = topo.metrics_rank >= 0 && !req.dry_run;
    if (topo.role == sharding::Role::Metrics && req.dry_run) {
      std::printf("[metrics rank %d] dry run; exiting.\n", topo.world_rank);
    } else if (topo.role == sharding::Role::Metrics) {
      // A GPU of its own when there is one: the first visible GPU after this host's trainers (or
      // the single GPU a launcher bound to this task with --device cuda); else the CPU.
      int local_trainers = 0;
      for (int r = 0; r < topo.num_trainers; ++r) local_trainers += topo.hosts[r] == topo.hosts[topo.world_rank];
      const int gpus = trainer::gpu_count();
      if (o.device == "cpu" || gpus == 0)
        mopts.device = "cpu";
      else if (gpus > local_trainers)
        mopts.device = "cuda:" + std::to_string(local_trainers);
      else
        mopts.device = (o.device != "auto" && gpus == 1) ? "cuda:0" : "cpu";
      std::printf("[metrics rank %d] computing on %s\n", topo.world_rank, mopts.device.c_str());
      sharding::MetricsLink link(0, topo.metrics_rank);
      rc = metrics::run_metrics_rank(link, mopts, &g_stop);
    } else if (topo.role == sharding::Role::Server) {
      // The link's communicator is duplicated from MPI_COMM_WORLD, a collective of every rank:
      // servers take part (and never use it), or trainers and the metrics rank would wait forever.
      std::unique_ptr<sharding::MetricsLink> metrics_link;
      if (use_link) metrics_link = std::make_unique<sharding::MetricsLink>(0, topo.metrics_rank);
      rc = sharding::run_parameter_server(scomm, topo.num_trainers, timeout_s, &g_stop);
      std::printf("[parameter server rank %d] training finished (exit code %d)\n", topo.world_rank, rc);
      MPI_Comm_free(&scomm);
    } else {
      std::unique_ptr<sharding::MetricsLink> metrics_link;
      if (use_link) metrics_link = std::make_unique<sharding::MetricsLink>(0, topo.metrics_rank);
      if (topo.world_rank == 0) req.metrics = metrics_link.get();
      if (topo.metrics_rank < 0 && !mopts.metrics.empty() && !req.dry_run) req.local_metrics = &local_metrics;
      {
        sharding::MpiCommunicator comm(tcomm, timeout_s);
        if (scomm != MPI_COMM_NULL) {
          sharding::ParamServerCommunicator ps(comm, scomm, topo.num_servers, &g_stop);
          rc = trainer::run_training(req, ps);
          ps.finish(rc);
        } else {
          rc = trainer::run_training(req, comm);
        }
      }
      if (scomm != MPI_COMM_NULL) MPI_Comm_free(&scomm);
      MPI_Comm_free(&tcomm);
    }
    return rc;
  } catch (const std::exception& e) {
    if (world_rank == 0 && !trainer::last_run_dir().empty()) metrics::set_run_state(trainer::last_run_dir(), "failed");
    std::fprintf(stderr, "styleforge train: rank %d (%s): error: %s; aborting the job\n", world_rank,
                 sharding::host_name().c_str(), e.what());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    return kFailure;
  }
}

int cmd_bench(const std::vector<std::string>& args) {
  trainer::BenchRequest r;
  po::options_description desc("options");
  desc.add_options()
      ("resolution", po::value(&r.resolution)->default_value(32), "image resolution")
      ("channels", po::value(&r.channels)->default_value(3), "image channels (1 or 3)")
      ("cbase", po::value(&r.cbase)->default_value(4096), "channel base")
      ("cmax", po::value(&r.cmax)->default_value(128), "channel maximum")
      ("batch", po::value(&r.batch)->default_value(8), "batch size")
      ("aug", po::value(&r.aug)->default_value("noaug"), "noaug | ada | fixed (p = 0.5)")
      ("threads", po::value(&r.threads)->default_value(1), "LibTorch threads")
      ("iters", po::value(&r.iters)->default_value(16), "timed iterations (16 covers every phase of the lazy schedule)")
      ("seed", po::value(&r.seed)->default_value(0), "random seed")
      ("cfg", po::value(&r.cfg), "a training preset (auto, paper256, ...) instead of --cbase/--cmax")
      ("device", po::value(&r.device)->default_value("cpu"), "auto | cpu | cuda | cuda:N (rank i of a host on GPU i)")
      ("overlap", po::value(&r.overlap)->default_value("both"), "gradient sync while backward runs: on | off | both (alternating blocks, both reported)")
      ("pairs", po::value(&r.pairs)->default_value(1), "blocks of --iters iterations per overlap mode")
      ("bucket-mb", po::value(&r.bucket_mb)->default_value(25.0), "gradient bucket size in MiB (the first is at most 1 MiB)")
      ("cpu-conv", po::value(&r.cpu_conv)->default_value("auto"), "as train --cpu-conv")
      ("fp32", po::value(&r.fp32)->default_value(true)->implicit_value(true), "as train --fp32 (false: mixed precision on GPUs)")
      ("nhwc", po::value(&r.nhwc)->default_value(false)->implicit_value(true), "as train --nhwc (needs --fp32 false)");
  po::variables_map vm;
  if (int rc = parse_options("bench", "[--resolution 32 --cbase 4096 --cmax 128 --batch 8 --aug noaug --threads 1 --iters 16]",
                             args, desc, vm);
      rc >= 0)
    return rc;
  if (r.overlap != "on" && r.overlap != "off" && r.overlap != "both") {
    std::cerr << "styleforge bench: --overlap must be on, off or both\n";
    return kUsage;
  }
  if (!cpu_conv_valid("bench", r.cpu_conv)) return kUsage;
  if (!(r.bucket_mb > 0)) {
    std::cerr << "styleforge bench: --bucket-mb must be positive\n";
    return kUsage;
  }
  if (r.iters < 1 || r.batch < 1) {
    std::cerr << "styleforge bench: --iters and --batch must be positive\n";
    return kUsage;
  }
  if (r.nhwc && r.fp32) {
    std::cerr << "styleforge bench: --nhwc needs mixed precision (--fp32 false)\n";
    return kUsage;
  }
  sharding::MpiSession mpi(sharding::launched_by_mpi());
  try {
    if (!mpi.active()) {
      sharding::LocalCommunicator comm;
      return trainer::run_bench(r, comm);
    }
    sharding::MpiCommunicator comm(MPI_COMM_WORLD, 600);
    return trainer::run_bench(r, comm);
  } catch (const std::invalid_argument& e) {
    std::cerr << "styleforge bench: " << e.what() << "\n";
    return kUsage;
  }
}

int cmd_bench_comm(const std::vector<std::string>& args) {
  std::string sizes;
  int iters = 10, servers = 0;
  po::options_description desc("options");
  desc.add_options()
      ("bytes", po::value(&sizes)->default_value("1M,25M,100M"), "buffer sizes (K, M, G suffixes), comma-separated")
      ("iters", po::value(&iters)->default_value(10), "timed repetitions per size")
      ("param-servers", po::value(&servers)->default_value(0), "the last S ranks sum as parameter servers; MPI_Allreduce runs among the trainers");
  po::variables_map vm;
  if (int rc = parse_options("bench-comm", "[--bytes 1M,25M,100M]  (run under mpirun -np N)", args, desc, vm); rc >= 0)
    return rc;
  std::vector<int64_t> bytes;
  {
    std::stringstream ss(sizes);
    std::string tok;
    while (std::getline(ss, tok, ',')) {
      if (tok.empty()) continue;
      int64_t mult = 1;
      const char u = static_cast<char>(std::toupper(static_cast<unsigned char>(tok.back())));
      if (u == 'K' || u == 'M' || u == 'G') {
        mult = u == 'K' ? 1 << 10 : u == 'M' ? 1 << 20 : int64_t(1) << 30;
        tok.pop_back();
      }
      try {
        size_t used = 0;
        const double v = std::stod(tok, &used);
        if (used != tok.size() || v <= 0) throw std::invalid_argument(tok);
        bytes.push_back(static_cast<int64_t>(v * mult));
      } catch (const std::exception&) {
        std::cerr << "styleforge bench-comm: --bytes: cannot parse '" << tok << "'\n";
        return kUsage;
      }
    }
  }
  if (!sharding::launched_by_mpi()) {
    std::cerr << "styleforge bench-comm: run it under mpirun -np N (or srun) with N >= 2\n";
    return kUsage;
  }
  if (servers < 0) {
    std::cerr << "styleforge bench-comm: --param-servers must be >= 0\n";
    return kUsage;
  }
  sharding::MpiSession mpi(true);
  sharding::Topology topo;
  try {
    topo = sharding::discover_topology(false, servers);
  } catch (const std::runtime_error& e) {
    int me = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    if (me == 0) std::cerr << "styleforge bench-comm: " << e.what() << "\n";
    return kUsage;
  }
  MPI_Comm tcomm = sharding::trainer_comm(topo);
  MPI_Comm scomm = servers > 0 ? sharding::sync_comm(topo) : MPI_COMM_NULL;
  if (topo.role == sharding::Role::Server) return sharding::run_parameter_server(scomm, topo.num_trainers, 600, nullptr);
  sharding::MpiCommunicator mpi_comm(tcomm, 600);
  std::unique_ptr<sharding::ParamServerCommunicator> ps;
  if (servers > 0) ps = std::make_unique<sharding::ParamServerCommunicator>(mpi_comm, scomm, servers, nullptr);
  sharding::Communicator& comm = ps ? static_cast<sharding::Communicator&>(*ps) : mpi_comm;
  auto raw = [tcomm](float* p, size_t n) {
    SF_MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, p, static_cast<int>(n), MPI_FLOAT, MPI_SUM, tcomm));
  };
  auto rows = trainer::run_bench_comm(bytes, iters, comm, raw);
  if (ps) ps->finish(0);
  if (comm.rank() == 0) {
    std::printf("bench-comm: %s, %d iterations per size; bus bandwidth = 2(n-1)/n * bytes / time, n trainers\n",
                comm.describe().c_str(), iters);
    std::printf("%12s %12s %12s %12s %12s %12s %8s\n", "bytes", "sync ms", "sync GB/s", "flat ms", "MPI ms",
                "MPI GB/s", "ratio");
    for (const auto& r : rows)
      std::printf("%12lld %12.3f %12.3f %12.3f %12.3f %12.3f %8.3f\n", static_cast<long long>(r.bytes),
                  r.ours_s * 1e3, r.ours_busbw / 1e9, r.flat_s * 1e3, r.raw_s * 1e3, r.raw_busbw / 1e9,
                  r.ours_busbw / r.raw_busbw);
  }
  return kOk;
}

}  // namespace sf::cli
