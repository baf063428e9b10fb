#include "trainer/optim.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/GradMode.h>

#include <cmath>
#include <set>
#include <stdexcept>

#include "trainer/tensor_io.h"

namespace sf::trainer {

Adam::Adam(const ParamStore& store, Options opts) : opts_(opts) {
  for (const auto& e : store.entries())
    if (!e.is_buffer && e.trainable) slots_.push_back({e.name, e.tensor, {}, {}, 0});
}

void Adam::step() {
  at::NoGradGuard no_grad;
  for (auto& s : slots_) {
    const at::Tensor& grad = s.param.grad();
    if (!grad.defined()) continue;
    if (!s.exp_avg.defined()) {
      s.exp_avg = at::zeros_like(s.param, at::MemoryFormat::Preserve);
      s.exp_avg_sq = at::zeros_like(s.param, at::MemoryFormat::Preserve);
    }
    s.step += 1;
    s.exp_avg.mul_(opts_.beta1).add_(grad, 1 - opts_.beta1);
    s.exp_avg_sq.mul_(opts_.beta2).addcmul_(grad, grad, 1 - opts_.beta2);
    const double bias_correction1 = 1 - std::pow(opts_.beta1, static_cast<double>(s.step));
    const double bias_correction2 = 1 - std::pow(opts_.beta2, static_cast<double>(s.step));
    const double step_size = opts_.lr / bias_correction1;
    at::Tensor denom = (s.exp_avg_sq.sqrt() / std::sqrt(bias_correction2)).add_(opts_.eps);
    s.param.addcdiv_(s.exp_avg, denom, -step_size);
  }
}

void Adam::save(const h5::Handle& group) const {
  h5::Handle avg = h5::require_group(group, "exp_avg");
  h5::Handle sq = h5::require_group(group, "exp_avg_sq");
  h5::Handle st = h5::require_group(group, "step");
  for (const auto& s : slots_) {
    if (s.step == 0) continue;
    write_tensor(avg, s.name, s.exp_avg);
    write_tensor(sq, s.name, s.exp_avg_sq);
    h5::write_i64(st, s.name, &s.step, {});
  }
  h5::write_double_attr(group, "lr", opts_.lr);
  h5::write_double_attr(group, "beta1", opts_.beta1);
  h5::write_double_attr(group, "beta2", opts_.beta2);
  h5::write_double_attr(group, "eps", opts_.eps);
}

void Adam::load(const h5::Handle& group) {
  h5::Handle avg = h5::open_group(group, "exp_avg");
  h5::Handle sq = h5::open_group(group, "exp_avg_sq");
  h5::Handle st = h5::open_group(group, "step");
  std::set<std::string> known;
  for (const auto& s : slots_) known.insert(s.name);
  for (const auto& n : h5::members(st))
    if (!known.count(n)) throw std::runtime_error(group.where() + ": optimiser state for unknown parameter '" + n + "'");
  at::NoGradGuard no_grad;
  for (auto& s : slots_) {
    if (!h5::exists(st, s.name)) {
      s.step = 0;
      s.exp_avg = s.exp_avg_sq = at::Tensor();
      continue;
    }
    at::Tensor a = read_tensor(avg, s.name), b = read_tensor(sq, s.name);
    if (!a.sizes().equals(s.param.sizes()) || !b.sizes().equals(s.param.sizes()))
      throw std::runtime_error(group.where() + ": optimiser state of '" + s.name + "' has the wrong shape");
    s.exp_avg = a.to(s.param.options());
    s.exp_avg_sq = b.to(s.param.options());
    s.step = h5::read_i64(st, s.name).at(0);
  }
}

std::vector<std::pair<std::string, at::Tensor>> Adam::state_tensors() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& s : slots_) {
    if (s.step == 0) continue;
    out.emplace_back(s.name + "/exp_avg", s.exp_avg);
    out.emplace_back(s.name + "/exp_avg_sq", s.exp_avg_sq);
    out.emplace_back(s.name + "/step", at::full({}, s.step, at::kLong));
  }
  return out;
}

void update_ema(ParamStore& ema, const ParamStore& src, double beta) {
  at::NoGradGuard no_grad;
  const auto& a = ema.entries();
  const auto& b = src.entries();
  if (a.size() != b.size()) throw std::logic_error("update_ema: stores differ");
  for (size_t i = 0; i < a.size(); ++i) {
    at::Tensor dst = a[i].tensor;
    if (a[i].is_buffer)
      dst.copy_(b[i].tensor);
    else
      dst.copy_(b[i].tensor.lerp(dst, beta));
  }
}

void sanitize_gradients(const ParamStore& store) {
  at::NoGradGuard no_grad;
  for (const auto& e : store.entries()) {
    if (e.is_buffer || !e.trainable) continue;
    at::Tensor g = e.tensor.grad();
    if (g.defined()) at::nan_to_num_out(g, g, 0.0, 1e5, -1e5);
  }
}

void set_trainable(const ParamStore& store, bool on) {
  for (const auto& e : store.entries())
    if (!e.is_buffer && e.trainable) const_cast<at::Tensor&>(e.tensor).set_requires_grad(on);
}

}  // namespace sf::trainer
