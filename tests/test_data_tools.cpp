// External views of packs: h5py (an independent HDF5 reader) sees the documented layout, and
// the bench-data measurement runs end to end on a small synthetic pack.
#include <gtest/gtest.h>

#include <cstdio>
#include <sstream>

#include "data/bench.h"
#include "data/import.h"
#include "data/pack.h"
#include "tests/test_data_util.h"

using namespace sf::data;
using sf::test::fixture;
using sf::test::ScratchDir;

namespace {

int run_h5py_check(const std::string& pack, int64_t n, std::string* out) {
  std::ostringstream cmd;
  cmd << "/usr/bin/python3 " << STYLEFORGE_SOURCE_DIR << "/tests/data_check_pack_h5py.py " << pack << " " << n << " 2>&1";
  FILE* p = popen(cmd.str().c_str(), "r");
  char buf[4096];
  while (p && fgets(buf, sizeof buf, p)) *out += buf;
  return p ? pclose(p) : -1;
}

TEST(DataH5py, ReadsTheDocumentedLayout) {
  ScratchDir tmp("h5py");
  struct Case {
    std::string source, labels;
    int64_t n;
    int gzip;
  };
  for (const Case& c : {Case{"tfr_rgb16_cond", "auto", 12, 0}, Case{"png_gray_16", "auto", 4, 3},
                        Case{"tfr_gray8", "auto", 5, 0}}) {
    ImportOptions o;
    o.source = fixture(c.source);
    o.dest = tmp / (c.source + ".h5");
    o.gzip_level = c.gzip;
    pack_dataset(o);
    std::string out;
    int rc = run_h5py_check(o.dest, c.n, &out);
    EXPECT_EQ(rc, 0) << "needs /usr/bin/python3 with h5py (scripts/install-deps.sh installs python3-h5py): " << out;
    EXPECT_NE(out.find("layout ok"), std::string::npos) << out;
  }
}

TEST(DataBench, MeasuresBothReadersForOneAndTwoRanks) {
  ScratchDir tmp("bench");
  std::string pack = tmp / "syn.h5";
  make_synthetic_pack(pack, 40, 32, 3, 7, false);
  PackReader p(pack);
  EXPECT_EQ(p.size(), 40);
  EXPECT_EQ(p.info().resolution, 32);
  BenchOptions o;
  o.pack = pack;
  o.batch = 8;
  o.seconds = 0.1;
  o.ranks = {1, 2};
  std::ostringstream log;
  auto results = bench_data(o, log);
  ASSERT_EQ(results.size(), 2u);
  for (const auto& r : results) {
    EXPECT_GT(r.hdf5_images_per_s, 0);
    EXPECT_GT(r.png_images_per_s, 0);
  }
  EXPECT_NE(log.str().find("2 reader ranks"), std::string::npos) << log.str();
}

}  // namespace
