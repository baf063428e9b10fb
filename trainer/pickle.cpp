#include "trainer/pickle.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <locale>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <map>
#include <sstream>
#include <unordered_map>

namespace sf::pickle {
namespace {

// ---- the allow-list --------------------------------------------------------------------------
// Every name a file may mention. Callables are emulated below (Reader::call); "value" entries
// are inert names that only appear as data (a storage's type inside its persistent id, a torch
// dtype attribute).
enum class G {
  OrderedDict, Set, FrozenSet, CodecsEncode,
  RebuildTensor, RebuildTensorV2, RebuildParameter, RebuildParameterWithState, LoadFromBytes, TorchSize,
  ReconstructPersistent, EasyDict,
  NumpyScalar, NumpyDtype, NumpyReconstruct, NumpyNdarray,
  StorageType, TorchDtype,
};

struct Allowed {
  G kind;
  const char* dtype;  // StorageType/TorchDtype: element type
};

const std::map<std::string, Allowed>& allow_list() {
  static const std::map<std::string, Allowed> table = {
      {"collections.OrderedDict", {G::OrderedDict, nullptr}},
      {"builtins.set", {G::Set, nullptr}},
      {"builtins.frozenset", {G::FrozenSet, nullptr}},
      {"_codecs.encode", {G::CodecsEncode, nullptr}},
      {"torch._utils._rebuild_tensor", {G::RebuildTensor, nullptr}},
      {"torch._utils._rebuild_tensor_v2", {G::RebuildTensorV2, nullptr}},
      {"torch._utils._rebuild_parameter", {G::RebuildParameter, nullptr}},
      {"torch._utils._rebuild_parameter_with_state", {G::RebuildParameterWithState, nullptr}},
      {"torch.storage._load_from_bytes", {G::LoadFromBytes, nullptr}},
      {"torch.Size", {G::TorchSize, nullptr}},
      {"torch_utils.persistence._reconstruct_persistent_obj", {G::ReconstructPersistent, nullptr}},
      {"dnnlib.util.EasyDict", {G::EasyDict, nullptr}},
      {"dnnlib.EasyDict", {G::EasyDict, nullptr}},
      {"numpy.core.multiarray.scalar", {G::NumpyScalar, nullptr}},
      {"numpy.dtype", {G::NumpyDtype, nullptr}},
      {"numpy.core.multiarray._reconstruct", {G::NumpyReconstruct, nullptr}},
      {"numpy.ndarray", {G::NumpyNdarray, nullptr}},
      {"torch.FloatStorage", {G::StorageType, "float32"}},
      {"torch.DoubleStorage", {G::StorageType, "float64"}},
      {"torch.HalfStorage", {G::StorageType, "float16"}},
      {"torch.BFloat16Storage", {G::StorageType, "bfloat16"}},
      {"torch.LongStorage", {G::StorageType, "int64"}},
      {"torch.IntStorage", {G::StorageType, "int32"}},
      {"torch.ShortStorage", {G::StorageType, "int16"}},
      {"torch.CharStorage", {G::StorageType, "int8"}},
      {"torch.ByteStorage", {G::StorageType, "uint8"}},
      {"torch.BoolStorage", {G::StorageType, "bool"}},
      {"torch.UntypedStorage", {G::StorageType, "uint8"}},
      {"torch.float32", {G::TorchDtype, "float32"}},
      {"torch.float64", {G::TorchDtype, "float64"}},
      {"torch.float16", {G::TorchDtype, "float16"}},
      {"torch.bfloat16", {G::TorchDtype, "bfloat16"}},
      {"torch.int64", {G::TorchDtype, "int64"}},
      {"torch.int32", {G::TorchDtype, "int32"}},
      {"torch.uint8", {G::TorchDtype, "uint8"}},
      {"torch.bool", {G::TorchDtype, "bool"}},
  };
  return table;
}

// Old spellings of the same modules (Python 2 pickles, numpy 2).
std::string canonical_module(const std::string& m) {
  if (m == "__builtin__") return "builtins";
  if (m == "copy_reg") return "copyreg";
  if (m == "numpy._core.multiarray") return "numpy.core.multiarray";
  return m;
}

std::string hex_byte(int op) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "0x%02x", op & 0xff);
  return buf;
}

// numpy type strings ("f8", "<f4", "u1", "b1") to dtype names.
std::string numpy_dtype_name(std::string t, char* order) {
  char bo = '=';
  if (!t.empty() && (t[0] == '<' || t[0] == '>' || t[0] == '|' || t[0] == '=')) {
    bo = t[0];
    t = t.substr(1);
  }
  static const std::map<std::string, std::string> names = {
      {"f8", "float64"}, {"f4", "float32"}, {"f2", "float16"}, {"i8", "int64"}, {"i4", "int32"},
      {"i2", "int16"},   {"i1", "int8"},    {"u8", "uint64"},  {"u4", "uint32"}, {"u2", "uint16"},
      {"u1", "uint8"},   {"b1", "bool"},    {"float64", "float64"}, {"float32", "float32"},
      {"int64", "int64"}, {"int32", "int32"}, {"uint8", "uint8"}, {"bool", "bool"}};
  auto it = names.find(t);
  if (it == names.end()) return "";
  if (order) *order = (bo == '=') ? '<' : bo;
  return it->second;
}

template <typename T>
T load_le(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;  // the hosts styleforge runs on are little-endian (checked in load())
}

double half_to_double(uint16_t h) {
  const int sign = h >> 15, exp = (h >> 10) & 0x1f, frac = h & 0x3ff;
  double v;
  if (exp == 0) v = std::ldexp(frac, -24);
  else if (exp == 31) v = frac ? std::nan("") : INFINITY;
  else v = std::ldexp(frac + 1024, exp - 25);
  return sign ? -v : v;
}

// One numeric element of `dtype` (byte order `bo`) as a double/int Value.
ValuePtr scalar_from_bytes(const std::string& dtype, char bo, const uint8_t* p, size_t n, const std::string& what) {
  if (n != dtype_size(dtype)) throw Error(what + ": numpy scalar of " + dtype + " has " + std::to_string(n) + " bytes");
  uint8_t tmp[8];
  std::memcpy(tmp, p, n);
  if (bo == '>') std::reverse(tmp, tmp + n);
  ValuePtr v;
  if (dtype == "float64" || dtype == "float32" || dtype == "float16") {
    v = Value::make(Kind::Float);
    v->f = dtype == "float64" ? load_le<double>(tmp) : dtype == "float32" ? load_le<float>(tmp)
                                                                        : half_to_double(load_le<uint16_t>(tmp));
  } else if (dtype == "bool") {
    v = Value::make(Kind::Bool);
    v->b = tmp[0] != 0;
  } else {
    v = Value::make(Kind::Int);
    if (dtype == "int64" || dtype == "uint64") v->i = load_le<int64_t>(tmp);
    else if (dtype == "int32") v->i = load_le<int32_t>(tmp);
    else if (dtype == "uint32") v->i = load_le<uint32_t>(tmp);
    else if (dtype == "int16") v->i = load_le<int16_t>(tmp);
    else if (dtype == "uint16") v->i = load_le<uint16_t>(tmp);
    else if (dtype == "int8") v->i = static_cast<int8_t>(tmp[0]);
    else v->i = tmp[0];
  }
  return v;
}

// The storages of one legacy torch.save blob, by key, filled after the object pickle.
struct LegacyStorages {
  std::map<std::string, ValuePtr> roots;
  struct View {
    ValuePtr view, root;
    int64_t offset, size;
  };
  std::vector<View> views;
};

ValuePtr load_legacy_blob(const Bytes& blob, const LoadOptions& opts, int nest);

// Values made while a load runs on this thread (weak references; see Value::make).
thread_local std::vector<std::weak_ptr<Value>>* t_made = nullptr;

// ---- the opcode interpreter ------------------------------------------------------------------
class Reader {
 public:
  Reader(std::shared_ptr<const std::string> buf, size_t begin, size_t end, const LoadOptions& opts, int nest,
         LegacyStorages* legacy)
      : buf_(std::move(buf)), pos_(begin), end_(end), opts_(opts), nest_(nest), legacy_(legacy) {
    outer_made_ = t_made;
    t_made = &made_;
  }

  ValuePtr run();
  size_t pos() const { return pos_; }
  // Values that contain themselves (through DUP, memo references, BUILD) would be shared_ptr
  // cycles that are never freed: refused after a successful parse, and broken when a parse fails.
  void check_acyclic() {
    std::vector<ValuePtr> keep;
    if (reachable(keep)) fail("a value contains itself (cyclic structures are not supported)");
    ok_ = true;
  }
  ~Reader() {
    t_made = outer_made_;
    if (outer_made_) outer_made_->insert(outer_made_->end(), made_.begin(), made_.end());  // nested blob: the outer load owns them
    if (ok_ || std::uncaught_exceptions() == 0 || outer_made_) return;
    std::vector<ValuePtr> keep;
    if (!reachable(keep)) return;
    for (auto& n : keep) {  // we are failing anyway: empty every container, which frees the cycles
      n->items.clear();
      n->entries.clear();
      n->storage.reset();
      n->state.reset();
    }
  }

 private:
  [[noreturn]] void fail(const std::string& msg) const {
    throw Error(opts_.what + ": " + msg + " (byte " + std::to_string(op_pos_) + ")");
  }
  const uint8_t* take(size_t n) {
    if (n > end_ - pos_) fail("truncated pickle: opcode " + hex_byte(op_) + " needs " + std::to_string(n) + " bytes");
    const uint8_t* p = reinterpret_cast<const uint8_t*>(buf_->data()) + pos_;
    pos_ += n;
    return p;
  }
  uint8_t u8() { return *take(1); }
  uint64_t le(size_t n) {
    const uint8_t* p = take(n);
    uint64_t v = 0;
    for (size_t k = 0; k < n; ++k) v |= static_cast<uint64_t>(p[k]) << (8 * k);
    return v;
  }
  // A decimal integer of the text opcodes (INT, LONG); anything else fails with `error`.
  int64_t text_int(const std::string& s, const std::string& error) const {
    errno = 0;
    char* e = nullptr;
    const long long v = std::strtoll(s.c_str(), &e, 10);
    if (errno || e == s.c_str() || *e) fail(error);
    return v;
  }

  std::string line() {
    const char* base = buf_->data();
    const void* nl = std::memchr(base + pos_, '\n', end_ - pos_);
    if (!nl) fail("truncated pickle: opcode " + hex_byte(op_) + " has no end of line");
    size_t n = static_cast<const char*>(nl) - (base + pos_);
    std::string s(base + pos_, n);
    pos_ += n + 1;
    if (!s.empty() && s.back() == '\r') s.pop_back();
    return s;
  }
  Bytes view(size_t n) {
    take(n);
    return Bytes{buf_, pos_ - n, n};
  }
  ValuePtr pop() {
    if (stack_.size() <= base()) fail("stack underflow at opcode " + hex_byte(op_));
    ValuePtr v = stack_.back();
    stack_.pop_back();
    return v;
  }
  ValuePtr& top() {
    if (stack_.size() <= base()) fail("stack underflow at opcode " + hex_byte(op_));
    return stack_.back();
  }
  size_t base() const { return marks_.empty() ? 0 : marks_.back(); }
  std::vector<ValuePtr> pop_mark() {
    if (marks_.empty()) fail("opcode " + hex_byte(op_) + " without a MARK");
    size_t m = marks_.back();
    marks_.pop_back();
    std::vector<ValuePtr> items(stack_.begin() + m, stack_.end());
    stack_.resize(m);
    return items;
  }
  void push(ValuePtr v) { stack_.push_back(std::move(v)); }
  void memo_put(uint64_t idx) {
    if (stack_.empty()) fail("memo store with an empty stack");
    memo_[idx] = stack_.back();
  }
  ValuePtr memo_get(uint64_t idx) {
    auto it = memo_.find(idx);
    if (it == memo_.end()) fail("memo key " + std::to_string(idx) + " not defined");
    return it->second;
  }

  ValuePtr make_int(int64_t v) {
    auto r = Value::make(Kind::Int);
    r->i = v;
    return r;
  }
  ValuePtr make_str(std::string s) {
    auto r = Value::make(Kind::Str);
    r->s = std::move(s);
    return r;
  }
  ValuePtr make_long(const uint8_t* p, size_t n);
  ValuePtr make_global(const std::string& module, const std::string& name);
  ValuePtr call(const Value& fn, const std::vector<ValuePtr>& args);
  ValuePtr new_object(const Value& cls, const std::vector<ValuePtr>& args);
  void build(Value& obj, const ValuePtr& state);
  void persistent_load(const ValuePtr& pid);
  ValuePtr tuple(std::vector<ValuePtr> items) {
    auto t = Value::make(Kind::Tuple);
    t->items = std::move(items);
    return t;
  }
  void set_item(Value& d, ValuePtr k, ValuePtr v) {
    if (!d.is(Kind::Dict)) fail(std::string("SETITEM on a ") + kind_name(d.kind));
    d.entries.emplace_back(std::move(k), std::move(v));
  }
  std::string text_string(const std::string& quoted);
  static std::string raw_unicode_escape(const std::string& s);
  // Copies of existing containers (BUILD of a dict, OrderedDict(d), set(x)) can double a value
  // per opcode; their total is bounded by the input's size (a 177-byte pickle asked for 1.6 GB).
  void spend(size_t n) {
    copies_ += n;
    if (copies_ > 16 * static_cast<uint64_t>(buf_->size()) + (uint64_t(1) << 20))
      fail("builds more values than a pickle of this size can hold (copies of copies?)");
  }

  // Every value reachable from the stack and the memo (strong references in `keep`); true when
  // one of them can reach itself. Iterative depth-first search (no recursion).
  bool reachable(std::vector<ValuePtr>& keep) const {
    std::unordered_map<const Value*, int> color;  // 1: on the current path, 2: done
    bool cycle = false;
    struct Frame {
      ValuePtr v;
      size_t next;
    };
    auto child = [](const Value& v, size_t i) -> const ValuePtr* {
      if (i < v.items.size()) return &v.items[i];
      i -= v.items.size();
      if (i < 2 * v.entries.size()) return i % 2 ? &v.entries[i / 2].second : &v.entries[i / 2].first;
      i -= 2 * v.entries.size();
      if (i == 0) return &v.storage;
      if (i == 1) return &v.state;
      return nullptr;
    };
    std::vector<ValuePtr> roots(stack_.begin(), stack_.end());
    for (const auto& [k, v] : memo_) roots.push_back(v);
    for (const auto& w : made_)  // also values only the unwinding C++ stack held
      if (ValuePtr v = w.lock()) roots.push_back(std::move(v));
    std::vector<Frame> st;
    for (const auto& r : roots) {
      if (!r || color.count(r.get())) continue;
      color[r.get()] = 1;
      st.push_back({r, 0});
      while (!st.empty()) {
        Frame& f = st.back();
        const ValuePtr* c = child(*f.v, f.next++);
        if (!c) {
          color[f.v.get()] = 2;
          keep.push_back(std::move(f.v));
          st.pop_back();
          continue;
        }
        if (!*c) continue;
        auto it = color.find(c->get());
        if (it == color.end()) {
          color[c->get()] = 1;
          st.push_back({*c, 0});
        } else if (it->second == 1) {
          cycle = true;
        }
      }
    }
    return cycle;
  }

  bool ok_ = false;
  std::vector<std::weak_ptr<Value>> made_;
  std::vector<std::weak_ptr<Value>>* outer_made_ = nullptr;
  uint64_t copies_ = 0;
  std::shared_ptr<const std::string> buf_;
  size_t pos_, end_;
  const LoadOptions& opts_;
  int nest_;
  LegacyStorages* legacy_;
  std::vector<ValuePtr> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, ValuePtr> memo_;
  int op_ = 0;
  size_t op_pos_ = 0;
};

ValuePtr Reader::make_long(const uint8_t* p, size_t n) {
  if (n == 0) return make_int(0);
  if (n <= 8) {
    uint64_t v = 0;
    for (size_t k = 0; k < n; ++k) v |= static_cast<uint64_t>(p[k]) << (8 * k);
    if (n < 8 && (p[n - 1] & 0x80)) v |= ~uint64_t(0) << (8 * n);  // sign-extend
    return make_int(static_cast<int64_t>(v));
  }
  auto r = Value::make(Kind::BigInt);
  r->s.assign(reinterpret_cast<const char*>(p), n);
  return r;
}

ValuePtr Reader::make_global(const std::string& module_in, const std::string& name) {
  const std::string module = canonical_module(module_in);
  const std::string full = module + "." + name;
  auto it = allow_list().find(full);
  if (it == allow_list().end()) {
    std::string hint;
    if (module.rfind("dnnlib.tflib", 0) == 0)
      hint = "; this is a TensorFlow-era pickle: convert it with the reference's legacy.py first";
    throw Error(opts_.what + ": refusing global " + full + " (not on the allow-list" + hint + ")");
  }
  auto g = Value::make(Kind::Global);
  g->s = module;
  g->name = name;
  if (it->second.dtype) g->dtype = it->second.dtype;
  return g;
}

// Python's repr of a byte string ('...' or "...") back to its bytes.
std::string Reader::text_string(const std::string& q) {
  if (q.size() < 2 || (q[0] != '\'' && q[0] != '"') || q.back() != q[0]) fail("STRING opcode argument is not quoted");
  std::string out;
  for (size_t k = 1; k + 1 < q.size(); ++k) {
    char c = q[k];
    if (c != '\\') {
      out += c;
      continue;
    }
    if (++k + 1 > q.size() - 1) fail("bad escape in STRING");
    char e = q[k];
    switch (e) {
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case '\\': out += '\\'; break;
      case '\'': out += '\''; break;
      case '"': out += '"'; break;
      case 'x': {
        if (k + 2 >= q.size()) fail("bad \\x escape in STRING");
        out += static_cast<char>(std::strtol(q.substr(k + 1, 2).c_str(), nullptr, 16));
        k += 2;
        break;
      }
      default:
        if (e >= '0' && e <= '7') {
          int v = 0, n = 0;
          while (n < 3 && k < q.size() - 1 && q[k] >= '0' && q[k] <= '7') v = v * 8 + (q[k++] - '0'), ++n;
          --k;
          out += static_cast<char>(v);
        } else {
          out += '\\';
          out += e;
        }
    }
  }
  return out;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

// Protocol 0 UNICODE: raw-unicode-escape (latin-1 bytes with \uXXXX and \UXXXXXXXX escapes).
std::string Reader::raw_unicode_escape(const std::string& s) {
  std::string out;
  for (size_t k = 0; k < s.size(); ++k) {
    if (s[k] == '\\' && k + 1 < s.size() && (s[k + 1] == 'u' || s[k + 1] == 'U')) {
      const size_t n = s[k + 1] == 'u' ? 4 : 8;
      if (k + 2 + n <= s.size()) {
        append_utf8(out, static_cast<uint32_t>(std::strtoul(s.substr(k + 2, n).c_str(), nullptr, 16)));
        k += 1 + n;
        continue;
      }
    }
    append_utf8(out, static_cast<uint8_t>(s[k]));
  }
  return out;
}

ValuePtr Reader::run() {
  while (true) {
    op_pos_ = pos_;
    op_ = u8();
    switch (op_) {
      case 0x80: {  // PROTO
        int proto = u8();
        if (proto > 5) fail("pickle protocol " + std::to_string(proto) + " is not supported (0..5)");
        break;
      }
      case 0x95: {  // FRAME: only a length prefix for buffered readers
        uint64_t n = le(8);
        if (n > end_ - pos_) fail("truncated pickle: frame of " + std::to_string(n) + " bytes");
        break;
      }
      case '.':  // STOP
        if (stack_.empty()) fail("STOP with an empty stack");
        return stack_.back();
      case '(': marks_.push_back(stack_.size()); break;  // MARK
      case '0': pop(); break;                             // POP
      case '1': pop_mark(); break;                        // POP_MARK
      case '2': push(top()); break;                       // DUP
      case 'N': push(Value::make(Kind::None)); break;     // NONE
      case 0x88:                                          // NEWTRUE
      case 0x89: {                                        // NEWFALSE
        auto v = Value::make(Kind::Bool);
        v->b = op_ == 0x88;
        push(v);
        break;
      }
      case 'K': push(make_int(u8())); break;                                        // BININT1
      case 'M': push(make_int(static_cast<int64_t>(le(2)))); break;                 // BININT2
      case 'J': push(make_int(static_cast<int32_t>(static_cast<uint32_t>(le(4))))); break;  // BININT
      case 0x8a: {  // LONG1
        size_t n = u8();
        push(make_long(take(n), n));
        break;
      }
      case 0x8b: {  // LONG4
        int64_t n = static_cast<int32_t>(static_cast<uint32_t>(le(4)));
        if (n < 0) fail("negative LONG4 length");
        push(make_long(take(static_cast<size_t>(n)), static_cast<size_t>(n)));
        break;
      }
      case 'I': {  // INT (text); "01"/"00" are True/False
        std::string s = line();
        if (s == "01" || s == "00") {
          auto v = Value::make(Kind::Bool);
          v->b = s == "01";
          push(v);
        } else {
          push(make_int(text_int(s, "bad INT '" + s + "'")));
        }
        break;
      }
      case 'L': {  // LONG (text)
        std::string s = line();
        if (!s.empty() && s.back() == 'L') s.pop_back();
        push(make_int(text_int(s, "LONG '" + s + "' does not fit 64 bits")));
        break;
      }
      case 'F': {  // FLOAT (text)
        std::string s = line();
        std::istringstream in(s);
        in.imbue(std::locale::classic());
        auto v = Value::make(Kind::Float);
        if (!(in >> v->f)) fail("bad FLOAT '" + s + "'");
        push(v);
        break;
      }
      case 'G': {  // BINFLOAT: big-endian double
        uint64_t bits = 0;
        const uint8_t* p = take(8);
        for (int k = 0; k < 8; ++k) bits = (bits << 8) | p[k];
        auto v = Value::make(Kind::Float);
        std::memcpy(&v->f, &bits, 8);
        push(v);
        break;
      }
      case 'X':     // BINUNICODE
      case 0x8c:    // SHORT_BINUNICODE
      case 0x8d: {  // BINUNICODE8
        size_t n = op_ == 0x8c ? u8() : op_ == 'X' ? le(4) : le(8);
        Bytes b = view(n);
        push(make_str(b.str()));
        break;
      }
      case 'T':     // BINSTRING (Python 2 str)
      case 'U': {   // SHORT_BINSTRING
        size_t n = op_ == 'U' ? u8() : le(4);
        push(make_str(view(n).str()));
        break;
      }
      case 'S': push(make_str(text_string(line()))); break;         // STRING
      case 'V': push(make_str(raw_unicode_escape(line()))); break;  // UNICODE
      case 'B':     // BINBYTES
      case 'C':     // SHORT_BINBYTES
      case 0x8e:    // BINBYTES8
      case 0x96: {  // BYTEARRAY8
        size_t n = op_ == 'C' ? u8() : op_ == 'B' ? le(4) : le(8);
        auto v = Value::make(Kind::Bytes);
        v->bytes = view(n);
        push(v);
        break;
      }
      case 0x97: fail("out-of-band buffers (NEXT_BUFFER) are not supported");
      case 0x98: break;  // READONLY_BUFFER: no effect on plain data
      case ')': push(Value::make(Kind::Tuple)); break;  // EMPTY_TUPLE
      case 't': push(tuple(pop_mark())); break;          // TUPLE
      case 0x85: {                                        // TUPLE1
        auto a = pop();
        push(tuple({a}));
        break;
      }
      case 0x86: {  // TUPLE2
        auto b = pop(), a = pop();
        push(tuple({a, b}));
        break;
      }
      case 0x87: {  // TUPLE3
        auto c = pop(), b = pop(), a = pop();
        push(tuple({a, b, c}));
        break;
      }
      case ']': push(Value::make(Kind::List)); break;  // EMPTY_LIST
      case 'l': {                                       // LIST
        auto v = Value::make(Kind::List);
        v->items = pop_mark();
        push(v);
        break;
      }
      case 'a': {  // APPEND
        auto x = pop();
        Value& l = *top();
        if (!l.is(Kind::List)) fail(std::string("APPEND to a ") + kind_name(l.kind));
        l.items.push_back(x);
        break;
      }
      case 'e': {  // APPENDS
        auto xs = pop_mark();
        Value& l = *top();
        if (!l.is(Kind::List)) fail(std::string("APPENDS to a ") + kind_name(l.kind));
        l.items.insert(l.items.end(), xs.begin(), xs.end());
        break;
      }
      case '}': push(Value::make(Kind::Dict)); break;  // EMPTY_DICT
      case 'd': {                                       // DICT
        auto xs = pop_mark();
        if (xs.size() % 2) fail("DICT with an odd number of items");
        auto d = Value::make(Kind::Dict);
        for (size_t k = 0; k < xs.size(); k += 2) d->entries.emplace_back(xs[k], xs[k + 1]);
        push(d);
        break;
      }
      case 's': {  // SETITEM
        auto v = pop(), k = pop();
        set_item(*top(), k, v);
        break;
      }
      case 'u': {  // SETITEMS
        auto xs = pop_mark();
        if (xs.size() % 2) fail("SETITEMS with an odd number of items");
        Value& d = *top();
        for (size_t k = 0; k < xs.size(); k += 2) set_item(d, xs[k], xs[k + 1]);
        break;
      }
      case 0x8f: push(Value::make(Kind::Set)); break;  // EMPTY_SET
      case 0x90: {                                      // ADDITEMS
        auto xs = pop_mark();
        Value& s = *top();
        if (!s.is(Kind::Set)) fail(std::string("ADDITEMS to a ") + kind_name(s.kind));
        s.items.insert(s.items.end(), xs.begin(), xs.end());
        break;
      }
      case 0x91: {  // FROZENSET
        auto v = Value::make(Kind::Set);
        v->items = pop_mark();
        push(v);
        break;
      }
      case 'p': memo_put(std::strtoull(line().c_str(), nullptr, 10)); break;  // PUT
      case 'q': memo_put(u8()); break;                                        // BINPUT
      case 'r': memo_put(le(4)); break;                                       // LONG_BINPUT
      case 0x94: memo_put(memo_.size()); break;                               // MEMOIZE
      case 'g': push(memo_get(std::strtoull(line().c_str(), nullptr, 10))); break;  // GET
      case 'h': push(memo_get(u8())); break;                                        // BINGET
      case 'j': push(memo_get(le(4))); break;                                       // LONG_BINGET
      case 'c': {  // GLOBAL: refused here, before any later opcode, unless allow-listed
        std::string module = line();
        std::string name = line();
        push(make_global(module, name));
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        auto name = pop(), module = pop();
        if (!module->is(Kind::Str) || !name->is(Kind::Str)) fail("STACK_GLOBAL needs two strings");
        push(make_global(module->s, name->s));
        break;
      }
      case 0x82: case 0x83: case 0x84:  // EXT1, EXT2, EXT4
        fail("refusing extension-registry reference (EXT opcodes name arbitrary globals)");
      case 'R': {  // REDUCE
        auto args = pop(), fn = pop();
        if (!args->is(Kind::Tuple)) fail("REDUCE arguments are not a tuple");
        push(call(*fn, args->items));
        break;
      }
      case 0x81: {  // NEWOBJ
        auto args = pop(), cls = pop();
        if (!args->is(Kind::Tuple)) fail("NEWOBJ arguments are not a tuple");
        push(new_object(*cls, args->items));
        break;
      }
      case 0x92: {  // NEWOBJ_EX
        auto kwargs = pop(), args = pop(), cls = pop();
        if (!args->is(Kind::Tuple) || !kwargs->is(Kind::Dict) || !kwargs->entries.empty())
          fail("NEWOBJ_EX with keyword arguments is not supported");
        push(new_object(*cls, args->items));
        break;
      }
      case 'i': {  // INST: module/name lines, then the arguments since MARK
        std::string module = line();
        std::string name = line();
        ValuePtr cls = make_global(module, name);
        push(call(*cls, pop_mark()));
        break;
      }
      case 'o': {  // OBJ: class and arguments since MARK
        auto xs = pop_mark();
        if (xs.empty()) fail("OBJ without a class");
        std::vector<ValuePtr> args(xs.begin() + 1, xs.end());
        push(call(*xs[0], args));
        break;
      }
      case 'b': {  // BUILD
        auto state = pop();
        build(*top(), state);
        break;
      }
      case 'Q': persistent_load(pop()); break;  // BINPERSID
      case 'P': {                               // PERSID (text id)
        persistent_load(make_str(line()));
        break;
      }
      default:
        fail("unknown pickle opcode " + hex_byte(op_));
    }
  }
}

int64_t int_arg(const ValuePtr& v, const std::string& what) { return v->as_int(what); }

std::vector<int64_t> int_tuple(const ValuePtr& v, const std::string& what) {
  if (!v->is(Kind::Tuple) && !v->is(Kind::List)) throw Error(what + " is not a tuple");
  std::vector<int64_t> out;
  for (const auto& x : v->items) {
    int64_t n = x->as_int(what);
    if (n < 0) throw Error(what + " has a negative entry");
    out.push_back(n);
  }
  return out;
}

ValuePtr Reader::call(const Value& fn, const std::vector<ValuePtr>& a) {
  if (!fn.is(Kind::Global)) fail(std::string("refusing to call a ") + kind_name(fn.kind) + " (only allow-listed globals)");
  const std::string full = fn.s + "." + fn.name;
  const Allowed& g = allow_list().at(full);
  auto nargs = [&](size_t lo, size_t hi) {
    if (a.size() < lo || a.size() > hi) fail(full + " called with " + std::to_string(a.size()) + " arguments");
  };
  const std::string what = opts_.what + ": " + full;
  switch (g.kind) {
    case G::OrderedDict:
    case G::EasyDict: {
      nargs(0, 1);
      auto d = Value::make(Kind::Dict);
      if (!a.empty()) {
        if (a[0]->is(Kind::Dict)) {
          spend(a[0]->entries.size());
          d->entries = a[0]->entries;
        } else if (a[0]->is(Kind::List) || a[0]->is(Kind::Tuple)) {
          spend(a[0]->items.size());
          for (const auto& kv : a[0]->items) {
            if ((!kv->is(Kind::List) && !kv->is(Kind::Tuple)) || kv->items.size() != 2) fail(full + ": bad item list");
            d->entries.emplace_back(kv->items[0], kv->items[1]);
          }
        } else {
          fail(full + ": bad argument");
        }
      }
      return d;
    }
    case G::Set:
    case G::FrozenSet: {
      nargs(0, 1);
      auto s = Value::make(Kind::Set);
      if (!a.empty()) {
        if (!a[0]->is(Kind::List) && !a[0]->is(Kind::Tuple) && !a[0]->is(Kind::Set)) fail(full + ": bad argument");
        spend(a[0]->items.size());
        s->items = a[0]->items;
      }
      return s;
    }
    case G::CodecsEncode: {  // protocol 2 bytes: encode(str, 'latin1')
      nargs(2, 2);
      const std::string& enc = a[1]->as_str(what);
      if (enc != "latin1" && enc != "latin-1") fail(full + ": only latin1 is supported");
      const std::string& s = a[0]->as_str(what);
      std::string out;
      for (size_t k = 0; k < s.size(); ++k) {
        uint8_t c = static_cast<uint8_t>(s[k]);
        if (c < 0x80) {
          out += static_cast<char>(c);
        } else if ((c & 0xe0) == 0xc0 && k + 1 < s.size()) {
          uint32_t cp = ((c & 0x1f) << 6) | (static_cast<uint8_t>(s[k + 1]) & 0x3f);
          if (cp > 0xff) fail(full + ": character beyond latin1");
          out += static_cast<char>(cp);
          ++k;
        } else {
          fail(full + ": character beyond latin1");
        }
      }
      auto v = Value::make(Kind::Bytes);
      v->bytes = Bytes{std::make_shared<const std::string>(std::move(out)), 0, 0};
      v->bytes.size = v->bytes.buf->size();
      return v;
    }
    case G::RebuildTensor:
    case G::RebuildTensorV2: {
      if (g.kind == G::RebuildTensor) nargs(4, 4);
      else nargs(6, 7);
      if (!a[0]->is(Kind::Storage)) fail(full + ": first argument is not a storage");
      auto t = Value::make(Kind::Tensor);
      t->storage = a[0];
      t->dtype = a[0]->dtype;
      t->storage_offset = int_arg(a[1], what + " storage_offset");
      if (t->storage_offset < 0) fail(full + ": negative storage offset");
      t->shape = int_tuple(a[2], what + " size");
      t->stride = int_tuple(a[3], what + " stride");
      if (t->shape.size() != t->stride.size()) fail(full + ": size and stride differ in length");
      if (a.size() > 4) {
        if (!a[4]->is(Kind::Bool)) fail(full + ": requires_grad is not a bool");
        t->requires_grad = a[4]->b;
        if (!a[5]->is(Kind::Dict) || !a[5]->entries.empty()) fail(full + ": tensors with backward hooks are refused");
      }
      return t;
    }
    case G::RebuildParameter:
    case G::RebuildParameterWithState: {
      if (g.kind == G::RebuildParameter) nargs(3, 3);
      else nargs(4, 4);
      if (!a[0]->is(Kind::Tensor)) fail(full + ": data is not a tensor");
      if (!a[2]->is(Kind::Dict) || !a[2]->entries.empty()) fail(full + ": parameters with backward hooks are refused");
      a[0]->requires_grad = a[1]->is(Kind::Bool) && a[1]->b;
      return a[0];
    }
    case G::LoadFromBytes: {
      nargs(1, 1);
      if (!a[0]->is(Kind::Bytes)) fail(full + ": argument is not bytes");
      if (nest_ >= 2) fail(full + ": nested torch blobs are nested too deeply");
      LoadOptions o = opts_;
      o.what = opts_.what + " (torch blob at byte " + std::to_string(a[0]->bytes.offset) + ")";
      return load_legacy_blob(a[0]->bytes, o, nest_ + 1);
    }
    case G::TorchSize: {
      nargs(1, 1);
      auto t = Value::make(Kind::Tuple);
      int_tuple(a[0], what);
      spend(a[0]->items.size());
      t->items = a[0]->items;
      return t;
    }
    case G::ReconstructPersistent: {
      nargs(1, 1);
      const Value& meta = *a[0];
      if (!meta.is(Kind::Dict)) fail(full + ": meta is not a dict");
      ValuePtr type = meta.get("type"), cls = meta.get("class_name"), state = meta.get("state");
      if (!type || !type->is(Kind::Str) || type->s != "class") fail(full + ": only persistent classes are supported");
      if (!cls || !cls->is(Kind::Str)) fail(full + ": meta has no class_name");
      if (!state || !state->is(Kind::Dict)) fail(full + ": meta has no state dict");
      // The embedded module source (meta.module_src) is deliberately never looked at beyond this.
      auto obj = Value::make(Kind::Object);
      obj->s = cls->s;
      obj->state = state;
      return obj;
    }
    case G::NumpyScalar: {
      nargs(1, 2);
      if (!a[0]->is(Kind::Dtype)) fail(full + ": first argument is not a dtype");
      if (a.size() < 2 || !a[1]->is(Kind::Bytes)) fail(full + ": only numeric scalars are supported");
      return scalar_from_bytes(a[0]->dtype, a[0]->byteorder, a[1]->bytes.data(), a[1]->bytes.size, opts_.what);
    }
    case G::NumpyDtype: {
      nargs(1, 3);
      const std::string& t = a[0]->as_str(what);
      auto d = Value::make(Kind::Dtype);
      d->dtype = numpy_dtype_name(t, &d->byteorder);
      if (d->dtype.empty()) fail(full + ": numpy type '" + t + "' is not supported");
      if (dtype_size(d->dtype) == 1) d->byteorder = '|';
      return d;
    }
    case G::NumpyReconstruct: {
      nargs(3, 3);
      if (!a[0]->is(Kind::Global) || a[0]->s + "." + a[0]->name != "numpy.ndarray")
        fail(full + ": only numpy.ndarray can be reconstructed");
      return Value::make(Kind::Array);  // filled by BUILD
    }
    case G::NumpyNdarray:
    case G::StorageType:
    case G::TorchDtype:
      fail("refusing to call " + full + " (allowed only as a value)");
  }
  fail("unhandled global " + full);
}

ValuePtr Reader::new_object(const Value& cls, const std::vector<ValuePtr>& args) {
  if (!cls.is(Kind::Global)) fail(std::string("NEWOBJ of a ") + kind_name(cls.kind));
  const Allowed& g = allow_list().at(cls.s + "." + cls.name);
  switch (g.kind) {
    case G::OrderedDict:
    case G::EasyDict:
    case G::Set:
    case G::FrozenSet:
      return call(cls, args);
    default:
      fail("refusing to create an instance of " + cls.s + "." + cls.name);
  }
}

void Reader::build(Value& obj, const ValuePtr& state) {
  switch (obj.kind) {
    case Kind::Dtype: {  // numpy dtype state: (version, byteorder, subarray, names, fields, elsize, alignment, flags)
      if (!state->is(Kind::Tuple) || state->items.size() < 2 || !state->items[1]->is(Kind::Str))
        fail("bad numpy dtype state");
      const std::string& bo = state->items[1]->s;
      if (bo != "<" && bo != ">" && bo != "|" && bo != "=") fail("bad numpy byte order '" + bo + "'");
      obj.byteorder = bo == "=" ? '<' : bo[0];
      for (size_t k = 2; k < state->items.size() && k < 5; ++k)
        if (!state->items[k]->is(Kind::None)) fail("structured numpy dtypes are not supported");
      return;
    }
    case Kind::Array: {  // (version, shape, dtype, is_fortran, rawdata)
      if (!state->is(Kind::Tuple) || (state->items.size() != 5 && state->items.size() != 4))
        fail("bad numpy array state");
      const size_t o = state->items.size() - 4;
      obj.shape = int_tuple(state->items[o], opts_.what + ": numpy array shape");
      const Value& dt = *state->items[o + 1];
      if (!dt.is(Kind::Dtype)) fail("numpy array without a dtype");
      obj.dtype = dt.dtype;
      obj.byteorder = dt.byteorder;
      obj.b = state->items[o + 2]->is(Kind::Bool) && state->items[o + 2]->b;
      if (!state->items[o + 3]->is(Kind::Bytes)) fail("numpy object arrays are not supported");
      obj.bytes = state->items[o + 3]->bytes;
      int64_t n = 1;
      for (int64_t d : obj.shape) {
        if (d && n > (int64_t(1) << 40) / d) fail("numpy array too large");
        n *= d;
      }
      if (static_cast<uint64_t>(n) * dtype_size(obj.dtype) != obj.bytes.size) fail("numpy array data has the wrong size");
      return;
    }
    case Kind::Dict: {  // dict subclasses (EasyDict): state is None, a dict of attributes, or (dict, slots)
      if (state->is(Kind::None)) return;
      ValuePtr s = state;
      if (s->is(Kind::Tuple) && s->items.size() == 2) s = s->items[0]->is(Kind::None) ? s->items[1] : s->items[0];
      if (s->is(Kind::None)) return;
      if (!s->is(Kind::Dict)) fail("bad state for a dict");
      spend(s->entries.size());
      obj.entries.insert(obj.entries.end(), s->entries.begin(), s->entries.end());
      return;
    }
    default:
      if (state->is(Kind::None)) return;
      fail(std::string("BUILD on a ") + kind_name(obj.kind) + " is not supported");
  }
}

// A legacy torch.save storage id: ('storage', StorageType, key, location, numel, view_metadata).
void Reader::persistent_load(const ValuePtr& pid) {
  if (!legacy_) fail("persistent id outside a torch storage blob");
  if (!pid->is(Kind::Tuple) || pid->items.size() != 6) fail("unsupported persistent id");
  const auto& it = pid->items;
  if (!it[0]->is(Kind::Str) || it[0]->s != "storage") fail("unsupported persistent id type");
  if (!it[1]->is(Kind::Global) || it[1]->dtype.empty() || allow_list().at(it[1]->s + "." + it[1]->name).kind != G::StorageType)
    fail("persistent id without a storage type");
  const std::string& key = it[2]->as_str(opts_.what + ": storage key");
  const int64_t numel = it[4]->as_int(opts_.what + ": storage size");
  if (numel < 0) fail("negative storage size");
  ValuePtr root;
  auto found = legacy_->roots.find(key);
  if (found != legacy_->roots.end()) {
    root = found->second;
  } else {
    root = Value::make(Kind::Storage);
    root->dtype = it[1]->dtype;
    root->i = numel;
    legacy_->roots[key] = root;
  }
  if (it[5]->is(Kind::None)) {
    push(root);
    return;
  }
  if (!it[5]->is(Kind::Tuple) || it[5]->items.size() != 3) fail("bad storage view metadata");
  auto v = Value::make(Kind::Storage);
  v->dtype = root->dtype;
  const int64_t off = it[5]->items[1]->as_int(opts_.what), size = it[5]->items[2]->as_int(opts_.what);
  if (off < 0 || size < 0) fail("bad storage view");
  v->i = size;
  legacy_->views.push_back({v, root, off, size});
  push(v);
}

// A storage written by torch.save's legacy (non-zip) format: magic number, protocol version,
// system info, the object pickle (storages as persistent ids), the list of storage keys, then
// for each key an int64 element count and the raw data.
ValuePtr load_legacy_blob(const Bytes& blob, const LoadOptions& opts, int nest) {
  static const uint8_t kMagic[10] = {0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
  const size_t begin = blob.offset, end = blob.offset + blob.size;
  size_t pos = begin;
  auto next = [&](LegacyStorages* st) {
    Reader r(blob.buf, pos, end, opts, nest, st);
    ValuePtr v = r.run();
    pos = r.pos();
    return v;
  };
  ValuePtr magic = next(nullptr);
  if (!magic->is(Kind::BigInt) || magic->s.size() != 10 || std::memcmp(magic->s.data(), kMagic, 10) != 0)
    throw Error(opts.what + ": not a torch.save blob (bad magic number)");
  ValuePtr version = next(nullptr);
  if (!version->is(Kind::Int) || version->i != 1001)
    throw Error(opts.what + ": torch.save protocol version " + std::to_string(version->i) + " is not supported");
  ValuePtr sys = next(nullptr);
  ValuePtr le = sys->get("little_endian");
  if (!le || !le->is(Kind::Bool) || !le->b) throw Error(opts.what + ": big-endian torch data is not supported");
  LegacyStorages storages;
  ValuePtr obj = next(&storages);
  ValuePtr keys = next(nullptr);
  if (!keys->is(Kind::List)) throw Error(opts.what + ": bad storage key list");
  for (const auto& k : keys->items) {
    const std::string& key = k->as_str(opts.what + ": storage key");
    auto it = storages.roots.find(key);
    if (it == storages.roots.end()) throw Error(opts.what + ": data for unknown storage '" + key + "'");
    Value& s = *it->second;
    if (end - pos < 8) throw Error(opts.what + ": truncated storage '" + key + "'");
    int64_t numel;
    std::memcpy(&numel, blob.buf->data() + pos, 8);
    pos += 8;
    const size_t el = dtype_size(s.dtype);
    if (numel != s.i || numel < 0 || static_cast<uint64_t>(numel) > (end - pos) / el)
      throw Error(opts.what + ": storage '" + key + "' has " + std::to_string(numel) + " elements, expected " +
                  std::to_string(s.i) + " (or the data is truncated)");
    s.bytes = Bytes{blob.buf, pos, static_cast<size_t>(numel) * el};
    pos += s.bytes.size;
  }
  for (auto& [key, s] : storages.roots)
    if (!s->bytes.buf && s->i > 0) throw Error(opts.what + ": no data for storage '" + key + "'");
  for (auto& v : storages.views) {
    const size_t el = dtype_size(v.root->dtype);
    if (v.offset + v.size > v.root->i) throw Error(opts.what + ": storage view out of range");
    v.view->bytes = Bytes{blob.buf, v.root->bytes.offset + v.offset * el, static_cast<size_t>(v.size) * el};
  }
  return obj;
}

}  // namespace

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::BigInt: return "big int";
    case Kind::Float: return "float";
    case Kind::Str: return "str";
    case Kind::Bytes: return "bytes";
    case Kind::Tuple: return "tuple";
    case Kind::List: return "list";
    case Kind::Dict: return "dict";
    case Kind::Set: return "set";
    case Kind::Global: return "global";
    case Kind::Storage: return "storage";
    case Kind::Tensor: return "tensor";
    case Kind::Array: return "numpy array";
    case Kind::Dtype: return "numpy dtype";
    case Kind::Object: return "persistent object";
  }
  return "?";
}

size_t dtype_size(const std::string& d) {
  if (d == "float32" || d == "int32" || d == "uint32") return 4;
  if (d == "float64" || d == "int64" || d == "uint64") return 8;
  if (d == "float16" || d == "bfloat16" || d == "int16" || d == "uint16") return 2;
  if (d == "int8" || d == "uint8" || d == "bool") return 1;
  throw Error("unknown dtype '" + d + "'");
}

ValuePtr Value::make(Kind k) {
  auto v = std::make_shared<Value>();
  v->kind = k;
  if (t_made) t_made->push_back(v);
  return v;
}

Value::~Value() {
  // Children that only we own are emptied into a local stack before they die, so that no
  // destructor call ever recurses into another one with children.
  std::vector<ValuePtr> stack;
  auto take = [&stack](Value& v) {
    for (auto& x : v.items) stack.push_back(std::move(x));
    for (auto& e : v.entries) {
      stack.push_back(std::move(e.first));
      stack.push_back(std::move(e.second));
    }
    v.items.clear();
    v.entries.clear();
    if (v.storage) stack.push_back(std::move(v.storage));
    if (v.state) stack.push_back(std::move(v.state));
  };
  take(*this);
  while (!stack.empty()) {
    ValuePtr p = std::move(stack.back());
    stack.pop_back();
    if (p && p.use_count() == 1) take(*p);
    // p (now without children, or still shared elsewhere) is released here.
  }
}

ValuePtr Value::get(const std::string& key) const {
  if (kind != Kind::Dict) return nullptr;
  for (const auto& [k, v] : entries)
    if (k->kind == Kind::Str && k->s == key) return v;
  return nullptr;
}

int64_t Value::as_int(const std::string& what) const {
  if (kind == Kind::Int) return i;
  if (kind == Kind::Bool) return b ? 1 : 0;
  throw Error(what + ": expected an int, found a " + kind_name(kind));
}

double Value::as_number(const std::string& what) const {
  if (kind == Kind::Float) return f;
  if (kind == Kind::Int) return static_cast<double>(i);
  throw Error(what + ": expected a number, found a " + kind_name(kind));
}

const std::string& Value::as_str(const std::string& what) const {
  if (kind != Kind::Str) throw Error(what + ": expected a string, found a " + kind_name(kind));
  return s;
}

int64_t Value::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

ValuePtr load(std::shared_ptr<const std::string> data, const LoadOptions& opts) {
  const uint16_t probe = 1;
  if (*reinterpret_cast<const uint8_t*>(&probe) != 1) throw Error(opts.what + ": big-endian hosts are not supported");
  Reader r(data, 0, data->size(), opts, 0, nullptr);
  ValuePtr v = r.run();
  r.check_acyclic();
  return v;
}

ValuePtr load_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot open");
  auto buf = std::make_shared<std::string>();
  f.seekg(0, std::ios::end);
  const std::streamoff n = f.tellg();
  if (n < 0) throw Error(path + ": cannot read");
  f.seekg(0);
  buf->resize(static_cast<size_t>(n));
  if (n > 0 && !f.read(buf->data(), n)) throw Error(path + ": read failed");
  LoadOptions o;
  o.what = path;
  return load(std::move(buf), o);
}

namespace {

// Shared references can make a small file describe a huge tree (a list holding the same list
// twice, nested 100 times): conversions count the nodes they visit and stop at a budget.
constexpr int64_t kVisitBudget = 1 << 20;

nlohmann::json to_json_rec(const Value& v, const std::string& what, int depth, int64_t& budget) {
  if (depth > 100) throw Error(what + ": data nested too deeply (or cyclic)");
  if (--budget < 0) throw Error(what + ": data too large (shared references expand to too many values)");
  switch (v.kind) {
    case Kind::None: return nullptr;
    case Kind::Bool: return v.b;
    case Kind::Int: return v.i;
    case Kind::Float: return v.f;
    case Kind::Str: return v.s;
    case Kind::Global: return v.s + "." + v.name;
    case Kind::Tuple:
    case Kind::List:
    case Kind::Set: {
      nlohmann::json a = nlohmann::json::array();
      for (const auto& x : v.items) a.push_back(to_json_rec(*x, what, depth + 1, budget));
      return a;
    }
    case Kind::Dict: {
      nlohmann::json o = nlohmann::json::object();
      for (const auto& [k, x] : v.entries) {
        std::string key;
        if (k->is(Kind::Str)) key = k->s;
        else if (k->is(Kind::Int)) key = std::to_string(k->i);
        else throw Error(what + ": dict key of kind " + kind_name(k->kind));
        o[key] = to_json_rec(*x, what, depth + 1, budget);
      }
      return o;
    }
    default:
      throw Error(what + ": a " + std::string(kind_name(v.kind)) + " is not plain data");
  }
}

void state_dict_rec(const Value& obj, const std::string& prefix, const std::string& what, int depth, int64_t& budget,
                    std::vector<std::pair<std::string, ValuePtr>>& out) {
  if (depth > 64) throw Error(what + ": modules nested too deeply (or cyclic)");
  if (--budget < 0) throw Error(what + ": too many modules (shared references?)");
  const ValuePtr st = obj.is(Kind::Object) ? obj.state : nullptr;
  if (!st || !st->is(Kind::Dict)) throw Error(what + ": '" + prefix + "' is not a persistent module");
  auto dict = [&](const char* name) {
    ValuePtr d = st->get(name);
    if (!d || !d->is(Kind::Dict)) throw Error(what + ": module '" + prefix + "' (" + obj.s + ") has no " + name);
    return d;
  };
  std::vector<std::string> non_persistent;
  if (ValuePtr np = st->get("_non_persistent_buffers_set"); np && np->is(Kind::Set))
    for (const auto& x : np->items)
      if (x->is(Kind::Str)) non_persistent.push_back(x->s);
  for (const auto& [k, v] : dict("_parameters")->entries) {
    if (v->is(Kind::None)) continue;
    if (!v->is(Kind::Tensor)) throw Error(what + ": parameter " + prefix + k->as_str(what) + " is not a tensor");
    out.emplace_back(prefix + k->as_str(what), v);
  }
  for (const auto& [k, v] : dict("_buffers")->entries) {
    const std::string& name = k->as_str(what);
    if (v->is(Kind::None) || std::find(non_persistent.begin(), non_persistent.end(), name) != non_persistent.end())
      continue;
    if (!v->is(Kind::Tensor)) throw Error(what + ": buffer " + prefix + name + " is not a tensor");
    out.emplace_back(prefix + name, v);
  }
  for (const auto& [k, v] : dict("_modules")->entries) {
    if (v->is(Kind::None)) continue;
    state_dict_rec(*v, prefix + k->as_str(what) + ".", what, depth + 1, budget, out);
  }
}

}  // namespace

nlohmann::json to_json(const Value& v, const std::string& what) {
  int64_t budget = kVisitBudget;
  return to_json_rec(v, what, 0, budget);
}

std::vector<std::pair<std::string, ValuePtr>> module_state_dict(const Value& obj, const std::string& what) {
  std::vector<std::pair<std::string, ValuePtr>> out;
  int64_t budget = 100000;
  state_dict_rec(obj, "", what, 0, budget, out);
  return out;
}

}  // namespace sf::pickle
