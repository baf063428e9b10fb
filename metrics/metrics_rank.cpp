#include "metrics/metrics_rank.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/GradMode.h>

#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>

#include "sharding/metrics_link.h"
#include "trainer/networks.h"

namespace sf::metrics {
namespace {

void log(const std::string& s) { std::cout << "[metrics rank] " << s << std::endl; }

// Rebuilds G_ema from a snapshot header and its flat buffer.
std::unique_ptr<trainer::Generator> rebuild_generator(const nlohmann::json& h, const std::vector<float>& data) {
  auto G = std::make_unique<trainer::Generator>(trainer::GeneratorConfig::from_json(h.at("G")));
  at::NoGradGuard no_grad;
  const auto& keys = h.at("keys");
  const auto& entries = G->state().entries();
  if (keys.size() != entries.size()) throw std::runtime_error("metrics rank: snapshot has a different set of tensors");
  size_t off = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    if (keys[i].get<std::string>() != entries[i].name)
      throw std::runtime_error("metrics rank: snapshot tensor " + keys[i].get<std::string>() + " where " +
                               entries[i].name + " was expected");
    at::Tensor t = entries[i].tensor;
    const size_t n = static_cast<size_t>(t.numel());
    if (off + n > data.size()) throw std::runtime_error("metrics rank: snapshot buffer too short");
    t.copy_(at::from_blob(const_cast<float*>(data.data() + off), t.sizes(), at::kFloat));
    off += n;
  }
  G->train(false);
  return G;
}

}  // namespace

int run_metrics_rank(sharding::MetricsLink& link, const MetricsRankOptions& opts, const std::atomic<int>* stop) {
  if (opts.threads > 0) at::set_num_threads(opts.threads);
  log("waiting for snapshots (metrics: " + std::string(opts.metrics.empty() ? "none" : "") + [&] {
    std::string s;
    for (size_t i = 0; i < opts.metrics.size(); ++i) s += (i ? "," : "") + opts.metrics[i];
    return s;
  }() + ")");
  bool stop_forwarded = false;
  auto forward_stop = [&] {
    if (stop && stop->load() && !stop_forwarded) {
      link.request_stop();
      stop_forwarded = true;
      log("stop signal received: asked trainer rank 0 to checkpoint and stop");
    }
  };
  while (true) {
    sharding::MetricsMessage m = link.next(forward_stop);
    for (const auto& s : m.skipped) {
      auto h = nlohmann::json::parse(s);
      log("skipped snapshot at kimg " + std::to_string(h.value("kimg", 0.0)) + " (a newer one arrived)");
    }
    if (m.kind == sharding::MetricsMessage::Done) {
      log("training finished (exit code " + std::to_string(m.exit_code) + ")");
      if (m.wait) link.ack();
      return m.exit_code;
    }
    auto h = nlohmann::json::parse(m.header);
    auto G = rebuild_generator(h, m.data);
    log("evaluating " + h.at("checkpoint").get<std::string>());
  }
}

}  // namespace sf::metrics
