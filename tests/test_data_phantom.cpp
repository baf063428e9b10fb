// MRI-like head phantoms (data/phantom.h): determinism, labels and lesions, intensity ranges, the
// folder layout with dataset.json, packing it with labels, and refusing a non-empty destination.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/image.h"
#include "data/import.h"
#include "data/pack.h"
#include "data/phantom.h"
#include "tests/test_data_util.h"

namespace fs = std::filesystem;
using namespace sf::data;
using sf::test::ScratchDir;

namespace {

double mean_abs_diff(const Image& a, const Image& b, double cx, double cy, double r_in, double r_out) {
  double sum = 0;
  int n = 0;
  for (int y = 0; y < a.height; ++y)
    for (int x = 0; x < a.width; ++x) {
      double d = std::hypot(x + 0.5 - cx, y + 0.5 - cy);
      if (d < r_in || d >= r_out) continue;
      sum += std::abs(int(a.row(y)[x]) - int(b.row(y)[x]));
      ++n;
    }
  return n ? sum / n : 0.0;
}

double region_mean(const Image& a, int x0, int y0, int x1, int y1) {
  double s = 0;
  for (int y = y0; y < y1; ++y)
    for (int x = x0; x < x1; ++x) s += a.row(y)[x];
  return s / ((x1 - x0) * (y1 - y0));
}

TEST(PhantomRender, DeterministicFromSeedAndIndex) {
  PhantomOptions o;
  int l1 = -1, l2 = -1;
  Image a = render_phantom(o, 7, &l1);
  Image b = render_phantom(o, 7, &l2);
  EXPECT_EQ(a.width, 64);
  EXPECT_EQ(a.height, 64);
  EXPECT_EQ(a.channels, 1);
  EXPECT_EQ(a.pixels, b.pixels);
  EXPECT_EQ(l1, l2);
  EXPECT_NE(render_phantom(o, 8).pixels, a.pixels);
  PhantomOptions o2 = o;
  o2.seed = 1;
  EXPECT_NE(render_phantom(o2, 7).pixels, a.pixels);
  // Labels come from integer arithmetic only (splitmix64/xoshiro256**), so they are the same on
  // every platform: these are the first 16 labels of seed 0 at lesion fraction 0.5.
  std::vector<int> labels;
  for (int i = 0; i < 16; ++i) {
    int l;
    render_phantom(o, i, &l);
    labels.push_back(l);
  }
  EXPECT_EQ(labels, (std::vector<int>{1, 0, 1, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0, 1, 0, 1}));
  // Other resolutions render too (and keep the label).
  o.resolution = 128;
  int l3 = -1;
  Image big = render_phantom(o, 7, &l3);
  EXPECT_EQ(big.width, 128);
  EXPECT_EQ(l3, l1);
}

TEST(PhantomRender, LesionFraction) {
  PhantomOptions o;
  o.resolution = 8;  // labels do not depend on the resolution
  int lesions = 0;
  for (int i = 0; i < 400; ++i) {
    int l;
    render_phantom(o, i, &l);
    lesions += l;
  }
  EXPECT_GT(lesions, 160);
  EXPECT_LT(lesions, 240);
  for (double f : {0.0, 1.0}) {
    o.lesion_fraction = f;
    for (int i = 0; i < 20; ++i) {
      int l;
      render_phantom(o, i, &l);
      EXPECT_EQ(l, static_cast<int>(f));
    }
  }
}

TEST(PhantomRender, LesionChangesOnlyTheLesionRegion) {
  // The same index with and without a lesion shows the same head (separate random streams), so
  // the difference is the lesion (and its mass effect) alone.
  for (int idx : {0, 3, 11, 25}) {
    PhantomOptions on, off;
    on.force_lesion = 1;
    off.force_lesion = 0;
    PhantomInfo info;
    int label = -1;
    Image with = render_phantom(on, idx, &label, &info);
    Image without = render_phantom(off, idx);
    EXPECT_EQ(label, 1);
    EXPECT_EQ(info.label, 1);
    ASSERT_GT(info.radius, 1.5);
    EXPECT_GT(info.oedema_radius, info.radius);
    EXPECT_GT(info.lesion_x, 8);
    EXPECT_LT(info.lesion_x, 56);
    EXPECT_GT(info.lesion_y, 8);
    EXPECT_LT(info.lesion_y, 56);
    double inside = mean_abs_diff(with, without, info.lesion_x, info.lesion_y, 0, info.radius);
    double far = mean_abs_diff(with, without, info.lesion_x, info.lesion_y, 4 * info.oedema_radius, 1e9);
    EXPECT_GT(inside, 25.0) << "index " << idx;
    EXPECT_LT(far, 1.0) << "index " << idx;
  }
}

TEST(PhantomRender, IntensityRangeIsSane) {
  for (Weighting w : {Weighting::T1, Weighting::T2}) {
    PhantomOptions o;
    o.weighting = w;
    for (int idx = 0; idx < 10; ++idx) {
      Image img = render_phantom(o, idx);
      // Background corners: Rician noise floor only.
      EXPECT_LT(region_mean(img, 0, 0, 6, 6), 20.0);
      EXPECT_LT(region_mean(img, 58, 58, 64, 64), 20.0);
      // The head is there: a bright tissue somewhere, brain-like grey at the centre.
      double centre = region_mean(img, 26, 26, 38, 38);
      EXPECT_GT(centre, 40.0);
      EXPECT_LT(centre, 220.0);
      uint8_t mx = *std::max_element(img.pixels.begin(), img.pixels.end());
      EXPECT_GT(mx, 150);
      auto saturated = std::count(img.pixels.begin(), img.pixels.end(), uint8_t{255});
      EXPECT_LT(saturated, 40);  // < 1% of the pixels
    }
  }
  // T1 and T2 differ in contrast (CSF dark vs bright), not in anatomy.
  PhantomOptions t1, t2;
  t2.weighting = Weighting::T2;
  EXPECT_NE(render_phantom(t1, 0).pixels, render_phantom(t2, 0).pixels);
  EXPECT_EQ(parse_weighting("T2"), Weighting::T2);
  EXPECT_THROW(parse_weighting("flair"), PhantomError);
  PhantomOptions bad;
  bad.resolution = 4;
  EXPECT_THROW(render_phantom(bad, 0), PhantomError);
  bad = PhantomOptions{};
  bad.lesion_fraction = 1.5;
  EXPECT_THROW(render_phantom(bad, 0), PhantomError);
}

TEST(PhantomFolder, WritesImagesAndLabelsThatPack) {
  ScratchDir tmp("phantoms");
  PhantomOptions o;
  o.resolution = 32;
  o.seed = 3;
  std::string dir = tmp / "ds";
  PhantomFolderSummary s = write_phantom_folder(dir, 12, o);
  EXPECT_EQ(s.count, 12);
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  ASSERT_EQ(names.size(), 13u);
  EXPECT_EQ(names.front(), "dataset.json");
  EXPECT_EQ(names[1], "img00000000.png");
  EXPECT_EQ(names.back(), "img00000011.png");
  for (const auto& e : fs::directory_iterator(tmp.path))  // no temporary folder left beside it
    EXPECT_EQ(e.path().filename().string(), "ds");

  std::ifstream f(dir + "/dataset.json");
  auto j = nlohmann::json::parse(f);
  ASSERT_EQ(j["labels"].size(), 12u);
  int64_t lesions = 0;
  for (int i = 0; i < 12; ++i) {
    int label;
    Image want = render_phantom(o, i, &label);
    char name[32];
    std::snprintf(name, sizeof name, "img%08d.png", i);
    EXPECT_EQ(j["labels"][i][0], name);
    EXPECT_EQ(j["labels"][i][1], label);
    EXPECT_EQ(read_image_file(dir + "/" + name).pixels, want.pixels);
    lesions += label;
  }
  EXPECT_EQ(s.lesions, lesions);

  // `styleforge pack` reads the folder with its labels as a class pack.
  ImportOptions io;
  io.source = dir;
  io.dest = tmp / "p.h5";
  ImportSummary sum = pack_dataset(io);
  EXPECT_EQ(sum.source_kind, "image-folder");
  PackReader pack(io.dest);
  EXPECT_EQ(pack.size(), 12);
  EXPECT_EQ(pack.info().resolution, 32);
  EXPECT_EQ(pack.info().channels, 1);
  EXPECT_EQ(pack.info().label_kind, LabelKind::Class);
  EXPECT_EQ(pack.info().label_dim, lesions > 0 ? 2 : 1);
  std::vector<uint8_t> px(pack.info().image_bytes());
  for (int i = 0; i < 12; ++i) {
    EXPECT_EQ(pack.class_label(i), j["labels"][i][1].get<int>());
    pack.read_image(i, px.data());
    EXPECT_EQ(px, render_phantom(o, i).pixels);
  }
}

TEST(PhantomFolder, RefusesNonEmptyDestination) {
  ScratchDir tmp("phantoms_refuse");
  PhantomOptions o;
  o.resolution = 16;
  std::string dir = tmp / "ds";
  fs::create_directories(dir);
  write_phantom_folder(dir, 2, o);  // an existing empty folder is fine
  EXPECT_TRUE(fs::exists(dir + "/img00000001.png"));
  { std::ofstream(dir + "/keep.txt") << "mine"; }
  try {
    write_phantom_folder(dir, 3, o);
    FAIL() << "wrote into a non-empty folder";
  } catch (const PhantomError& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(dir), std::string::npos) << msg;
    EXPECT_NE(msg.find("--force"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
  EXPECT_TRUE(fs::exists(dir + "/keep.txt"));
  EXPECT_FALSE(fs::exists(dir + "/img00000002.png"));
  // A file in the way is refused too.
  { std::ofstream(tmp / "file") << "x"; }
  EXPECT_THROW(write_phantom_folder(tmp / "file", 1, o), PhantomError);
  // --force replaces the folder as a whole.
  write_phantom_folder(dir, 3, o, true);
  EXPECT_FALSE(fs::exists(dir + "/keep.txt"));
  EXPECT_TRUE(fs::exists(dir + "/img00000002.png"));
  EXPECT_THROW(write_phantom_folder(tmp / "x", 0, o), PhantomError);
  EXPECT_FALSE(fs::exists(tmp / "x"));
  int entries = 0;
  for (const auto& e : fs::directory_iterator(tmp.path)) entries += e.path().filename().string().find(".tmp-") != std::string::npos;
  EXPECT_EQ(entries, 0);
}

#ifdef STYLEFORGE_BINARY
// `styleforge phantoms` through the real binary (full builds only): exit codes and messages.
int run_cli(const std::string& args, std::string* out) {
  sf::test::CliResult r = sf::test::run_styleforge(args);
  *out += r.out;
  return r.rc;
}

TEST(PhantomCli, WritesRefusesAndChecksOptions) {
  ScratchDir tmp("phantoms_cli");
  std::string dir = tmp / "ds", out;
  EXPECT_EQ(run_cli("phantoms --quiet --dest " + dir + " --count 5 --resolution 16 --seed 2", &out), 0) << out;
  EXPECT_NE(out.find("wrote 5 phantoms 16x16"), std::string::npos) << out;
  EXPECT_TRUE(fs::exists(dir + "/dataset.json"));
  out.clear();
  EXPECT_EQ(run_cli("phantoms --quiet --dest " + dir + " --count 5", &out), 1) << out;
  EXPECT_NE(out.find("not empty"), std::string::npos) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;
  out.clear();
  EXPECT_EQ(run_cli("phantoms --quiet --dest " + dir + " --count 5 --force", &out), 0) << out;
  out.clear();
  EXPECT_EQ(run_cli("phantoms --dest " + (tmp / "y") + " --resolution 48", &out), 2) << out;
  out.clear();
  EXPECT_EQ(run_cli("phantoms --dest " + (tmp / "y") + " --weighting flair", &out), 2) << out;
  out.clear();
  EXPECT_EQ(run_cli("phantoms --count 3", &out), 2) << out;  // --dest is required
  EXPECT_FALSE(fs::exists(tmp / "y"));
}
#endif

}  // namespace
