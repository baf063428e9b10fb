// Facts about the LibTorch styleforge was built against, for `styleforge version` (torch-free header).
#pragma once

#include <string>

namespace sf::trainer {

std::string torch_version();   // e.g. "1.13.0"
bool torch_has_cuda();         // the LibTorch found has CUDA and a device is usable
std::string cuda_version();    // CUDA runtime version LibTorch was built with, or "none"

}  // namespace sf::trainer
