#include "trainer/build_info.h"

#include <ATen/Context.h>
#include <torch/version.h>

namespace sf::trainer {

std::string torch_version() {
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
}

bool torch_has_cuda() { return at::hasCUDA(); }

std::string cuda_version() {
#ifdef STYLEFORGE_WITH_CUDA
  return at::hasCUDA() ? "available" : "built, no device";
#else
  return "none";
#endif
}

}  // namespace sf::trainer
