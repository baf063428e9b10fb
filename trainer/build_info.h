// Facts about the LibTorch styleforge was built against, for `styleforge version` (torch-free header).
#pragma once

#include <string>

namespace sf::trainer {

std::string torch_version();   // e.g. "2.11.0"
bool torch_has_cuda();         // the LibTorch found was built with CUDA
std::string cuda_version();    // "13.0 (runtime 13.0)" or "none"
std::string cudnn_version();   // e.g. "9.19.0", or "none"
int gpu_count();               // GPUs this process sees (0 without a driver or without CUDA)
std::string cpu_threads();     // how our CPU loops share threads: "OpenMP 201511, 2 threads" or why not

}  // namespace sf::trainer
