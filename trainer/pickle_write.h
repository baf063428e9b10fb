// A small writer of Python pickles (protocol 4), for files that Python's own unpickler loads.
//
// The writer emits opcodes one by one to a stream; it knows nothing about what they build. Calls
// are spelled as in the pickle machine: push the callable (global), push its argument tuple,
// reduce(). Higher-level helpers cover the idioms network exports need: calling a callable with
// keyword arguments (through functools.partial, whose state carries the keywords), calling a
// method of an object on the stack (builtins.getattr), and writing plain JSON-like data (None,
// bools, numbers, strings, lists, dicts) as Python objects.
//
// Byte strings are written straight from the caller's memory (BINBYTES8 above 4 GiB), so large
// tensors cost no copy. No FRAME opcodes are written (they are optional in protocol 4). Every
// write is checked: a failed stream throws std::runtime_error naming `what`.
// Torch-free; not thread-safe (one writer per stream).
#pragma once

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <ostream>
#include <string>

namespace sf::pickle {

class Writer {
 public:
  // Writes the PROTO 4 header.
  Writer(std::ostream& out, std::string what);

  // Values.
  void none();
  void boolean(bool v);
  void integer(int64_t v);
  void real(double v);
  void str(const std::string& s);
  void bytes(const void* data, size_t n);
  // A Python object for plain data: null -> None, bool, integer, float, string, array -> list,
  // object -> dict (string keys, in the JSON's order).
  void json(const nlohmann::json& j);

  // The object named module.name (Python's find_class).
  void global(const std::string& module, const std::string& name);

  // Containers: mark() then items then tuple_from_mark() / list_from_mark() / dict_from_mark()
  // (dict: key, value, key, value, ...). empty_tuple() needs no mark.
  void mark();
  void tuple_from_mark();
  void list_from_mark();
  void dict_from_mark();
  void empty_tuple();
  // The top n (0..3) items as a tuple, without a mark.
  void tuple_n(int n);
  void empty_dict();
  // Pops key and value and sets them in the dict below them (which stays on the stack).
  void setitem();

  // callable args -> callable(*args)
  void reduce();
  // obj state -> obj.__setstate__(state) (or obj.__dict__.update(state))
  void build();
  void pop();
  // Stores the top of the stack in the memo (it stays on the stack); returns its index.
  uint32_t memoize();
  // Pushes a memoized object.
  void get(uint32_t index);
  // Ends the pickle.
  void stop();

  // ---- idioms ----
  // Pushes module.name(**kwargs): functools.partial(module.name) whose state holds the keywords,
  // called with no arguments. `kwargs` must be a JSON object.
  void call_with_kwargs(const std::string& module, const std::string& name, const nlohmann::json& kwargs);
  // With the object at memo `obj`: pushes getattr(obj, method) for the caller to push an
  // argument tuple and reduce().
  void method(uint32_t obj, const std::string& method);

  uint64_t bytes_written() const { return written_; }

 private:
  void put(const void* p, size_t n);
  void op(uint8_t code) { put(&code, 1); }
  void u32(uint32_t v);
  void u64(uint64_t v);

  std::ostream& out_;
  std::string what_;
  uint32_t memo_ = 0;
  uint64_t written_ = 0;
};

}  // namespace sf::pickle
