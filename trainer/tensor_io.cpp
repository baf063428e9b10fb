#include "trainer/tensor_io.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/GradMode.h>

#include <set>
#include <stdexcept>

namespace sf::trainer {

at::Tensor read_tensor(const h5::Handle& loc, const std::string& name, at::ScalarType dtype) {
  std::vector<int64_t> shape;
  switch (dtype) {
    case at::kFloat: {
      auto v = h5::read_f32(loc, name, &shape);
      return at::from_blob(v.data(), shape, at::kFloat).clone();
    }
    case at::kDouble: {
      auto v = h5::read_f64(loc, name, &shape);
      return at::from_blob(v.data(), shape, at::kDouble).clone();
    }
    case at::kLong: {
      auto v = h5::read_i64(loc, name, &shape);
      return at::from_blob(v.data(), shape, at::kLong).clone();
    }
    case at::kByte: {
      auto v = h5::read_u8(loc, name, &shape);
      return at::from_blob(v.data(), shape, at::kByte).clone();
    }
    default:
      throw std::invalid_argument("read_tensor: unsupported dtype for " + name);
  }
}

void write_tensor(const h5::Handle& loc, const std::string& name, const at::Tensor& t_in) {
  at::Tensor t = t_in.detach().cpu().contiguous();
  std::vector<int64_t> shape(t.sizes().begin(), t.sizes().end());
  switch (t.scalar_type()) {
    case at::kFloat: h5::write_f32(loc, name, t.data_ptr<float>(), shape); break;
    case at::kDouble: h5::write_f64(loc, name, t.data_ptr<double>(), shape); break;
    case at::kLong: h5::write_i64(loc, name, t.data_ptr<int64_t>(), shape); break;
    case at::kByte: h5::write_u8(loc, name, t.data_ptr<uint8_t>(), shape); break;
    default: {
      at::Tensor f = t.to(at::kFloat).contiguous();
      h5::write_f32(loc, name, f.data_ptr<float>(), shape);
    }
  }
}

void save_state(const ParamStore& store, const h5::Handle& group) {
  for (const auto& e : store.entries()) write_tensor(group, e.name, e.tensor);
}

std::string LoadReport::summary() const {
  std::string s;
  auto add = [&](const char* what, const std::vector<std::string>& keys) {
    for (const auto& k : keys) s += std::string(s.empty() ? "" : "; ") + what + " " + k;
  };
  add("missing", missing);
  add("unexpected", unexpected);
  add("shape mismatch", mismatched);
  return s;
}

LoadReport load_state(ParamStore& store, const h5::Handle& group, bool partial) {
  LoadReport r;
  std::vector<std::string> names = h5::members(group);
  std::set<std::string> in_file;
  for (const auto& n : names)
    if (h5::is_dataset(group, n)) in_file.insert(n);
  std::vector<std::pair<const NamedTensor*, std::string>> to_copy;
  for (const auto& e : store.entries()) {
    if (!in_file.count(e.name)) {
      r.missing.push_back(e.name);
      continue;
    }
    std::vector<int64_t> fshape = h5::dataset_shape(group, e.name);
    std::vector<int64_t> nshape(e.tensor.sizes().begin(), e.tensor.sizes().end());
    if (fshape != nshape) {
      r.mismatched.push_back(e.name + ": file " + h5::shape_str(fshape) + " vs network " + h5::shape_str(nshape));
      continue;
    }
    to_copy.emplace_back(&e, e.name);
  }
  for (const auto& n : in_file)
    if (!store.find(n)) r.unexpected.push_back(n);
  if (!partial && !r.clean()) throw std::runtime_error(group.where() + ": state does not match the network: " + r.summary());
  at::NoGradGuard no_grad;
  for (auto& [entry, name] : to_copy) {
    at::Tensor src = read_tensor(group, name, entry->tensor.scalar_type());
    const_cast<at::Tensor&>(entry->tensor).copy_(src);
  }
  return r;
}

}  // namespace sf::trainer
