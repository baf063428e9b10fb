// The `pack` and `bench-data` subcommands through the real binary: exit codes, the one-line
// summary and one-line errors. Built only with the full tree (the binary needs the trainer).
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "data/pack.h"
#include "tests/test_data_util.h"

#ifdef STYLEFORGE_BINARY

namespace {

using sf::test::fixture;
using sf::test::ScratchDir;

using sf::test::CliResult;
CliResult run_cli(const std::string& args) { return sf::test::run_styleforge(args); }

TEST(DataCli, PackExitCodesAndMessages) {
  ScratchDir tmp("cli");
  std::string dest = tmp / "t.h5";
  CliResult ok = run_cli("pack --quiet --source " + fixture("tfr_rgb16_cond") + " --dest " + dest);
  EXPECT_EQ(ok.rc, 0) << ok.out;
  EXPECT_NE(ok.out.find("packed 12 images 16x16x3"), std::string::npos) << ok.out;
  EXPECT_EQ(sf::data::PackReader(dest).size(), 12);

  CliResult again = run_cli("pack --quiet --source " + fixture("tfr_rgb16_cond") + " --dest " + dest);
  EXPECT_EQ(again.rc, 1);
  EXPECT_NE(again.out.find("--force"), std::string::npos) << again.out;

  CliResult crc = run_cli("pack --quiet --source " + fixture("corrupt_crc.tfrecords") + " --dest " + (tmp / "c.h5"));
  EXPECT_EQ(crc.rc, 1);
  EXPECT_NE(crc.out.find("CRC mismatch"), std::string::npos) << crc.out;
  EXPECT_EQ(std::count(crc.out.begin(), crc.out.end(), '\n'), 1) << crc.out;
  EXPECT_FALSE(std::filesystem::exists(tmp / "c.h5"));

  CliResult usage = run_cli("pack --source x");
  EXPECT_EQ(usage.rc, 2) << usage.out;
  CliResult help = run_cli("bench-data --help");
  EXPECT_EQ(help.rc, 0) << help.out;
  EXPECT_NE(help.out.find("--batch"), std::string::npos);
}

}  // namespace

#endif  // STYLEFORGE_BINARY
