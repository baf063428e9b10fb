#include "trainer/param_store.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/GradMode.h>

#include <stdexcept>

namespace sf::trainer {

at::Tensor ParamStore::param(const std::string& name, at::Tensor init, bool trainable) {
  if (find(name)) throw std::logic_error("duplicate parameter key '" + name + "'");
  at::Tensor t = init.detach().contiguous();
  if (trainable) t.set_requires_grad(true);
  entries_.push_back({name, t, false, trainable});
  return t;
}

at::Tensor ParamStore::buffer(const std::string& name, at::Tensor init) {
  if (find(name)) throw std::logic_error("duplicate buffer key '" + name + "'");
  at::Tensor t = init.detach().contiguous();
  entries_.push_back({name, t, true, false});
  return t;
}

std::vector<at::Tensor> ParamStore::trainable_parameters() const {
  std::vector<at::Tensor> out;
  for (const auto& e : entries_)
    if (!e.is_buffer && e.trainable) out.push_back(e.tensor);
  return out;
}

std::vector<std::string> ParamStore::trainable_names() const {
  std::vector<std::string> out;
  for (const auto& e : entries_)
    if (!e.is_buffer && e.trainable) out.push_back(e.name);
  return out;
}

const NamedTensor* ParamStore::find(const std::string& name) const {
  for (const auto& e : entries_)
    if (e.name == name) return &e;
  return nullptr;
}

const at::Tensor& ParamStore::at(const std::string& name) const {
  const NamedTensor* e = find(name);
  if (!e) throw std::out_of_range("no tensor named '" + name + "'");
  return e->tensor;
}

void ParamStore::copy_from(const ParamStore& other) {
  at::NoGradGuard no_grad;
  for (auto& e : entries_) {
    const at::Tensor& src = other.at(e.name);
    if (!src.sizes().equals(e.tensor.sizes()))
      throw std::invalid_argument("copy_from: shape mismatch for '" + e.name + "'");
    e.tensor.copy_(src);
  }
}

void ParamStore::zero_grad() {
  for (auto& e : entries_) {
    if (e.tensor.grad().defined()) e.tensor.mutable_grad() = at::Tensor();
  }
}

void ParamStore::to(c10::Device device) {
  at::NoGradGuard no_grad;
  for (auto& e : entries_)
    if (e.tensor.device() != device) e.tensor.set_data(e.tensor.to(device));
}

}  // namespace sf::trainer
