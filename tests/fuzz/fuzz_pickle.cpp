// The pickle reader (trainer/pickle.h): opcodes of protocols 0-5, the allow-list, nesting (the
// parse and the destruction of deeply nested values are iterative), then the JSON conversion
// and the module walk the importer does.
#include "trainer/pickle.h"

#include <memory>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto buf = std::make_shared<const std::string>(reinterpret_cast<const char*>(data), size);
  try {
    sf::pickle::ValuePtr v = sf::pickle::load(buf, {"fuzz.pkl"});
    try {
      sf::pickle::to_json(*v, "fuzz.pkl");
    } catch (const sf::pickle::Error&) {
    }
    if (v->is(sf::pickle::Kind::Object)) {
      try {
        sf::pickle::module_state_dict(*v, "fuzz.pkl");
      } catch (const sf::pickle::Error&) {
      }
    }
  } catch (const sf::pickle::Error&) {
  }
  return 0;
}
