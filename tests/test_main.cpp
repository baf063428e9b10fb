// Entry point of styleforge_tests, the single GoogleTest binary (ctest runs it once per label).
#include <gtest/gtest.h>

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
