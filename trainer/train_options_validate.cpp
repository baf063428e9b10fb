#include "trainer/train_options_validate.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>

#include "trainer/checkpoint.h"

namespace fs = std::filesystem;

namespace sf::trainer {
namespace {

std::string num(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  return end && *end == '\0' ? static_cast<int>(x) : fallback;
}

// World size and rank as the launcher (Open MPI, PMI/PMIx, Slurm) announces them; 1 and 0 when
// the process was started directly.
int launcher_world_size() {
  for (const char* n : {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE", "MPI_LOCALNRANKS"}) {
    int v = env_int(n, 0);
    if (v > 0) return v;
  }
  // srun --mpi=pmix exports PMIX_RANK but no size: the step's task count is Slurm's.
  if (std::getenv("SLURM_STEP_ID") && (std::getenv("PMIX_RANK") || std::getenv("PMI_RANK"))) {
    if (int v = env_int("SLURM_STEP_NUM_TASKS", 0); v > 0) return v;
    if (int v = env_int("SLURM_NTASKS", 0); v > 0) return v;
  }
  return 1;
}
int launcher_rank() {
  for (const char* n : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"}) {
    int v = env_int(n, -1);
    if (v >= 0) return v;
  }
  return 0;
}

// The checkpoint --resume latest would pick (newest snapshot of the newest run), "" when none.
std::string latest_checkpoint(const TrainOptions& o) {
  std::vector<std::string> dirs;
  if (!o.run_dir.empty()) {
    dirs.push_back(o.run_dir);
  } else if (!o.outdir.empty() && fs::is_directory(o.outdir)) {
    std::vector<std::string> runs;
    for (const auto& e : fs::directory_iterator(o.outdir)) {
      const std::string n = e.path().filename().string();
      if (e.is_directory() && n.size() > 6 && n[5] == '-' && n.find_first_not_of("0123456789") == 5) runs.push_back(e.path().string());
    }
    std::sort(runs.rbegin(), runs.rend());
    dirs = runs;
  }
  for (const auto& d : dirs) {
    auto snaps = list_snapshots(d);
    if (!snaps.empty()) return snaps.back();
  }
  return "";
}

}  // namespace

std::string validate_options(const TrainOptions& o, const TrainLaunch& l, int world_size, std::string* note) {
  auto finite = [](double v) { return std::isfinite(v); };
  // Ranges and NaN: optional overrides first.
  if (!(finite(o.topk_gamma) && o.topk_gamma > 0 && o.topk_gamma <= 1))
    return "--topk-gamma " + num(o.topk_gamma) + ": must be in (0, 1]";
  if (!(finite(o.topk_min) && o.topk_min > 0 && o.topk_min <= 1))
    return "--topk-min " + num(o.topk_min) + ": must be in (0, 1] (a fraction of the batch)";
  if (o.gamma_override && !(finite(*o.gamma_override) && *o.gamma_override >= 0))
    return "--gamma " + num(*o.gamma_override) + ": must be a finite number >= 0";
  if (o.kimg_override && !(finite(*o.kimg_override) && *o.kimg_override > 0 && *o.kimg_override <= 1e8))
    return "--kimg " + num(*o.kimg_override) + ": must be a finite number in (0, 1e8]";
  if (o.batch_override && *o.batch_override < 1) return "--batch " + std::to_string(*o.batch_override) + ": must be >= 1";
  if (o.batch_override && *o.batch_override > (1 << 20)) return "--batch " + std::to_string(*o.batch_override) + ": implausibly large";
  if (o.batch_gpu_override < 0) return "--batch-gpu " + std::to_string(o.batch_gpu_override) + ": must be >= 1 (or 0: the whole per-trainer batch)";
  if (o.p_override && !(finite(*o.p_override) && *o.p_override >= 0 && *o.p_override <= 1))
    return "--p " + num(*o.p_override) + ": must be in [0, 1]";
  if (o.target_override && !(finite(*o.target_override) && *o.target_override >= 0 && *o.target_override <= 1))
    return "--target " + num(*o.target_override) + ": must be in [0, 1]";
  if (o.ada_kimg_override && !(finite(*o.ada_kimg_override) && *o.ada_kimg_override > 0))
    return "--ada-kimg " + num(*o.ada_kimg_override) + ": must be a finite number > 0";
  if (!(finite(o.kimg_per_tick) && o.kimg_per_tick > 0)) return "--tick " + num(o.kimg_per_tick) + ": must be a finite number > 0";
  if (o.snap < 1) return "--snap " + std::to_string(o.snap) + ": must be >= 1";
  if (o.keep_snapshots < 0) return "--keep " + std::to_string(o.keep_snapshots) + ": must be >= 0";
  if (o.freezed < 0) return "--freezed " + std::to_string(o.freezed) + ": must be >= 0";
  if (o.threads < 0) return "--threads " + std::to_string(o.threads) + ": must be >= 1 (or 0: all cores)";
  if (l.grid_given && (o.grid_cols < 1 || o.grid_rows < 1 || o.grid_cols > 256 || o.grid_rows > 256))
    return "--grid " + std::to_string(o.grid_cols) + "x" + std::to_string(o.grid_rows) + ": both sizes must be in 1..256";
  for (const auto& [flag, v] : {std::pair<const char*, std::optional<int>>{"--cbase", o.cbase_override}, {"--cmax", o.cmax_override},
                                {"--map", o.map_override}})
    if (v && *v < 1) return std::string(flag) + " " + std::to_string(*v) + ": must be >= 1";
  if (o.mbstd_override && *o.mbstd_override < 0) return "--mbstd-group " + std::to_string(*o.mbstd_override) + ": must be >= 0";
  if (!(finite(l.timeout_s) && l.timeout_s > 0)) return "--timeout " + num(l.timeout_s) + ": must be a finite number of seconds > 0";
  if (l.gpus < 0) return "--gpus " + std::to_string(l.gpus) + ": must be >= 1 (or 0: the ranks this job was started with)";
  if (l.param_servers < 0) return "--param-servers " + std::to_string(l.param_servers) + ": must be >= 0";

  // Combinations: ranks of the job vs the roles asked for.
  const int world = l.gpus > 0 ? l.gpus + l.param_servers + (l.metrics_rank ? 1 : 0) : world_size;
  const int extra = l.param_servers + (l.metrics_rank && world >= 2 ? 1 : 0);
  if (l.param_servers > 0 && world - extra < 1)
    return "--param-servers " + std::to_string(l.param_servers) + " needs at least " + std::to_string(extra + 1) +
           " ranks (trainers + servers" + (l.metrics_rank ? std::string(" + the metrics rank") : std::string()) +
           "); this job has " + std::to_string(world);

  // Metric names: known before any rank starts (not when the metrics rank first evaluates).
  if (l.check_metric)
    for (const auto& m : l.metrics) {
      try {
        l.check_metric(m);
      } catch (const std::exception& e) {
        std::string what = e.what(), line;  // one line: the known forms joined with "; "
        bool space = false;
        for (char ch : what) {
          if (ch == '\n' || ch == ' ') {
            space = true;
            continue;
          }
          if (space && !line.empty()) line += ' ';
          space = false;
          line += ch;
        }
        return "--metrics " + m + ": " + line;
      }
    }

  // --resume: a training state continues its run (architecture and batch are the run's), a
  // network starts a new run from its weights. Say which, and refuse changed settings.
  if (!l.resume.empty()) {
    std::string path = l.resume == "latest" ? latest_checkpoint(o) : l.resume;
    if (!path.empty() && fs::path(path).extension() == ".h5" && fs::exists(path)) {
      CheckpointInfo info;
      try {
        info = read_checkpoint_info(path);
      } catch (const std::exception& e) {
        return std::string("--resume: ") + e.what();
      }
      if (info.has_training_state && info.options) {
        const TrainOptions& s = *info.options;
        auto differs = [&](const char* flag, const std::optional<int>& given, int saved) -> std::string {
          if (given && *given != saved)
            return std::string(flag) + " " + std::to_string(*given) + " differs from the run being resumed (" + path +
                   " has " + std::to_string(saved) + "); a resumed run keeps its architecture and batch";
          return "";
        };
        for (const std::string& e : {differs("--cbase", o.cbase_override, info.G.channel_base),
                                     differs("--cmax", o.cmax_override, info.G.channel_max),
                                     differs("--map", o.map_override, info.G.mapping_layers),
                                     differs("--mbstd-group", o.mbstd_override, info.D.mbstd_group_size),
                                     differs("--batch", o.batch_override, s.batch_size)})
          if (!e.empty()) return e;
        if (o.batch_gpu_override > 0 && o.batch_gpu_override != s.batch_gpu)
          return "--batch-gpu " + std::to_string(o.batch_gpu_override) + " differs from the run being resumed (" + path +
                 " has " + std::to_string(s.batch_gpu) + ")";
        if (o.cfg != "auto" && o.cfg != s.cfg)
          return "--cfg " + o.cfg + " differs from the run being resumed (" + path + " has " + s.cfg + ")";
        if (note)
          *note = "resume: " + path + " is a training checkpoint: continuing its run at kimg " +
                  num(static_cast<double>(info.counters.cur_nimg) / 1000.0);
      } else if (note) {
        *note = "resume: " + path + " is a network (no training state): starting a new run from its weights";
      }
    } else if (l.resume != "latest" && fs::path(l.resume).extension() == ".h5") {
      return "--resume " + l.resume + ": no such file";
    }
  }
  return "";
}

int check_train_options(const TrainOptions& o, const TrainLaunch& l) {
  std::string note;
  const std::string err = validate_options(o, l, launcher_world_size(), &note);
  const bool speak = launcher_rank() == 0;
  if (!err.empty()) {
    if (speak) std::cerr << "styleforge train: " << err << "\n";
    return 2;
  }
  if (speak && !note.empty()) std::cout << note << "\n";
  return 0;
}

}  // namespace sf::trainer
