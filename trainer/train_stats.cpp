#include "trainer/train_stats.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/GradMode.h>

#include <cmath>
#include <vector>

namespace sf::trainer {

void StatsCollector::report(const std::string& name, const at::Tensor& values) {
  at::NoGradGuard no_grad;
  at::Tensor v = values.detach().flatten().to(at::kDouble);
  at::Tensor m = at::stack({at::full({}, static_cast<double>(v.numel()), v.options()), v.sum(), v.square().sum()});
  auto it = acc_.find(name);
  if (it == acc_.end())
    acc_.emplace(name, m);
  else
    it->second.add_(m);
}

void StatsCollector::report0(const std::string& name, double value) {
  at::Tensor m = rank_ == 0 ? at::tensor({1.0, value, value * value}, at::kDouble) : at::zeros({3}, at::kDouble);
  auto it = acc_.find(name);
  if (it == acc_.end())
    acc_.emplace(name, m);
  else
    it->second.add_(m.to(it->second.device()));
}

nlohmann::json StatsCollector::finish(sharding::Communicator& comm) {
  std::vector<double> flat;
  flat.reserve(acc_.size() * 3);
  for (auto& [name, t] : acc_) {
    at::Tensor c = t.cpu();
    const double* d = c.data_ptr<double>();
    flat.insert(flat.end(), d, d + 3);
  }
  if (!flat.empty()) comm.allreduce_sum(flat.data(), flat.size());
  nlohmann::json out = nlohmann::json::object();
  size_t i = 0;
  for (auto& [name, t] : acc_) {
    const double n = flat[i], s = flat[i + 1], sq = flat[i + 2];
    i += 3;
    if (n <= 0) continue;
    const double mean = s / n;
    const double var = sq / n - mean * mean;
    out[name] = {{"num", n}, {"mean", mean}, {"std", std::sqrt(var > 0 ? var : 0.0)}};
  }
  acc_.clear();
  return out;
}

void AdaSignal::add(const at::Tensor& real_logits) {
  at::NoGradGuard no_grad;
  at::Tensor v = real_logits.detach().flatten().to(at::kDouble);
  at::Tensor m = at::stack({v.sign().sum(), at::full({}, static_cast<double>(v.numel()), v.options())});
  if (!acc_.defined()) {
    acc_ = m;
  } else {
    if (acc_.device() != m.device()) acc_ = acc_.to(m.device());  // restored on the host after a resume
    acc_.add_(m);
  }
}

std::pair<double, double> AdaSignal::local() const {
  if (!acc_.defined()) return {0.0, 0.0};
  at::Tensor c = acc_.cpu();
  return {c.data_ptr<double>()[0], c.data_ptr<double>()[1]};
}

void AdaSignal::set_local(double sum, double count) {
  acc_ = (sum == 0 && count == 0) ? at::Tensor() : at::tensor({sum, count}, at::kDouble);
}

std::pair<double, double> AdaSignal::take(sharding::Communicator& comm) {
  auto [s, n] = local();
  double buf[2] = {s, n};
  comm.allreduce_sum(buf, 2);
  acc_ = at::Tensor();
  return {buf[0], buf[1]};
}

}  // namespace sf::trainer
