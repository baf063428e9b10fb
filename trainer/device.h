// Where a rank computes: resolving `--device`, binding trainers to GPUs, the backend switches, and
// the check that every tensor of a step sits on its rank's device.
//
// A device is a value, not a build: the same code runs on the CPU (tests, small runs) and on CUDA.
// resolve_device() maps auto|cpu|cuda|cuda:N to a device for one trainer: "auto" is CUDA when a
// GPU is visible, else the CPU; "cuda" binds the trainer to visible GPU `local_rank` (its index
// among the trainers on its host), which also covers Slurm's per-task binding (one visible GPU per
// task: index 0). More trainers than visible GPUs on a host is an error unless `shared_ok`.
// Thread-safe (no state), except apply_backend_flags(), which sets process-wide switches.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <string>
#include <vector>

#include "trainer/param_store.h"

namespace sf::trainer {

// GPUs this process sees (0 without CUDA LibTorch or without a driver).
int visible_gpu_count();

// Throws std::invalid_argument naming the flag for an unknown spec or a GPU that is not there.
c10::Device resolve_device(const std::string& spec, int local_rank, int local_size, bool shared_ok);

// "cpu", or "cuda:0 (NVIDIA H200, 139.8 GiB, PCI 0000:1a:00.0)".
std::string describe_device(c10::Device d);

// A number identifying the physical GPU of `d` on its host (its PCI address), -1 for the CPU:
// trainers on one host with equal ids share a GPU.
double device_physical_id(c10::Device d);

// The reference's GPU switches: cuDNN benchmark mode, TF32 in cuBLAS and cuDNN matmuls/convs.
void apply_backend_flags(bool cudnn_benchmark, bool allow_tf32);

// Throws std::runtime_error "<what> <name> is on <dev>, the step runs on <device>" for the first
// tensor of `store` (parameters, buffers, gradients) not on `device`.
void require_device(const ParamStore& store, const std::string& what, c10::Device device);
void require_device(const at::Tensor& t, const std::string& what, c10::Device device);

// A generator of `device`'s kind seeded with `seed` (the CPU one for the CPU).
at::Generator make_device_generator(c10::Device device, uint64_t seed);

}  // namespace sf::trainer
