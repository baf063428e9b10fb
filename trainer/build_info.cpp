#include "trainer/build_info.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <torch/version.h>

#include "trainer/device.h"
#ifdef STYLEFORGE_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace sf::trainer {

std::string torch_version() {
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
}

bool torch_has_cuda() {
#ifdef STYLEFORGE_WITH_CUDA
  return true;
#else
  return false;
#endif
}

std::string cuda_version() {
#ifdef STYLEFORGE_WITH_CUDA
  auto fmt = [](int v) { return std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10); };
  int rt = 0;
  std::string s = fmt(CUDART_VERSION);
  if (cudaRuntimeGetVersion(&rt) == cudaSuccess) s += " (runtime " + fmt(rt) + ")";
  int drv = 0;
  if (cudaDriverGetVersion(&drv) == cudaSuccess && drv > 0)
    s += ", driver " + fmt(drv);
  else
    s += ", no driver";
  return s;
#else
  return "none";
#endif
}

std::string cudnn_version() {
#ifdef STYLEFORGE_WITH_CUDA
  try {
    const long v = at::detail::getCUDAHooks().versionCuDNN();
    if (v <= 0) return "none";
    // cuDNN 9 encodes major*10000 + minor*100 + patch.
    return std::to_string(v / 10000) + "." + std::to_string((v % 10000) / 100) + "." + std::to_string(v % 100);
  } catch (const std::exception&) {
    return "unknown";
  }
#else
  return "none";
#endif
}

int gpu_count() { return visible_gpu_count(); }

std::string cpu_threads() {
#ifdef _OPENMP
  return "OpenMP " + std::to_string(_OPENMP) + ", " + std::to_string(at::get_num_threads()) +
         " threads (--threads sets them)";
#else
  return "built without OpenMP: our CPU loops run on one thread";
#endif
}

}  // namespace sf::trainer
