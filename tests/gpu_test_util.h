// Shared by the Gpu* suites (tests/gpu_tests.sh runs them with one MPI rank per visible GPU).
#pragma once

#include <c10/core/Device.h>
#include <mpi.h>

namespace sf::gpu_test {

// True on MPI world rank 0 (and without MPI): the rank that prints.
inline bool world_rank0() {
  int init = 0, r = 0;
  MPI_Initialized(&init);
  if (init) MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r == 0;
}

inline const c10::Device kCuda(c10::kCUDA, 0);

}  // namespace sf::gpu_test
