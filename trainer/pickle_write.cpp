#include "trainer/pickle_write.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>

namespace sf::pickle {
namespace {

// Opcodes of Python's pickle machine (Lib/pickletools.py names).
enum : uint8_t {
  kMark = '(', kStop = '.', kPop = '0', kBinFloat = 'G', kBinInt = 'J', kBinInt1 = 'K', kBinInt2 = 'M',
  kNone = 'N', kReduce = 'R', kBinUnicode = 'X', kEmptyDict = '}', kBuild = 'b', kGlobal = 'c', kDict = 'd',
  kBinGet = 'h', kLongBinGet = 'j', kList = 'l', kSetItem = 's', kTuple = 't', kEmptyTuple = ')',
  kBinBytes = 'B', kShortBinBytes = 'C', kProto = 0x80, kTuple1 = 0x85, kTuple2 = 0x86, kTuple3 = 0x87, kNewTrue = 0x88, kNewFalse = 0x89,
  kLong1 = 0x8a, kShortBinUnicode = 0x8c, kBinUnicode8 = 0x8d, kBinBytes8 = 0x8e, kMemoize = 0x94,
};

}  // namespace

Writer::Writer(std::ostream& out, std::string what) : out_(out), what_(std::move(what)) {
  const uint8_t head[2] = {kProto, 4};
  put(head, 2);
}

void Writer::put(const void* p, size_t n) {
  if (!n) return;
  // ostream::write takes a signed count: large blocks go in pieces.
  const char* c = static_cast<const char*>(p);
  constexpr size_t kChunk = size_t(1) << 30;
  for (size_t done = 0; done < n;) {
    const size_t k = std::min(kChunk, n - done);
    out_.write(c + done, static_cast<std::streamsize>(k));
    done += k;
  }
  if (!out_) throw std::runtime_error(what_ + ": write failed");
  written_ += n;
}

void Writer::u32(uint32_t v) {
  uint8_t b[4];
  for (int k = 0; k < 4; ++k) b[k] = static_cast<uint8_t>(v >> (8 * k));
  put(b, 4);
}

void Writer::u64(uint64_t v) {
  uint8_t b[8];
  for (int k = 0; k < 8; ++k) b[k] = static_cast<uint8_t>(v >> (8 * k));
  put(b, 8);
}

void Writer::none() { op(kNone); }
void Writer::boolean(bool v) { op(v ? kNewTrue : kNewFalse); }

void Writer::integer(int64_t v) {
  if (v >= 0 && v < 256) {
    const uint8_t b[2] = {kBinInt1, static_cast<uint8_t>(v)};
    put(b, 2);
  } else if (v >= 0 && v < 65536) {
    const uint8_t b[3] = {kBinInt2, static_cast<uint8_t>(v), static_cast<uint8_t>(v >> 8)};
    put(b, 3);
  } else if (v >= std::numeric_limits<int32_t>::min() && v <= std::numeric_limits<int32_t>::max()) {
    op(kBinInt);
    u32(static_cast<uint32_t>(static_cast<int32_t>(v)));
  } else {
    const uint8_t b[2] = {kLong1, 8};  // 8 bytes, little-endian two's complement
    put(b, 2);
    u64(static_cast<uint64_t>(v));
  }
}

void Writer::real(double v) {
  uint64_t bits;
  std::memcpy(&bits, &v, 8);
  uint8_t b[9];
  b[0] = kBinFloat;
  for (int k = 0; k < 8; ++k) b[1 + k] = static_cast<uint8_t>(bits >> (8 * (7 - k)));  // big-endian
  put(b, 9);
}

void Writer::str(const std::string& s) {
  if (s.size() < 256) {
    const uint8_t b[2] = {kShortBinUnicode, static_cast<uint8_t>(s.size())};
    put(b, 2);
  } else if (s.size() <= std::numeric_limits<uint32_t>::max()) {
    op(kBinUnicode);
    u32(static_cast<uint32_t>(s.size()));
  } else {
    op(kBinUnicode8);
    u64(s.size());
  }
  put(s.data(), s.size());
}

void Writer::bytes(const void* data, size_t n) {
  if (n < 256) {
    const uint8_t b[2] = {kShortBinBytes, static_cast<uint8_t>(n)};
    put(b, 2);
  } else if (n <= std::numeric_limits<uint32_t>::max()) {
    op(kBinBytes);
    u32(static_cast<uint32_t>(n));
  } else {
    op(kBinBytes8);
    u64(n);
  }
  put(data, n);
}

void Writer::json(const nlohmann::json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null: none(); break;
    case nlohmann::json::value_t::boolean: boolean(j.get<bool>()); break;
    case nlohmann::json::value_t::number_integer: integer(j.get<int64_t>()); break;
    case nlohmann::json::value_t::number_unsigned: {
      const uint64_t u = j.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        throw std::runtime_error(what_ + ": integer " + j.dump() + " is too large");
      integer(static_cast<int64_t>(u));
      break;
    }
    case nlohmann::json::value_t::number_float: real(j.get<double>()); break;
    case nlohmann::json::value_t::string: str(j.get<std::string>()); break;
    case nlohmann::json::value_t::array:
      mark();
      for (const auto& v : j) json(v);
      list_from_mark();
      break;
    case nlohmann::json::value_t::object:
      mark();
      for (const auto& [k, v] : j.items()) {
        str(k);
        json(v);
      }
      dict_from_mark();
      break;
    default: throw std::runtime_error(what_ + ": cannot write " + std::string(j.type_name()) + " values");
  }
}

void Writer::global(const std::string& module, const std::string& name) {
  if (module.find('\n') != std::string::npos || name.find('\n') != std::string::npos)
    throw std::runtime_error(what_ + ": bad global name");
  op(kGlobal);
  put(module.data(), module.size());
  op('\n');
  put(name.data(), name.size());
  op('\n');
}

void Writer::mark() { op(kMark); }
void Writer::tuple_from_mark() { op(kTuple); }
void Writer::list_from_mark() { op(kList); }
void Writer::dict_from_mark() { op(kDict); }
void Writer::empty_tuple() { op(kEmptyTuple); }
void Writer::tuple_n(int n) {
  static const uint8_t codes[4] = {kEmptyTuple, kTuple1, kTuple2, kTuple3};
  if (n < 0 || n > 3) throw std::runtime_error(what_ + ": tuple_n takes 0..3 items");
  op(codes[n]);
}
void Writer::empty_dict() { op(kEmptyDict); }
void Writer::setitem() { op(kSetItem); }
void Writer::reduce() { op(kReduce); }
void Writer::build() { op(kBuild); }
void Writer::pop() { op(kPop); }
void Writer::stop() { op(kStop); }

uint32_t Writer::memoize() {
  op(kMemoize);
  return memo_++;
}

void Writer::get(uint32_t index) {
  if (index >= memo_) throw std::runtime_error(what_ + ": memo index out of range");
  if (index < 256) {
    const uint8_t b[2] = {kBinGet, static_cast<uint8_t>(index)};
    put(b, 2);
  } else {
    op(kLongBinGet);
    u32(index);
  }
}

void Writer::call_with_kwargs(const std::string& module, const std::string& name, const nlohmann::json& kwargs) {
  if (!kwargs.is_object()) throw std::runtime_error(what_ + ": keyword arguments must be a dict");
  // functools.partial(f) ...
  global("functools", "partial");
  global(module, name);
  const uint32_t f = memoize();
  op(kTuple1);
  reduce();
  // ... .__setstate__((f, (), kwargs, None)) ...
  mark();
  get(f);
  empty_tuple();
  json(kwargs);
  none();
  tuple_from_mark();
  build();
  // ... ()
  empty_tuple();
  reduce();
}

void Writer::method(uint32_t obj, const std::string& name) {
  global("builtins", "getattr");
  mark();
  get(obj);
  str(name);
  tuple_from_mark();
  reduce();
}

}  // namespace sf::pickle
