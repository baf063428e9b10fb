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

struct Run {
  int rc;
  std::string out;
};

Run run(const std::string& args) {
  std::string cmd = std::string(STYLEFORGE_BINARY) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (p && fgets(buf, sizeof buf, p)) out += buf;
  int status = p ? pclose(p) : -1;
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST(DataCli, PackExitCodesAndMessages) {
  ScratchDir tmp("cli");
  std::string dest = tmp / "t.h5";
  Run ok = run("pack --quiet --source " + fixture("tfr_rgb16_cond") + " --dest " + dest);
  EXPECT_EQ(ok.rc, 0) << ok.out;
  EXPECT_NE(ok.out.find("packed 12 images 16x16x3"), std::string::npos) << ok.out;
  EXPECT_EQ(sf::data::PackReader(dest).size(), 12);

  Run again = run("pack --quiet --source " + fixture("tfr_rgb16_cond") + " --dest " + dest);
  EXPECT_EQ(again.rc, 1);
  EXPECT_NE(again.out.find("--force"), std::string::npos) << again.out;

  Run crc = run("pack --quiet --source " + fixture("corrupt_crc.tfrecords") + " --dest " + (tmp / "c.h5"));
  EXPECT_EQ(crc.rc, 1);
  EXPECT_NE(crc.out.find("CRC mismatch"), std::string::npos) << crc.out;
  EXPECT_EQ(std::count(crc.out.begin(), crc.out.end(), '\n'), 1) << crc.out;
  EXPECT_FALSE(std::filesystem::exists(tmp / "c.h5"));

  Run usage = run("pack --source x");
  EXPECT_EQ(usage.rc, 2) << usage.out;
  Run help = run("bench-data --help");
  EXPECT_EQ(help.rc, 0) << help.out;
  EXPECT_NE(help.out.find("--batch"), std::string::npos);
}

}  // namespace

#endif  // STYLEFORGE_BINARY
