// Entry point of styleforge_tests, the single GoogleTest binary (ctest runs it once per label).
// Under mpirun (the `mpi` and `gpu` labels) MPI is initialised; rank 0 prints the usual report and
// every other rank prints only its failures, prefixed with its rank. Every rank's result counts,
// because mpirun fails when any rank exits non-zero.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "sharding/topology.h"

namespace {

class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  // The test's name is kept from OnTestStart: gtest holds its own lock while it reports a result.
  void OnTestStart(const ::testing::TestInfo& t) override {
    test_ = std::string(t.test_suite_name()) + "." + t.name();
  }
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "[rank %d] FAILED %s at %s:%d\n%s\n", rank_, test_.c_str(),
                 r.file_name() ? r.file_name() : "?", r.line_number(), r.message());
    std::fflush(stderr);
  }

 private:
  int rank_;
  std::string test_ = "(outside a test)";
};

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  sf::sharding::MpiSession mpi(sf::sharding::launched_by_mpi());
  if (mpi.active()) {
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (rank != 0) {
      auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
      delete listeners.Release(listeners.default_result_printer());
      listeners.Append(new RankFailurePrinter(rank));
    }
  }
  return RUN_ALL_TESTS();
}
