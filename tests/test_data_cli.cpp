// The `pack` and `bench-data` subcommands through the real binary: exit codes, the one-line
// summary and one-line errors. Built only with the full tree (the binary needs the trainer).
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "data/nifti_write.h"
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

// Volumes: --help names the volume options, --dry-run prints the counts and writes nothing, a
// mixed folder is one line with exit 1.
TEST(DataCli, PackVolumesDryRunHelpAndMixedFolder) {
  ScratchDir tmp("cli_vol");
  namespace fs = std::filesystem;
  CliResult help = run_cli("pack --help");
  EXPECT_EQ(help.rc, 0);
  for (const char* opt : {"--axis", "--dry-run", "--source-kind", "--channels-from", "--mask-glob", "--mask-min-voxels", "--min-foreground",
                          "--keep-classes", "percentile"})
    EXPECT_NE(help.out.find(opt), std::string::npos) << opt;

  // One RAS volume 16x16x6 with a mask whose slices 2 and 3 hold 4 lesion voxels.
  fs::create_directories(tmp.path / "src/P1");
  sf::data::Volume v;
  v.nx = v.ny = 16, v.nz = 6;
  v.data.resize(16 * 16 * 6);
  for (size_t i = 0; i < v.data.size(); ++i) v.data[i] = static_cast<float>(i % 97);
  sf::data::write_nifti(tmp / "src/P1/P1_t1.nii.gz", v);
  sf::data::Volume m = v;
  std::fill(m.data.begin(), m.data.end(), 0.0f);
  for (int k : {2, 3})
    for (int i = 0; i < 4; ++i) m.data[static_cast<size_t>(i + 16 * 16 * k)] = 1.0f;
  sf::data::write_nifti(tmp / "src/P1/P1_seg.nii.gz", m, sf::data::NiftiStoreType::UInt8);
  const std::string dest = tmp / "v.h5";
  CliResult dry = run_cli("pack --source " + (tmp / "src") + " --dest " + dest + " --labels mask --mask-glob '*_seg.nii.gz' --dry-run");
  EXPECT_EQ(dry.rc, 0) << dry.out;
  EXPECT_NE(dry.out.find("classes: no-lesion 4, lesion 2"), std::string::npos) << dry.out;
  EXPECT_NE(dry.out.find("1 NIfTI volumes"), std::string::npos) << dry.out;
  EXPECT_NE(dry.out.find("dry run: would pack 6 images 16x16x1"), std::string::npos) << dry.out;
  EXPECT_FALSE(fs::exists(dest));
  CliResult real = run_cli("pack --quiet --source " + (tmp / "src") + " --dest " + dest + " --labels mask --mask-glob '*_seg.nii.gz'");
  EXPECT_EQ(real.rc, 0) << real.out;
  EXPECT_NE(real.out.find("classes: no-lesion 4, lesion 2"), std::string::npos) << real.out;
  EXPECT_EQ(sf::data::PackReader(dest).info().class_counts, (std::vector<int64_t>{4, 2}));

  std::ofstream(tmp / "src/P1/x.png") << "not read";  // counted by its name
  CliResult mixed = run_cli("pack --quiet --source " + (tmp / "src") + " --dest " + (tmp / "m.h5"));
  EXPECT_EQ(mixed.rc, 1) << mixed.out;
  EXPECT_EQ(std::count(mixed.out.begin(), mixed.out.end(), '\n'), 1) << mixed.out;
  EXPECT_NE(mixed.out.find("P1/x.png"), std::string::npos) << mixed.out;
  EXPECT_FALSE(fs::exists(tmp / "m.h5"));
}

}  // namespace

#endif  // STYLEFORGE_BINARY
