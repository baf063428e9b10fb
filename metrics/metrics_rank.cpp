#include "metrics/metrics_rank.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>

#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "data/tb_events.h"
#include "metrics/metrics.h"
#include "sharding/metrics_link.h"

namespace sf::metrics {
namespace {

void log(const std::string& s) { std::cout << "[metrics rank] " << s << std::endl; }

}  // namespace

int run_metrics_rank(sharding::MetricsLink& link, const MetricsRankOptions& opts, const std::atomic<int>* stop) {
  if (opts.threads > 0) at::set_num_threads(opts.threads);
  // Where the metrics rank shares cores with trainers, the kernel's scheduler gives the trainers
  // precedence, so evaluating never slows training down (it only takes longer itself).
  if (opts.nice > 0 && ::setpriority(PRIO_PROCESS, 0, opts.nice) != 0) log("could not lower the scheduling priority");
  std::string names;
  for (size_t i = 0; i < opts.metrics.size(); ++i) names += (i ? "," : "") + opts.metrics[i];
  log("waiting for snapshots (metrics: " + (names.empty() ? std::string("none") : names) + ")");
  bool stop_forwarded = false;
  auto forward_stop = [&] {
    if (stop && stop->load() && !stop_forwarded) {
      link.request_stop();
      stop_forwarded = true;
      log("stop signal received: asked trainer rank 0 to checkpoint and stop");
    }
  };
  // The evaluator is built at the first snapshot, whose header names the pack and the run.
  std::unique_ptr<MetricsEvaluator> evaluator;
  // TensorBoard: results as `Metrics/<name>` scalars (the reference's tags) at the step and wall
  // time of the snapshot's tick, in an event file of this process under <run>/metrics/ (TensorBoard
  // run "<run>/metrics"): a second growing file in the run directory itself would stop a live
  // TensorBoard from following the trainer's file, as it reads only the newest file of a directory.
  // The reference repeats its latest results at every later tick; here each evaluation is one point.
  std::unique_ptr<data::TbEventWriter> tb;
  while (true) {
    sharding::MetricsMessage m = link.next(forward_stop);
    for (const auto& s : m.skipped) {
      char kimg[32];  // 0.1, not std::to_string's 0.100000
      std::snprintf(kimg, sizeof kimg, "%.10g", nlohmann::json::parse(s).value("kimg", 0.0));
      log(std::string("skipped the snapshot of kimg ") + kimg + " (a newer one arrived)");
    }
    if (m.kind == sharding::MetricsMessage::Done) {
      log("training finished (exit code " + std::to_string(m.exit_code) + ")");
      if (m.wait) link.ack();
      return m.exit_code;
    }
    auto h = nlohmann::json::parse(m.header);
    if (!evaluator && !opts.metrics.empty()) {
      MetricsOptions mo;
      mo.pack = h.at("data").get<std::string>();
      mo.metrics = opts.metrics;
      mo.detector = opts.detector;
      mo.threads = opts.threads;
      mo.device = opts.device;
      mo.batch = opts.batch;
      mo.num_gen = opts.num_gen;
      mo.seed = static_cast<uint32_t>(h.value("seed", 0));
      mo.mirror = h.value("mirror", false);
      mo.num_gpus = h.value("num_trainers", 1);
      mo.log = [](const std::string& line) { log(line); };
      evaluator = std::make_unique<MetricsEvaluator>(mo);
      if (evaluator->enabled()) evaluator->prepare();
    }
    if (!evaluator || !evaluator->enabled()) continue;  // metrics off: the message was logged once
    const std::string ckpt = h.at("checkpoint").get<std::string>();
    const std::string run_dir = h.at("run_dir").get<std::string>();
    log("evaluating " + ckpt);
    std::vector<std::string> keys = h.at("keys").get<std::vector<std::string>>();
    std::vector<std::pair<std::string, double>> scalars;
    for (const auto& result : evaluator->evaluate_flat(h.at("G"), keys, m.data.data(), m.data.size())) {
      report_metric(result, run_dir, ckpt);
      log(result.dump());
      for (auto& sc : data::tb_metric_scalars(result)) scalars.push_back(std::move(sc));
    }
    if (h.value("tensorboard", false) && !scalars.empty()) {
      if (!tb) {
        const std::filesystem::path dir = std::filesystem::path(run_dir) / "metrics";
        std::filesystem::create_directories(dir);
        tb = std::make_unique<data::TbEventWriter>(dir.string());
      }
      tb->add_scalars(scalars, h.value("tb_step", int64_t{0}), h.value("tb_wall_time", 0.0));
      tb->flush();
    }
  }
}

}  // namespace sf::metrics
