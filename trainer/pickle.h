// A reader of Python pickles that never executes anything from the file.
//
// Network pickles of the reference (stylegan2-ada-pytorch) are Python pickles: a dict whose
// networks are "persistent objects" (torch_utils.persistence) holding torch modules, whose
// tensors hold storages written as nested legacy torch.save blobs. Python's own unpickler runs
// whatever callable the file names; this reader instead interprets the opcodes of protocols 0-5
// itself and builds plain data (Value trees). A callable named by the file (GLOBAL, STACK_GLOBAL,
// INST) is looked up in a fixed allow-list of reconstructors whose effect is known and emulated
// here (tensor and storage rebuilders, OrderedDict, numpy scalars and arrays, EasyDict, the
// persistence hook); every other name is refused at the opcode that names it, before any later
// opcode is read, with an Error such as
//   "snapshot.pkl: refusing global os.system (not on the allow-list)".
// Lengths, memo indices and nesting are checked against the input, so a hostile or truncated
// file yields an Error, never a crash or an unbounded allocation.
//
// Values share structure the way the pickle does (memo references); byte strings and storage
// data are views into the loaded file (no copies). Parsing is a loop over opcodes with explicit
// stacks, and a Value's destructor releases its children iteratively, so nesting depth (a
// 200k-deep list is 400 KB of pickle) costs heap, never C++ stack. Torch-free; reentrant (no
// global state).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace sf::pickle {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A read-only view of bytes kept alive by the buffer it points into.
struct Bytes {
  std::shared_ptr<const std::string> buf;
  size_t offset = 0, size = 0;
  const uint8_t* data() const { return reinterpret_cast<const uint8_t*>(buf->data()) + offset; }
  std::string str() const { return size ? std::string(buf->data() + offset, size) : std::string(); }
};

enum class Kind {
  None, Bool, Int, BigInt, Float, Str, Bytes, Tuple, List, Dict, Set,
  Global,   // an allow-listed name used as a value (e.g. torch.FloatStorage inside a storage id)
  Storage,  // torch storage: dtype + raw little-endian bytes
  Tensor,   // torch tensor: storage + offset + shape + stride (in elements)
  Array,    // numpy ndarray: dtype + shape + raw bytes (C or Fortran order)
  Dtype,    // numpy dtype
  Object,   // a reference persistent object: class name + state dict
};
const char* kind_name(Kind k);

struct Value;
using ValuePtr = std::shared_ptr<Value>;

struct Value {
  Kind kind = Kind::None;
  bool b = false;                 // Bool; Array: Fortran order
  int64_t i = 0;                  // Int
  double f = 0;                   // Float
  std::string s;                  // Str; Global: module; Object: class name; BigInt: little-endian bytes
  std::string name;               // Global: attribute name; Object: module name (may be empty)
  std::string dtype;              // Storage/Tensor/Array/Dtype: "float32", "float64", "int64", ...
  char byteorder = '<';           // Dtype/Array: '<' or '>' ('|' for one-byte types)
  pickle::Bytes bytes;            // Bytes; Storage/Array data
  std::vector<ValuePtr> items;    // Tuple, List, Set
  std::vector<std::pair<ValuePtr, ValuePtr>> entries;  // Dict, in insertion order
  ValuePtr storage;               // Tensor
  int64_t storage_offset = 0;     // Tensor (elements)
  std::vector<int64_t> shape, stride;  // Tensor, Array
  bool requires_grad = false;     // Tensor
  ValuePtr state;                 // Object: its state dict

  Value() = default;
  Value(const Value&) = default;
  Value& operator=(const Value&) = default;
  // Releases nested children without recursion (see the header comment).
  ~Value();

  // A new value; while a load runs, it is also registered with that load (so that cyclic values
  // of a failed parse can be taken apart and freed).
  static ValuePtr make(Kind k);
  bool is(Kind k) const { return kind == k; }
  // Dict lookup by string key; null when absent (or not a Dict).
  ValuePtr get(const std::string& key) const;
  // Typed accessors that throw Error naming `what` when the value has another kind.
  int64_t as_int(const std::string& what) const;
  double as_number(const std::string& what) const;
  const std::string& as_str(const std::string& what) const;
  int64_t numel() const;  // Tensor/Array: product of shape
};

// Bytes per element of a dtype name ("float32" -> 4); throws Error for unknown names.
size_t dtype_size(const std::string& dtype);

struct LoadOptions {
  std::string what = "pickle";  // file name used in error messages
};

// Parses one pickle (up to its STOP opcode) from `data`. Throws Error on anything refused,
// malformed or truncated.
ValuePtr load(std::shared_ptr<const std::string> data, const LoadOptions& opts = {});
// Reads a whole file and parses it; errors name the file.
ValuePtr load_file(const std::string& path);

// Converts plain data (None, bool, numbers, strings, lists, tuples, dicts with string keys) to
// JSON; throws Error naming `what` for anything else (tensors, objects, bytes).
nlohmann::json to_json(const Value& v, const std::string& what);

// The reference module tree of a persistent object (torch.nn.Module state): every parameter
// and persistent buffer under its state_dict key ("synthesis.b4.conv1.weight"), in state_dict
// order. Throws Error when the object does not have a module's state.
std::vector<std::pair<std::string, ValuePtr>> module_state_dict(const Value& obj, const std::string& what);

}  // namespace sf::pickle
