// Reference selftest: rebuilds what each fixture's config and notes describe and compares.
//
// The per-dataset `how` attributes and the file's `notes` are read as small expressions in the
// reference's Python call syntax (e.g. `conv2d_resample(x[:, :, :8, :6], w1, f, down=2, padding=0)`,
// `mapping(z, c, truncation_psi=0.5, truncation_cutoff=4)`, `grads = d/dparams sum(logits * grad_probe)`),
// so fixture folders with other shapes, options and output sets work without special cases.
#include "trainer/selftest.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/GradMode.h>
#include <torch/csrc/autograd/autograd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <stdexcept>

#include "data/h5.h"
#include "trainer/augment.h"
#include "trainer/networks.h"
#include "trainer/ops.h"
#include "trainer/penalties.h"
#include "trainer/tensor_io.h"

namespace sf::trainer {
namespace {

// ---- a tiny parser for the reference's Python call expressions -------------------------------

struct Value;
using ValuePtr = std::shared_ptr<Value>;
struct Call {
  std::string fn;
  std::vector<ValuePtr> pos;
  std::map<std::string, ValuePtr> kw;
};
struct Value {
  enum Kind { Number, Bool, None, String, Name, List, CallV } kind = None;
  double num = 0;
  bool is_int = false;
  bool b = false;
  std::string str;                                   // String, Name
  std::vector<std::pair<int64_t, int64_t>> slices;   // Name with [a:b, ...]; INT64_MIN = open end
  std::vector<std::pair<std::string, double>> list;  // List items, optionally named
  Call call;                                         // CallV
};

class Parser {
 public:
  explicit Parser(std::string s) : s_(std::move(s)) {}

  // Parses the first `identifier(` call in the text.
  static bool first_call(const std::string& text, Call& out) {
    static const std::regex re(R"(([A-Za-z_][A-Za-z_0-9]*)\()");
    std::smatch m;
    if (!std::regex_search(text, m, re)) return false;
    Parser p(text);
    p.i_ = static_cast<size_t>(m.position(0));
    out = p.parse_call();
    return true;
  }

 private:
  std::string s_;
  size_t i_ = 0;

  [[noreturn]] void fail(const std::string& what) const {
    throw std::runtime_error("cannot parse '" + s_ + "' at " + std::to_string(i_) + ": " + what);
  }
  void ws() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  bool eat(char c) {
    ws();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!eat(c)) fail(std::string("expected '") + c + "'");
  }
  std::string ident() {
    ws();
    size_t st = i_;
    while (i_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[i_])) || s_[i_] == '_' || s_[i_] == '.')) ++i_;
    if (st == i_) fail("expected a name");
    return s_.substr(st, i_ - st);
  }
  bool peek_number() {
    ws();
    return i_ < s_.size() && (std::isdigit(static_cast<unsigned char>(s_[i_])) || s_[i_] == '-' || s_[i_] == '+' ||
                              (s_[i_] == '.' && i_ + 1 < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_ + 1]))));
  }
  double number(bool* is_int) {
    ws();
    size_t st = i_;
    if (s_[i_] == '-' || s_[i_] == '+') ++i_;
    while (i_ < s_.size() && (std::isdigit(static_cast<unsigned char>(s_[i_])) || s_[i_] == '.' || s_[i_] == 'e' ||
                              s_[i_] == 'E' || ((s_[i_] == '-' || s_[i_] == '+') && (s_[i_ - 1] == 'e' || s_[i_ - 1] == 'E'))))
      ++i_;
    std::string t = s_.substr(st, i_ - st);
    if (is_int) *is_int = t.find_first_of(".eE") == std::string::npos;
    try {
      return std::stod(t);
    } catch (...) {
      fail("bad number '" + t + "'");
    }
  }
  Call parse_call() {
    Call c;
    c.fn = ident();
    expect('(');
    if (eat(')')) return c;
    do {
      ws();
      size_t save = i_;
      if (!peek_number() && i_ < s_.size() && (std::isalpha(static_cast<unsigned char>(s_[i_])) || s_[i_] == '_')) {
        std::string name = ident();
        ws();
        if (i_ < s_.size() && s_[i_] == '=' && (i_ + 1 >= s_.size() || s_[i_ + 1] != '=')) {
          ++i_;
          c.kw[name] = value();
          continue;
        }
        i_ = save;
      }
      c.pos.push_back(value());
    } while (eat(','));
    expect(')');
    return c;
  }
  ValuePtr value() {
    auto v = std::make_shared<Value>();
    ws();
    if (i_ >= s_.size()) fail("unexpected end");
    char ch = s_[i_];
    if (ch == '\'' || ch == '"') {
      ++i_;
      size_t st = i_;
      while (i_ < s_.size() && s_[i_] != ch) ++i_;
      v->kind = Value::String;
      v->str = s_.substr(st, i_ - st);
      ++i_;
      return v;
    }
    if (ch == '[') {
      ++i_;
      v->kind = Value::List;
      if (eat(']')) return v;
      do {
        std::string name;
        ws();
        if (!peek_number()) {
          name = ident();
          expect('=');
        }
        v->list.emplace_back(name, number(nullptr));
      } while (eat(','));
      expect(']');
      return v;
    }
    if (peek_number()) {
      v->kind = Value::Number;
      v->num = number(&v->is_int);
      return v;
    }
    size_t save = i_;
    std::string name = ident();
    if (name == "True" || name == "False") {
      v->kind = Value::Bool;
      v->b = name == "True";
      return v;
    }
    if (name == "None") return v;
    if (eat('(')) {
      i_ = save;
      v->kind = Value::CallV;
      v->call = parse_call();
      return v;
    }
    v->kind = Value::Name;
    v->str = name;
    if (eat('[')) {
      do {
        int64_t a = INT64_MIN, b = INT64_MIN;
        ws();
        if (peek_number()) a = static_cast<int64_t>(number(nullptr));
        if (eat(':')) {
          ws();
          if (peek_number()) b = static_cast<int64_t>(number(nullptr));
        } else {
          b = a + 1;  // a single index keeps the dimension (x[i] is not used by fixtures)
        }
        v->slices.emplace_back(a, b);
      } while (eat(','));
      expect(']');
    }
    return v;
  }
};

// ---- comparison --------------------------------------------------------------------------------

double rel_err(const at::Tensor& ours, const at::Tensor& ref) {
  at::Tensor a = ours.detach().to(at::kDouble).reshape(-1), b = ref.detach().to(at::kDouble).reshape(-1);
  if (a.numel() != b.numel()) return INFINITY;
  double nb = b.norm().item<double>();
  double nd = (a - b).norm().item<double>();
  if (nb == 0) return nd;
  return nd / nb;
}

struct Tally {
  // Our value and the reference's for every compared dataset, in order.
  std::vector<std::pair<std::string, at::Tensor>> ours;
  std::map<std::string, at::Tensor> refs;
  void add(const std::string& name, const at::Tensor& mine, const at::Tensor& ref) {
    if (mine.numel() != ref.numel())
      throw std::runtime_error(name + ": shape " + c10::str(mine.sizes()) + " vs reference " + c10::str(ref.sizes()));
    ours.emplace_back(name, mine.detach().clone());
    refs[name] = ref;
  }
};

// ---- fixture access ------------------------------------------------------------------------------

// 1 + (±1 ulp of float32) per element, with a fixed seed: a model of rounding noise. The seed is
// reset before each file's perturbed pass (reset_ulp_noise), so a file's measured sensitivity does
// not depend on which other files or kinds were checked before it.
constexpr uint64_t kUlpNoiseSeed = 12345;
at::Generator& ulp_generator() {
  static at::Generator gen = at::detail::createCPUGenerator(kUlpNoiseSeed);
  return gen;
}
void reset_ulp_noise() { ulp_generator().set_current_seed(kUlpNoiseSeed); }
at::Tensor ulp_noise(const at::Tensor& like) {
  at::Generator& gen = ulp_generator();
  at::Tensor sign = at::randint(0, 2, like.sizes(), gen, at::TensorOptions().dtype(at::kFloat)) * 2 - 1;
  return 1.0 + sign.to(like.scalar_type()) / double(1 << 23);
}

struct Fixture {
  std::string path;
  h5::Handle file;
  std::string kind, notes;
  nlohmann::json config;

  bool has(const std::string& name) const { return h5::exists(file, name); }
  at::Tensor tensor(const std::string& name) const {
    at::Tensor t = read_tensor(file, name);
    if (name.rfind("inputs/", 0) != 0) return t;
    if (perturb) t = t * ulp_noise(t);
    return float64 ? t.to(at::kDouble) : t;
  }
  std::string how(const std::string& output) const {
    h5::Handle ds(H5Dopen2(file.id(), ("outputs/" + output).c_str(), H5P_DEFAULT), path + ":/outputs/" + output);
    return h5::has_attr(ds, "how") ? h5::read_string_attr(ds, "how") : std::string();
  }
  std::vector<std::string> outputs() const {
    return has("outputs") ? h5::members(h5::open_group(file, "outputs")) : std::vector<std::string>{};
  }
  bool has_grads() const { return has("grads") && !h5::members(h5::open_group(file, "grads")).empty(); }
  at::Tensor input(const std::string& name) const {
    if (!has("inputs/" + name)) throw std::runtime_error(path + ": no input '" + name + "'");
    return tensor("inputs/" + name);
  }
  bool perturb = false;  // inputs and params moved by ±1 float32 ulp per element: measures conditioning
  bool float64 = false;  // recompute in float64 (diagnostic: how far float32 rounding alone moves results)
  void load(ParamStore& store) const {
    load_state(store, h5::open_group(file, "params"));
    if (perturb) {
      at::NoGradGuard no_grad;
      for (const auto& e : store.entries())
        if (e.tensor.is_floating_point()) const_cast<at::Tensor&>(e.tensor).mul_(ulp_noise(e.tensor));
    }
    if (!float64) return;
    for (const auto& e : store.entries()) {
      if (e.tensor.scalar_type() != at::kFloat) continue;
      at::Tensor t = e.tensor;
      t.set_data(t.detach().to(at::kDouble));
    }
  }
};

// Compares every dataset of grads/ with the gradient of `loss` w.r.t. the matching parameter.
void compare_param_grads(const Fixture& fx, const ParamStore& store, const at::Tensor& loss, Tally& t) {
  std::vector<std::string> names = h5::members(h5::open_group(fx.file, "grads"));
  std::vector<at::Tensor> params;
  for (const auto& n : names) {
    const NamedTensor* e = store.find(n);
    if (!e) throw std::runtime_error("grads/" + n + " names no parameter of the network");
    if (!e->tensor.requires_grad()) throw std::runtime_error("grads/" + n + " names a non-trainable tensor");
    params.push_back(e->tensor);
  }
  auto g = torch::autograd::grad({loss}, params, {}, true, false, /*allow_unused=*/true);
  for (size_t i = 0; i < names.size(); ++i) {
    at::Tensor gi = g[i].defined() ? g[i] : at::zeros_like(params[i]);
    t.add("grads/" + names[i], gi, fx.tensor("grads/" + names[i]));
  }
}

// "d/dparams sum(A * B)" or "d/dparams mean(A * K)" in a text: returns {reducer, A, B}.
bool parse_loss(const std::string& text, std::string& reducer, std::string& a, std::string& b) {
  static const std::regex re(R"(d/dparams\s+(sum|mean)\(\s*([A-Za-z_0-9]+)\s*\*\s*(?:inputs/)?([A-Za-z_0-9./]+)\s*\))");
  std::smatch m;
  if (!std::regex_search(text, m, re)) return false;
  reducer = m[1];
  a = m[2];
  b = m[3];
  return true;
}

std::optional<double> find_number(const std::string& text, const std::string& name) {
  std::regex re(name + R"([ =:]+([-+0-9.eE]+))");
  std::smatch m;
  if (std::regex_search(text, m, re)) return std::stod(m[1]);
  return std::nullopt;
}

double num(const ValuePtr& v) {
  if (!v || (v->kind != Value::Number && v->kind != Value::Bool)) throw std::runtime_error("expected a number");
  return v->kind == Value::Bool ? (v->b ? 1 : 0) : v->num;
}

// ---- kind: ops ---------------------------------------------------------------------------------

at::Tensor apply_slices(at::Tensor t, const Value& v) {
  for (size_t d = 0; d < v.slices.size(); ++d) {
    auto [a, b] = v.slices[d];
    int64_t n = t.size(static_cast<int64_t>(d));
    int64_t s = a == INT64_MIN ? 0 : (a < 0 ? a + n : a);
    int64_t e = b == INT64_MIN ? n : (b < 0 ? b + n : b);
    t = t.slice(static_cast<int64_t>(d), s, e);
  }
  return t;
}

ops::Pad to_pad(const ValuePtr& v) {
  if (!v) return {};
  if (v->kind == Value::Number) return ops::Pad::all(static_cast<int>(v->num));
  if (v->kind != Value::List) throw std::runtime_error("padding must be a number or a list");
  std::map<std::string, int> named;
  std::vector<int> vals;
  for (auto& [n, x] : v->list) {
    if (!n.empty()) named[n] = static_cast<int>(x);
    vals.push_back(static_cast<int>(x));
  }
  if (!named.empty()) return {named["x0"], named["x1"], named["y0"], named["y1"]};
  if (vals.size() == 2) return ops::Pad::xy(vals[0], vals[1]);
  if (vals.size() == 4) return {vals[0], vals[1], vals[2], vals[3]};
  throw std::runtime_error("padding list must have 2 or 4 entries");
}

at::Tensor eval_op(const Fixture& fx, const Call& c, const at::Tensor& filter) {
  // Binds positional and keyword arguments to the op's parameter names.
  static const std::map<std::string, std::vector<std::string>> sig = {
      {"upfirdn2d", {"x", "f", "up", "down", "padding", "flip_filter", "gain"}},
      {"upsample2d", {"x", "f", "up", "padding", "flip_filter", "gain"}},
      {"downsample2d", {"x", "f", "down", "padding", "flip_filter", "gain"}},
      {"filter2d", {"x", "f", "padding", "flip_filter", "gain"}},
      {"conv2d_resample", {"x", "w", "f", "up", "down", "padding", "groups", "flip_weight", "flip_filter"}},
      {"bias_act", {"x", "b", "dim", "act", "alpha", "gain", "clamp"}},
      {"minibatch_std", {"x", "group_size", "num_channels"}},
      {"normalize_2nd_moment", {"x", "dim", "eps"}},
  };
  auto it = sig.find(c.fn);
  if (it == sig.end()) throw std::runtime_error("unknown op '" + c.fn + "'");
  std::map<std::string, ValuePtr> a = c.kw;
  for (size_t i = 0; i < c.pos.size() && i < it->second.size(); ++i) a[it->second[i]] = c.pos[i];
  auto tensor_arg = [&](const std::string& n) -> at::Tensor {
    auto v = a.count(n) ? a[n] : nullptr;
    if (!v || v->kind == Value::None) return at::Tensor();
    if (v->kind != Value::Name) throw std::runtime_error(n + " must name a tensor");
    if (fx.has("inputs/" + v->str)) return apply_slices(fx.tensor("inputs/" + v->str), *v);
    if (v->str == "f") return filter;
    throw std::runtime_error("no input tensor '" + v->str + "'");
  };
  auto int_arg = [&](const std::string& n, int def) { return a.count(n) ? static_cast<int>(num(a[n])) : def; };
  auto dbl_arg = [&](const std::string& n, double def) { return a.count(n) ? num(a[n]) : def; };
  auto opt_arg = [&](const std::string& n) -> std::optional<double> {
    if (!a.count(n) || a[n]->kind == Value::None) return std::nullopt;
    return num(a[n]);
  };
  at::Tensor x = tensor_arg("x");
  if (c.fn == "upfirdn2d")
    return ops::upfirdn2d(x, tensor_arg("f"), int_arg("up", 1), int_arg("down", 1), to_pad(a["padding"]),
                          int_arg("flip_filter", 0), dbl_arg("gain", 1));
  if (c.fn == "upsample2d")
    return ops::upsample2d(x, tensor_arg("f"), int_arg("up", 2), to_pad(a["padding"]), int_arg("flip_filter", 0),
                           dbl_arg("gain", 1));
  if (c.fn == "downsample2d")
    return ops::downsample2d(x, tensor_arg("f"), int_arg("down", 2), to_pad(a["padding"]), int_arg("flip_filter", 0),
                             dbl_arg("gain", 1));
  if (c.fn == "filter2d")
    return ops::filter2d(x, tensor_arg("f"), to_pad(a["padding"]), int_arg("flip_filter", 0), dbl_arg("gain", 1));
  if (c.fn == "conv2d_resample")
    return ops::conv2d_resample(x, tensor_arg("w"), tensor_arg("f"), int_arg("up", 1), int_arg("down", 1),
                                to_pad(a["padding"]), int_arg("groups", 1), int_arg("flip_weight", 1),
                                int_arg("flip_filter", 0));
  if (c.fn == "bias_act") {
    std::string act = a.count("act") ? a["act"]->str : "linear";
    return ops::bias_act(x, tensor_arg("b"), int_arg("dim", 1), ops::parse_act(act), opt_arg("alpha"),
                         opt_arg("gain"), opt_arg("clamp"));
  }
  if (c.fn == "minibatch_std") return ops::minibatch_std(x, int_arg("group_size", 4), int_arg("num_channels", 1));
  return ops::normalize_2nd_moment(x, int_arg("dim", 1), dbl_arg("eps", 1e-8));
}

void check_ops(const Fixture& fx, Tally& t) {
  std::vector<float> taps = {1, 3, 3, 1};
  static const std::regex filt(R"(\[([-0-9., ]+)\]\s*filter)");
  std::smatch m;
  if (std::regex_search(fx.notes, m, filt)) {
    taps.clear();
    std::string list = m[1];
    std::regex num_re(R"([-0-9.]+)");
    for (auto it = std::sregex_iterator(list.begin(), list.end(), num_re); it != std::sregex_iterator(); ++it)
      taps.push_back(std::stof(it->str()));
  }
  at::Tensor f = ops::setup_filter(taps);
  for (const auto& out : fx.outputs()) {
    Call c;
    if (!Parser::first_call(fx.how(out), c))
      throw std::runtime_error("outputs/" + out + ": no call in its 'how' attribute");
    t.add("outputs/" + out, eval_op(fx, c, f), fx.tensor("outputs/" + out));
  }
}

// ---- kinds: generator, path_length ---------------------------------------------------------------

at::Tensor optional_input(const Fixture& fx, const std::string& name) {
  if (!fx.has("inputs/" + name)) return at::Tensor();
  at::Tensor t = fx.tensor("inputs/" + name);
  return t.numel() == 0 ? at::Tensor() : t;
}

struct GenEval {
  const Fixture& fx;
  Generator& G;
  std::map<std::string, at::Tensor> memo;

  bool train_mode(const std::string& how) const { return how.rfind("train mode", 0) == 0; }

  // Set when the file stored w_avg after its own train-mode mapping call (see recover_w_avg).
  at::Tensor w_avg_before;

  void reset(bool train) {
    fx.load(G.state());
    if (w_avg_before.defined()) {
      at::NoGradGuard no_grad;
      G.state().at("mapping.w_avg").copy_(w_avg_before);
    }
    G.train(train);
  }

  // A fixture whose params/mapping.w_avg is bit-for-bit its "w_avg after one train-mode mapping
  // call" output saved the buffer after that call (the saved state aliased the live buffer). The
  // eval-mode outputs were then computed from the value before the update, which the documented
  // update w_after = lerp(mean(w), w_before, beta) determines: w_before = (w_after - (1-beta) mean(w)) / beta.
  void recover_w_avg() {
    if (!G.config().w_avg_beta) return;
    for (const auto& out : fx.outputs()) {
      std::string how = fx.how(out);
      size_t at_pos = how.find("w_avg after");
      if (at_pos == std::string::npos) continue;
      at::Tensor stored = fx.tensor("params/mapping.w_avg"), after = fx.tensor("outputs/" + out);
      if (!at::equal(stored, after)) return;
      Call c;
      if (!Parser::first_call(how.substr(at_pos), c)) return;
      reset(false);
      at::NoGradGuard no_grad;
      at::Tensor w = eval_call(c, false).select(1, 0);
      double beta = *G.config().w_avg_beta;
      w_avg_before = (stored - (1 - beta) * w.mean(0)) / beta;
      std::printf("      note: %s stores w_avg after its train-mode mapping call; using the recovered value before it\n",
                  fx.path.c_str());
      return;
    }
  }

  at::Tensor eval_call(const Call& c, bool train) {
    if (c.fn == "mapping") {
      at::Tensor z = arg_tensor(c, 0, train), cc = arg_tensor(c, 1, train);
      double psi = c.kw.count("truncation_psi") ? num(c.kw.at("truncation_psi")) : 1.0;
      int cutoff = c.kw.count("truncation_cutoff") && c.kw.at("truncation_cutoff")->kind != Value::None
                       ? static_cast<int>(num(c.kw.at("truncation_cutoff")))
                       : -1;
      return G.mapping(z, cc, psi, cutoff);
    }
    if (c.fn == "synthesis") {
      at::Tensor ws = arg_tensor(c, 0, train);
      NoiseMode mode = c.kw.count("noise_mode") ? parse_noise_mode(c.kw.at("noise_mode")->str) : NoiseMode::Random;
      if (mode == NoiseMode::Random) throw std::runtime_error("random noise cannot be compared with a fixture");
      return G.synthesis(ws, mode);
    }
    throw std::runtime_error("unknown generator call '" + c.fn + "'");
  }

  at::Tensor arg_tensor(const Call& c, size_t i, bool train) {
    if (i >= c.pos.size()) throw std::runtime_error(c.fn + ": missing argument " + std::to_string(i));
    const Value& v = *c.pos[i];
    if (v.kind == Value::CallV) return eval_call(v.call, train);
    if (v.kind != Value::Name) throw std::runtime_error(c.fn + ": argument must be a name or a call");
    if (fx.has("inputs/" + v.str)) return optional_input(fx, v.str);
    return output(v.str).detach();
  }

  at::Tensor output(const std::string& name) {
    if (memo.count(name)) return memo[name];
    std::string how = fx.how(name);
    bool train = train_mode(how);
    reset(train);
    at::Tensor r;
    if (how.find("w_avg after") != std::string::npos) {
      Call c;
      if (!Parser::first_call(how.substr(how.find("w_avg after")), c))
        throw std::runtime_error("outputs/" + name + ": no mapping call");
      eval_call(c, train);
      r = G.state().at("mapping.w_avg").detach().clone();
    } else {
      Call c;
      if (!Parser::first_call(how, c)) throw std::runtime_error("outputs/" + name + ": no call in its 'how'");
      r = eval_call(c, train);
    }
    memo[name] = r;
    return r;
  }
};

GeneratorConfig gen_config(const nlohmann::json& j) { return GeneratorConfig::from_json(j); }

void check_generator(const Fixture& fx, Tally& t) {
  Generator G(gen_config(fx.config));
  GenEval ev{fx, G, {}, {}};
  ev.recover_w_avg();
  std::string reducer, a, b;
  bool grads = fx.has_grads() && parse_loss(fx.notes, reducer, a, b);
  if (fx.has_grads() && !grads) throw std::runtime_error("grads/ present but the notes name no loss");
  for (const auto& out : fx.outputs()) {
    if (grads && out == a) continue;  // computed below with its graph
    t.add("outputs/" + out, ev.output(out), fx.tensor("outputs/" + out));
  }
  if (grads) {
    at::Tensor y = ev.output(a);  // evaluated last, so the graph belongs to freshly loaded params
    ev.memo.erase(a);
    y = ev.output(a);
    t.add("outputs/" + a, y, fx.tensor("outputs/" + a));
    at::Tensor probe = fx.input(b);
    at::Tensor loss = reducer == "sum" ? (y * probe).sum() : (y * probe).mean();
    compare_param_grads(fx, G.state(), loss, t);
  }
}

void check_path_length(const Fixture& fx, Tally& t) {
  Generator G(gen_config(fx.config));
  fx.load(G.state());
  G.train(true);
  double decay = find_number(fx.notes, "pl_decay").value_or(0.01);
  double weight = find_number(fx.notes, "pl_weight").value_or(2.0);
  NoiseMode mode = fx.notes.find("noise const") != std::string::npos ? NoiseMode::Const
                   : fx.notes.find("noise none") != std::string::npos ? NoiseMode::None
                                                                       : NoiseMode::Const;
  at::Tensor ws = G.mapping(fx.input("z"), optional_input(fx, "c"), 1, -1, /*skip_w_avg_update=*/true);
  auto r = path_length(G, ws, fx.input("pl_noise"), fx.input("pl_mean_in"), decay, mode);
  std::map<std::string, at::Tensor> mine = {{"pl_lengths", r.lengths}, {"pl_mean_out", r.pl_mean}, {"pl_penalty", r.penalty}};
  for (const auto& out : fx.outputs()) {
    if (!mine.count(out)) throw std::runtime_error("unknown path_length output '" + out + "'");
    t.add("outputs/" + out, mine[out], fx.tensor("outputs/" + out));
  }
  if (fx.has_grads()) compare_param_grads(fx, G.state(), (r.penalty * weight).mean(), t);
}

// ---- kinds: discriminator, r1 --------------------------------------------------------------------

void check_discriminator(const Fixture& fx, Tally& t) {
  Discriminator D(DiscriminatorConfig::from_json(fx.config));
  fx.load(D.state());
  at::Tensor img = fx.input("img").requires_grad_(true);
  at::Tensor logits = D.forward(img, optional_input(fx, "c"));
  std::string reducer, a, b;
  at::Tensor probe = fx.has("inputs/grad_probe") ? fx.input("grad_probe") : at::ones_like(logits);
  if (parse_loss(fx.notes, reducer, a, b)) probe = fx.input(b);
  at::Tensor loss = (logits * probe).sum();
  for (const auto& out : fx.outputs()) {
    std::string how = fx.how(out);
    if (out == "logits" || how.find("D(") != std::string::npos) {
      t.add("outputs/" + out, logits, fx.tensor("outputs/" + out));
    } else if (how.find("/ d img") != std::string::npos || out == "grad_img") {
      auto g = torch::autograd::grad({loss}, {img}, {}, true, false);
      t.add("outputs/" + out, g[0], fx.tensor("outputs/" + out));
    } else {
      throw std::runtime_error("unknown discriminator output '" + out + "'");
    }
  }
  if (fx.has_grads()) compare_param_grads(fx, D.state(), loss, t);
}

void check_r1(const Fixture& fx, Tally& t) {
  Discriminator D(DiscriminatorConfig::from_json(fx.config));
  fx.load(D.state());
  double gamma = fx.config.value("r1_gamma", 10.0);
  auto r = r1_penalty(D, fx.input("img"), optional_input(fx, "c"));
  std::map<std::string, at::Tensor> mine = {{"logits", r.logits}, {"r1_penalty", r.penalty}};
  for (const auto& out : fx.outputs()) {
    if (!mine.count(out)) throw std::runtime_error("unknown r1 output '" + out + "'");
    t.add("outputs/" + out, mine[out], fx.tensor("outputs/" + out));
  }
  if (fx.has_grads()) compare_param_grads(fx, D.state(), (r.penalty * (gamma / 2)).mean(), t);
}

// ---- kind: augment -----------------------------------------------------------------------------

// Every output is the pipe's forward pass with a debug percentile named in its `how` (all enabled
// transforms at that percentile), which makes the result independent of the random draws.
void check_augment(const Fixture& fx, Tally& t) {
  AugmentPipe pipe(AugmentConfig::from_json(fx.config.value("multipliers", nlohmann::json::object())));
  const at::Tensor img = fx.input("img");
  for (const auto& out : fx.outputs()) {
    const std::string how = fx.how(out);
    std::optional<double> q = find_number(how, "debug_percentile");
    if (!q)
      throw std::runtime_error("outputs/" + out + ": no debug_percentile in its 'how' (random draws cannot be compared)");
    if (pipe.config().noise > 0) throw std::runtime_error("additive noise is random even with a debug percentile");
    pipe.set_p(find_number(how, R"(\bp)").value_or(fx.config.value("p", 1.0)));
    at::Generator gen = at::detail::createCPUGenerator(0);
    t.add("outputs/" + out, pipe.forward(img, gen, q), fx.tensor("outputs/" + out));
  }
}

using Handler = std::function<void(const Fixture&, Tally&)>;
const std::map<std::string, Handler>& handlers() {
  static const std::map<std::string, Handler> h = {
      {"ops", check_ops},
      {"generator", check_generator},
      {"path_length", check_path_length},
      {"discriminator", check_discriminator},
      {"r1", check_r1},
      {"augment", check_augment},
  };
  return h;
}

std::map<std::string, SelftestKindHandler>& registered_handlers() {
  static std::map<std::string, SelftestKindHandler> h;
  return h;
}

// One file of a registered kind: the handler compares, we judge and print as for built-in kinds.
bool check_registered(const SelftestKindHandler& handler, const Fixture& fx, const std::string& rel,
                      const SelftestOptions& opts) {
  std::vector<SelftestComparison> cmp;
  try {
    SelftestFile f;
    f.path = fx.path;
    f.kind = fx.kind;
    f.notes = h5::has_attr(fx.file, "notes") ? h5::read_string_attr(fx.file, "notes") : "";
    f.config_json = h5::has_attr(fx.file, "config") ? h5::read_string_attr(fx.file, "config") : "{}";
    f.float64 = opts.float64;
    cmp = handler(f);
    if (cmp.empty()) throw std::runtime_error("nothing to compare");
  } catch (const std::exception& e) {
    std::printf("FAIL  %-40s %-13s %s\n", rel.c_str(), fx.kind.c_str(), e.what());
    return false;
  }
  bool ok = true;
  double worst = -1, worst_ratio = -1;
  std::string where;
  for (const auto& c : cmp) {
    double tol = c.tolerance > 0 ? c.tolerance : opts.tolerance;
    bool good = c.rel_err <= tol;
    ok = ok && good;
    if (opts.verbose)
      std::printf("    %-56s %.2e  (tolerance %.0e)%s\n", c.name.c_str(), c.rel_err, tol, good ? "" : "  <-- exceeds");
    if (!(c.rel_err / tol <= worst_ratio)) {
      worst_ratio = c.rel_err / tol;
      worst = c.rel_err;
      where = c.name;
    }
  }
  std::printf("%s  %-40s %-13s %3zu compared, max rel err %.2e (%s)\n", ok ? "ok  " : "FAIL", rel.c_str(),
              fx.kind.c_str(), cmp.size(), worst, where.c_str());
  return ok;
}

}  // namespace

std::vector<std::string> selftest_kinds() {
  std::vector<std::string> k;
  for (const auto& [name, _] : handlers()) k.push_back(name);
  for (const auto& [name, _] : registered_handlers())
    if (!handlers().count(name)) k.push_back(name);
  return k;
}

void register_selftest_kind(const std::string& kind, SelftestKindHandler handler) {
  if (handlers().count(kind)) throw std::invalid_argument("selftest kind '" + kind + "' is built in");
  registered_handlers()[kind] = std::move(handler);
}

int run_selftest(const SelftestOptions& opts) {
  namespace fs = std::filesystem;
  if (opts.threads > 0) at::set_num_threads(opts.threads);
  try {
    ops::set_conv_cpu_path(ops::parse_conv_cpu_path(opts.conv, "--conv"));
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "selftest: %s\n", e.what());
    return 1;
  }
  if (!fs::is_directory(opts.fixtures_dir)) {
    std::fprintf(stderr, "selftest: %s is not a folder\n", opts.fixtures_dir.c_str());
    return 1;
  }
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(opts.fixtures_dir))
    if (e.is_regular_file() && e.path().extension() == ".h5") files.push_back(e.path());
  std::sort(files.begin(), files.end());
  int failed = 0, passed = 0, skipped = 0;
  for (const auto& p : files) {
    std::string rel = fs::relative(p, opts.fixtures_dir).string();
    Fixture fx;
    fx.path = p.string();
    fx.float64 = opts.float64;
    try {
      fx.file = h5::open_file(fx.path);
      fx.kind = h5::has_attr(fx.file, "kind") ? h5::read_string_attr(fx.file, "kind") : "";
    } catch (const std::exception& e) {
      std::printf("FAIL  %-40s cannot read: %s\n", rel.c_str(), e.what());
      ++failed;
      continue;
    }
    auto h = handlers().find(fx.kind);
    bool wanted = opts.kinds.empty() || std::find(opts.kinds.begin(), opts.kinds.end(), fx.kind) != opts.kinds.end();
    if (auto r = registered_handlers().find(fx.kind); h == handlers().end() && r != registered_handlers().end() && wanted) {
      check_registered(r->second, fx, rel, opts) ? ++passed : ++failed;
      continue;
    }
    if (h == handlers().end() || !wanted) {
      std::printf("--    %-40s kind '%s' not checked here\n", rel.c_str(), fx.kind.c_str());
      ++skipped;
      continue;
    }
    Tally t, tp;
    try {
      fx.notes = h5::has_attr(fx.file, "notes") ? h5::read_string_attr(fx.file, "notes") : "";
      fx.config = nlohmann::json::parse(h5::has_attr(fx.file, "config") ? h5::read_string_attr(fx.file, "config") : "{}");
      h->second(fx, t);
      if (t.ours.empty()) throw std::runtime_error("nothing to compare");
      if (!opts.strict) {
        fx.perturb = true;
        reset_ulp_noise();
        h->second(fx, tp);
        fx.perturb = false;
      }
    } catch (const std::exception& e) {
      std::printf("FAIL  %-40s %-13s %s\n", rel.c_str(), fx.kind.c_str(), e.what());
      ++failed;
      continue;
    }
    // A dataset passes when its error is within the tolerance, or, for an ill-conditioned result,
    // within kConditioningFactor times the change that moving every input and parameter by ±1 ulp
    // causes in our own result (float32 rounding alone moves such results by that much; --strict
    // disables this allowance).
    constexpr double kConditioningFactor = 4.0;
    std::map<std::string, at::Tensor> perturbed(tp.ours.begin(), tp.ours.end());
    double worst = -1, worst_sens = 0, worst_ratio = -1;
    std::string where;
    int over_tol = 0;
    bool ok = true;
    for (const auto& [name, mine] : t.ours) {
      double err = rel_err(mine, t.refs[name]);
      double sens = perturbed.count(name) ? rel_err(perturbed[name], mine) : 0.0;
      double allowed = std::max(opts.tolerance, kConditioningFactor * sens);
      if (err > opts.tolerance) ++over_tol;
      if (!(err <= allowed)) ok = false;
      if (opts.verbose)
        std::printf("    %-56s %.2e  (±1 ulp sensitivity %.1e)%s\n", name.c_str(), err, sens,
                    err <= allowed ? "" : "  <-- exceeds");
      double ratio = err / allowed;
      if (ratio > worst_ratio) {
        worst_ratio = ratio;
        worst = err;
        worst_sens = sens;
        where = name;
      }
    }
    std::printf("%s  %-40s %-13s %3zu compared, max rel err %.2e (%s)", ok ? "ok  " : "FAIL", rel.c_str(),
                fx.kind.c_str(), t.ours.size(), worst, where.c_str());
    if (over_tol > 0 && opts.strict)
      std::printf("; %d above %.0e (--strict: no allowance for ill-conditioned results)", over_tol, opts.tolerance);
    else if (over_tol > 0)
      std::printf("; %d above %.0e, ill-conditioned (±1 ulp on inputs and params moves it by %.1e)", over_tol,
                  opts.tolerance, worst_sens);
    std::printf("\n");
    ok ? ++passed : ++failed;
  }
  std::printf("selftest: %d passed, %d failed, %d not checked (tolerance %.0e)\n", passed, failed, skipped,
              opts.tolerance);
  return failed == 0 && passed > 0 ? 0 : 1;
}

}  // namespace sf::trainer
