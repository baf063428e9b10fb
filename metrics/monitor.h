// Run monitoring: what a training run publishes for people and schedulers, and how it is read back.
//
// Rank 0 of `styleforge train` fills a RunStatus at every tick and at exit and calls
// publish_run_status(), which writes, each one atomically (a temporary file in the same folder,
// then rename, so a reader on a shared file system sees the old or the new file, never a part):
//   run_dir/status.json                   the RunStatus as JSON (`styleforge status` reads it)
//   run_dir/styleforge.prom               Prometheus text format, every sample labelled run="<name>"
//   $STYLEFORGE_PROM_DIR/<name>.prom      the same text, when the variable is set (node_exporter's
//                                         textfile collector reads that folder)
// and hands the status to the process's HTTP endpoint when set_metrics_http_bind() asked for one.
// <name> is the run directory's last path component. The last FID/KID values come from the
// run's metric-*.jsonl files (the reference's format, one JSON object per line).
//
// Prometheus names (all gauges, all labelled run): styleforge_state{state}, styleforge_kimg,
// styleforge_total_kimg, styleforge_seconds_per_kimg, styleforge_augment_p, styleforge_r_t,
// styleforge_loss{stat}, styleforge_metric{metric}, styleforge_metric_kimg{metric},
// styleforge_rank_heartbeat_age_seconds{rank,host}, styleforge_rank_step{rank,host},
// styleforge_rank_seconds_per_kimg{rank,host}, styleforge_rank_cpu_memory_bytes{rank,host},
// styleforge_rank_gpu_memory_bytes{rank,host}, styleforge_checkpoint_age_seconds,
// styleforge_status_timestamp_seconds. Ages in a .prom file are taken when it is written; the
// HTTP endpoint computes them at scrape time. Alert on `time() - styleforge_status_timestamp_seconds`
// to catch a run that stopped publishing.
//
// Everything here is torch-free (launcher/ includes it) and touches only files. Publishing never
// throws: a monitoring failure (disk full, folder gone) prints one warning and training goes on.
// publish_run_status and set_run_state are not thread-safe with each other; MetricsHttpServer is.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <utility>
#include <vector>

namespace sf::metrics {

struct RankHeartbeat {
  int rank = 0;
  std::string host;
  int64_t step = 0;          // training iterations done (batch_idx)
  double unix_time = 0;      // when this rank last reported
  double cpu_mem_gb = 0;     // resident set size, GiB
  double gpu_mem_gb = 0;     // device memory in use, GiB (0 on CPU)
  double sec_per_kimg = 0;   // this rank's speed over the last tick
};

struct RunStatus {
  std::string state = "running";  // running | done | requeue | failed
  double kimg = 0, total_kimg = 0, sec_per_kimg = 0, augment_p = 0;
  double r_t = 0;                     // ADA's overfitting heuristic: mean sign of D(real)
  std::map<std::string, double> losses;  // stats.jsonl name ("Loss/G/loss", ...) -> mean
  std::vector<RankHeartbeat> ranks;
  std::string last_checkpoint;        // file name; empty: the newest network-snapshot-*.h5 in the run dir
  double last_checkpoint_unix_time = 0;  // 0: that file's modification time
  double unix_time = 0;               // when this status was taken; 0: now
};

// One tick's stats.jsonl object ({name: {num, mean, std}}, "timestamp") as a RunStatus: kimg
// (Progress/kimg), sec_per_kimg (Timing/sec_per_kimg), augment_p (Progress/augment), r_t
// (Loss/signs/real), losses (every Loss/* mean), unix_time (timestamp). Missing names stay 0.
RunStatus status_from_stats(const nlohmann::json& stats);
// Resident set size of this process in GiB (VmRSS), 0 when unknown.
double process_rss_gb();
// A heartbeat of this process: host name, now, resident set size.
RankHeartbeat local_heartbeat(int rank, int64_t step, double sec_per_kimg, double gpu_mem_gb = 0);

// Writes status.json and the .prom files (see the top of this file). Fills the empty/zero
// checkpoint and time fields from the run directory and the clock.
void publish_run_status(const std::string& run_dir, const RunStatus& status);
// Re-publishes run_dir/status.json with a new state and time (e.g. "done" at exit, "failed" when
// training threw). Does nothing when the run has no status.json yet.
void set_run_state(const std::string& run_dir, const std::string& state);

nlohmann::json status_to_json(const RunStatus& s);
RunStatus status_from_json(const nlohmann::json& j);  // throws nlohmann::json::exception on bad types
// Reads run_dir/status.json; false when it is missing or unreadable.
bool read_run_status(const std::string& run_dir, RunStatus* out);

// ---- metric-*.jsonl ----
struct MetricResult {
  std::string metric;     // result key, e.g. "fid50k_full", "kid50k_full"
  double value = 0;
  std::string snapshot;   // snapshot_pkl of the line
  double kimg = -1;       // from the snapshot's name (network-snapshot-NNNNNN.*), -1 unknown
  double unix_time = 0;   // the line's timestamp
};
// Every result of every line of every metric-*.jsonl in run_dir, in file order per metric.
// Unparseable lines are skipped (a writer may be appending).
std::vector<MetricResult> read_metric_history(const std::string& run_dir);
// The newest result per metric name.
std::vector<MetricResult> latest_metrics(const std::vector<MetricResult>& history);

// ---- Prometheus exposition ----
struct PromSample {
  std::vector<std::pair<std::string, std::string>> labels;  // besides run
  double value = 0;
};
struct PromFamily {
  std::string name, help;  // all families are gauges
  std::vector<PromSample> samples;
};
// The families above for one run at time `now` (ages are now minus the recorded times).
std::vector<PromFamily> prometheus_families(const RunStatus& s, const std::vector<MetricResult>& latest, double now);
// Text exposition format 0.0.4 of the families, each sample labelled run="run_name".
std::string prometheus_text(const std::vector<PromFamily>& families, const std::string& run_name);
// The run name of a run directory (its last path component) and the same restricted to
// [A-Za-z0-9._-] for file names.
std::string run_name_of(const std::string& run_dir);
std::string safe_file_name(const std::string& name);

// ---- HTTP endpoint (prometheus-cpp with civetweb; optional at build time) ----
// True when this build has prometheus-cpp.
bool metrics_http_available();

// Serves GET /metrics with the families of the latest update() (ages computed per scrape).
// `bind` is "ADDR:PORT", or "PORT" for 127.0.0.1:PORT; port 0 picks a free one (see port()).
// Throws std::runtime_error when the build lacks prometheus-cpp or the address cannot be bound.
class MetricsHttpServer {
 public:
  explicit MetricsHttpServer(const std::string& bind);
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;
  void update(const RunStatus& s, const std::string& run_name, const std::vector<MetricResult>& latest = {});
  int port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Makes publish_run_status() also feed an HTTP endpoint at `bind`, started at the first publish
// (so only the rank that publishes binds the port). An empty bind turns it off.
void set_metrics_http_bind(const std::string& bind);

// ---- reading runs back (`styleforge status`) ----
struct RunSummary {
  std::string run_dir, name;
  bool has_status = false;    // false: derived from stats.jsonl/log.txt (runs without status.json)
  std::string state;          // running | stalled | done | requeue | failed | unknown
  double age_sec = -1;        // now minus the status time (-1 unknown)
  RunStatus status;
  std::vector<MetricResult> metrics;  // latest per metric
  double eta_sec = -1;        // (total - kimg) * sec/kimg while not finished, -1 unknown
  int slowest_rank = -1;      // the rank with the oldest heartbeat, or the largest sec/kimg
  std::string slowest_host;
  double slowest_age_sec = -1, slowest_sec_per_kimg = -1;
  std::string checkpoint;     // newest checkpoint file name, "" none
  double checkpoint_age_sec = -1;
};
// Reads a run directory (status.json, else stats.jsonl + log.txt + training_options.json).
// A "running" status older than max(stale_sec, 3 ticks at the last speed) is reported "stalled".
// Throws std::runtime_error when run_dir is not a directory.
RunSummary summarize_run(const std::string& run_dir, double now, double stale_sec);
// The table of `styleforge status`: a header (when asked for) and one line per run; each column
// is as wide as its widest cell, header included, plus two spaces, so long run names (slurm-<id>,
// NNNNN-<dataset>-<cfg>-...) keep the columns aligned. A run that is not running (done, failed,
// requeue) shows no heartbeat age: its ranks have stopped beating.
std::vector<std::string> status_table(const std::vector<RunSummary>& runs, bool header = true);
// The header alone, and one run's line (each sized to itself; status_table aligns several).
std::string status_header();
std::string status_line(const RunSummary& r);

// A run directory: holds status.json, stats.jsonl, training_options.json or log.txt.
bool is_run_directory(const std::string& dir);
// `dir` when it is a run directory, else the run directories directly inside it (an --outdir),
// sorted; empty when there are none (or dir is not a directory).
std::vector<std::string> find_run_directories(const std::string& dir);
// "35s", "4m 05s", "2h 03m", "3d 04h"; "-" for negative values.
std::string format_duration(double seconds);

double unix_now();

// The image count a snapshot file name stands for: network-snapshot-KKKKKK.h5 is KKKKKK * 1000,
// network-snapshot-KKKKKK-NNNNNNNNN.h5 (several snapshots in one kimg) is NNNNNNNNN; .pkl too.
// -1 for other names. Sorting by it orders a run's snapshots oldest first.
long long snapshot_order(const std::string& file_name);
// The newest snapshot file name in run_dir by that order, or "" when there is none.
std::string newest_snapshot_name(const std::string& run_dir);

}  // namespace sf::metrics
