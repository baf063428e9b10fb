// Entry point of styleforge_tests, the single GoogleTest binary (ctest runs it once per label).
// Under mpirun (the `mpi` label) MPI is initialised and only rank 0 prints; every rank's result
// counts, because mpirun fails when any rank exits non-zero.
#include <gtest/gtest.h>

#include "sharding/topology.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  sf::sharding::MpiSession mpi(sf::sharding::launched_by_mpi());
  if (mpi.active()) {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank != 0) {
      auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
      delete listeners.Release(listeners.default_result_printer());
    }
  }
  return RUN_ALL_TESTS();
}
