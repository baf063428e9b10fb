#include "trainer/device.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Context.h>

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <stdexcept>

#ifdef STYLEFORGE_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAFunctions.h>
#endif

namespace sf::trainer {

int visible_gpu_count() {
#ifdef STYLEFORGE_WITH_CUDA
  try {
    return static_cast<int>(c10::cuda::device_count());
  } catch (const std::exception&) {
    return 0;
  }
#else
  return 0;
#endif
}

c10::Device resolve_device(const std::string& spec, int local_rank, int local_size, bool shared_ok) {
  if (spec == "cpu") return c10::Device(c10::kCPU);
  const int n = visible_gpu_count();
  const char* cvd = std::getenv("CUDA_VISIBLE_DEVICES");
  const std::string seen = std::string("CUDA_VISIBLE_DEVICES=") + (cvd ? cvd : "(unset)");
  if (spec == "auto" && n == 0) return c10::Device(c10::kCPU);
  if (spec != "auto" && spec != "cuda" && spec.rfind("cuda:", 0) != 0)
    throw std::invalid_argument("--device must be auto, cpu, cuda or cuda:N, got '" + spec + "'");
  if (n == 0)
    throw std::invalid_argument("--device " + spec + ": no GPU is visible to this process (" + seen +
                                (at::hasCUDA() ? "" : "; this LibTorch has no CUDA") + ")");
  if (spec.rfind("cuda:", 0) == 0) {
    int idx = -1;
    try {
      idx = std::stoi(spec.substr(5));
    } catch (const std::exception&) {
    }
    if (idx < 0 || idx >= n)
      throw std::invalid_argument("--device " + spec + ": only " + std::to_string(n) + " GPU(s) visible (" + seen + ")");
    return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(idx));
  }
  // One GPU per trainer: the trainer's index among the trainers on this host. A single visible GPU
  // is the per-task binding of Slurm (--gpus-per-task=1) or a one-GPU machine.
  if (n == 1) {
    if (local_size > 1 && !shared_ok)
      throw std::invalid_argument(std::to_string(local_size) + " trainers on this host see the same single GPU (" + seen +
                                  "); bind one GPU per task, start fewer trainers, or pass --shared-gpu");
    return c10::Device(c10::kCUDA, 0);
  }
  if (local_size > n && !shared_ok)
    throw std::invalid_argument(std::to_string(local_size) + " trainers on this host but only " + std::to_string(n) +
                                " GPUs visible (" + seen + "); start at most one trainer per GPU or pass --shared-gpu");
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(local_rank % n));
}

std::string describe_device(c10::Device d) {
  if (!d.is_cuda()) return d.str();
#ifdef STYLEFORGE_WITH_CUDA
  const cudaDeviceProp* p = at::cuda::getDeviceProperties(d.index());
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s (%s, %.1f GiB, PCI %04x:%02x:%02x.0, sm_%d%d)", d.str().c_str(), p->name,
                static_cast<double>(p->totalGlobalMem) / (1ull << 30), p->pciDomainID, p->pciBusID, p->pciDeviceID,
                p->major, p->minor);
  return buf;
#else
  return d.str();
#endif
}

double device_physical_id(c10::Device d) {
  if (!d.is_cuda()) return -1;
#ifdef STYLEFORGE_WITH_CUDA
  const cudaDeviceProp* p = at::cuda::getDeviceProperties(d.index());
  return static_cast<double>(p->pciDomainID) * 65536.0 + p->pciBusID * 256.0 + p->pciDeviceID;
#else
  return d.index();
#endif
}

void apply_backend_flags(bool cudnn_benchmark, bool allow_tf32) {
  at::globalContext().setBenchmarkCuDNN(cudnn_benchmark);
  at::globalContext().setAllowTF32CuBLAS(allow_tf32);
  at::globalContext().setAllowTF32CuDNN(allow_tf32);
}

void require_device(const at::Tensor& t, const std::string& what, c10::Device device) {
  if (t.defined() && t.device() != device)
    throw std::runtime_error(what + " is on " + t.device().str() + ", the step runs on " + device.str() +
                             " (a tensor created on the wrong device)");
}

void require_device(const ParamStore& store, const std::string& what, c10::Device device) {
  for (const auto& e : store.entries()) {
    require_device(e.tensor, what + "." + e.name, device);
    if (!e.is_buffer) require_device(e.tensor.grad(), what + "." + e.name + ".grad", device);
  }
}

at::Generator make_device_generator(c10::Device device, uint64_t seed) {
  if (!device.is_cuda()) return at::make_generator<at::CPUGeneratorImpl>(seed);
  at::Generator g = at::globalContext().defaultGenerator(device).clone();
  {
    std::lock_guard<std::mutex> lock(g.mutex());
    g.set_current_seed(seed);
  }
  return g;
}

}  // namespace sf::trainer
