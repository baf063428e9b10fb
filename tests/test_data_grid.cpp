// Snapshot image grids: which dataset indices the grid shows (sharding/grid.h) against numpy and
// the reference's setup_snapshot_image_grid, and the PNG tiling and pixel arithmetic of
// save_image_grid (data/grid.h).
//
// The expected values were produced once with numpy 1.24 by running the reference's two
// functions verbatim on plain arrays (their bodies copied into a script, with training_set
// replaced by a length N and a label array), e.g.
//   /usr/bin/python3 -c 'import numpy as np; rnd = np.random.RandomState(0); a = list(range(10));
//                        rnd.shuffle(a); print([a[i % 10] for i in range(7 * 4)])'
// for the first case; labels went through tuple(label.flat[::-1]) and sorted() as there.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <vector>

#include "data/grid.h"
#include "data/image.h"
#include "sharding/grid.h"
#include "tests/test_data_util.h"

namespace fs = std::filesystem;
using sf::sharding::GridPlan;
using sf::sharding::snapshot_grid;
using sf::test::ScratchDir;

namespace {

std::vector<std::vector<float>> class_labels(const std::vector<int>& cls) {
  std::vector<std::vector<float>> out;
  for (int c : cls) out.push_back({static_cast<float>(c)});
  return out;
}

TEST(GridPlan, SizeFromResolution) {
  GridPlan p = snapshot_grid(100, 64, 64, nullptr);
  EXPECT_EQ(p.gw, 32);  // 7680 // 64 = 120, clipped to 32
  EXPECT_EQ(p.gh, 32);
  EXPECT_EQ(p.indices.size(), 1024u);
  p = snapshot_grid(100, 256, 256, nullptr);
  EXPECT_EQ(p.gw, 30);
  EXPECT_EQ(p.gh, 16);
  p = snapshot_grid(100, 2048, 1024, nullptr);  // W = 2048, H = 1024
  EXPECT_EQ(p.gw, 7);                            // 3, clipped to 7
  EXPECT_EQ(p.gh, 4);
  EXPECT_THROW(snapshot_grid(0, 64, 64, nullptr), std::invalid_argument);
}

TEST(GridPlan, UnconditionalMatchesNumpy) {
  GridPlan p = snapshot_grid(10, 1024, 1024, nullptr, 0);
  EXPECT_EQ(p.gw, 7);
  EXPECT_EQ(p.gh, 4);
  EXPECT_EQ(p.indices, (std::vector<int64_t>{2, 8, 4, 9, 1, 6, 7, 3, 0, 5, 2, 8, 4, 9,
                                             1, 6, 7, 3, 0, 5, 2, 8, 4, 9, 1, 6, 7, 3}));
  std::vector<std::vector<float>> none;  // empty labels: unconditional
  p = snapshot_grid(5, 1024, 512, &none, 123);
  EXPECT_EQ(p.gw, 7);
  EXPECT_EQ(p.gh, 8);
  std::vector<int64_t> want;
  for (int i = 0; i < 56; ++i) want.push_back(std::vector<int64_t>{1, 3, 4, 0, 2}[i % 5]);
  EXPECT_EQ(p.indices, want);
  // 1000 images at 64x64: 1024 cells, so the shuffled order wraps after 1000.
  p = snapshot_grid(1000, 64, 64, nullptr, 0);
  EXPECT_EQ(std::vector<int64_t>(p.indices.begin(), p.indices.begin() + 16),
            (std::vector<int64_t>{993, 859, 298, 553, 672, 971, 27, 231, 306, 706, 496, 558, 784, 239, 578, 55}));
  EXPECT_EQ(std::vector<int64_t>(p.indices.begin() + 1000, p.indices.begin() + 1008),
            (std::vector<int64_t>{993, 859, 298, 553, 672, 971, 27, 231}));
  EXPECT_EQ(std::accumulate(p.indices.begin(), p.indices.end(), int64_t{0}), 510131);
}

TEST(GridPlan, ClassLabelsOneLabelPerRow) {
  std::vector<int> cls;
  for (int i = 0; i < 12; ++i) cls.push_back(i % 3);
  auto labels = class_labels(cls);
  GridPlan p = snapshot_grid(12, 1024, 1024, &labels, 0);
  EXPECT_EQ(p.indices, (std::vector<int64_t>{6, 9, 3, 0, 6, 9, 3, 1, 7, 4, 10, 1, 7, 4,
                                             11, 2, 8, 5, 11, 2, 8, 0, 6, 9, 3, 0, 6, 9}));
}

TEST(GridPlan, VectorLabelsSortedReversed) {
  // Reversed tuples sort as (0,0) < (0,0.5) < (0,1) < (1,0) < (1,1): rows show 3, 6, {1,5}, {0,4}.
  std::vector<std::vector<float>> labels = {{0, 1}, {1, 0}, {1, 1}, {0, 0}, {0, 1}, {1, 0}, {0.5f, 0}};
  GridPlan p = snapshot_grid(7, 1024, 1024, &labels, 5);
  EXPECT_EQ(p.indices, (std::vector<int64_t>{3, 3, 3, 3, 3, 3, 3, 6, 6, 6, 6, 6, 6, 6,
                                             1, 5, 1, 5, 1, 5, 1, 4, 0, 4, 0, 4, 0, 4}));
}

TEST(GridPlan, XflipRepeatsLabels) {
  // len(training_set) = 12 with x-flip over 6 images; index i has the label of image i % 6.
  auto labels = class_labels({0, 1, 0, 2, 1, 0});
  GridPlan p = snapshot_grid(12, 1024, 1024, &labels, 7);
  EXPECT_EQ(p.indices, (std::vector<int64_t>{6, 11, 0, 5, 2, 8, 6, 10, 4, 1, 7, 10, 4, 1,
                                             9, 3, 9, 3, 9, 3, 9, 11, 0, 5, 2, 8, 6, 11}));
  auto bad = class_labels({0, 1, 0, 2, 1});
  EXPECT_THROW(snapshot_grid(12, 1024, 1024, &bad, 7), std::invalid_argument);
}

TEST(GridImage, PixelArithmeticMatchesNumpy) {
  // np.rint(((x - lo) * (255 / (hi - lo))).astype(float32)).clip(0, 255), drange [-1, 1].
  const float xs[] = {-1.0f, -0.5f, 0.0f, 0.00392157f, 0.5f, 0.99f, 1.0f, 1.5f, -1.2f};
  const int want[] = {0, 64, 128, 128, 191, 254, 255, 255, 0};
  for (int i = 0; i < 9; ++i) EXPECT_EQ(sf::data::grid_pixel(xs[i], -1, 1), want[i]) << xs[i];
  // Values where float32 arithmetic (numpy) and float64 arithmetic round to different integers.
  EXPECT_EQ(sf::data::grid_pixel(0.8470587134361267f, -1, 1), 236);  // float64 gives 235
  EXPECT_EQ(sf::data::grid_pixel(0.10196078568696976f, -1, 1), 140);  // float64 gives 141
  // Round half to even, clipping, NaN and infinities (drange [0, 255] is the identity scale).
  EXPECT_EQ(sf::data::grid_pixel(0.5f, 0, 255), 0);
  EXPECT_EQ(sf::data::grid_pixel(1.5f, 0, 255), 2);
  EXPECT_EQ(sf::data::grid_pixel(2.5f, 0, 255), 2);
  EXPECT_EQ(sf::data::grid_pixel(254.5f, 0, 255), 254);
  EXPECT_EQ(sf::data::grid_pixel(253.5f, 0, 255), 254);
  EXPECT_EQ(sf::data::grid_pixel(-0.4f, 0, 255), 0);
  EXPECT_EQ(sf::data::grid_pixel(1e9f, 0, 255), 255);
  EXPECT_EQ(sf::data::grid_pixel(std::numeric_limits<float>::infinity(), 0, 255), 255);
  EXPECT_EQ(sf::data::grid_pixel(-std::numeric_limits<float>::infinity(), 0, 255), 0);
  EXPECT_EQ(sf::data::grid_pixel(std::nanf(""), 0, 255), 0);
}

TEST(GridImage, TilingOrderRgb) {
  // 6 images [3, 2, 2] holding 0..71 in order, gw 3 x gh 2. Expected: numpy's
  // img.reshape(gh, gw, C, H, W).transpose(0, 3, 1, 4, 2).reshape(gh * H, gw * W, C), flattened.
  const std::vector<int> want = {0,  4,  8,  1,  5,  9,  12, 16, 20, 13, 17, 21, 24, 28, 32, 25, 29, 33,
                                 2,  6,  10, 3,  7,  11, 14, 18, 22, 15, 19, 23, 26, 30, 34, 27, 31, 35,
                                 36, 40, 44, 37, 41, 45, 48, 52, 56, 49, 53, 57, 60, 64, 68, 61, 65, 69,
                                 38, 42, 46, 39, 43, 47, 50, 54, 58, 51, 55, 59, 62, 66, 70, 63, 67, 71};
  std::vector<uint8_t> u8(72);
  std::vector<float> f32(72);
  for (int i = 0; i < 72; ++i) {
    u8[i] = static_cast<uint8_t>(i);
    f32[i] = static_cast<float>(i) / 127.5f - 1.0f;  // maps back to i with drange [-1, 1]
  }
  ScratchDir tmp("grid_rgb");
  sf::data::write_image_grid(tmp / "u8.png", u8.data(), 6, 3, 2, 2, 3, 2);
  sf::data::write_image_grid(tmp / "f32.png", f32.data(), 6, 3, 2, 2, -1.0f, 1.0f, 3, 2);
  for (const char* name : {"u8.png", "f32.png"}) {
    sf::data::Image img = sf::data::read_image_file(tmp / name);
    ASSERT_EQ(img.width, 6);
    ASSERT_EQ(img.height, 4);
    ASSERT_EQ(img.channels, 3);
    for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(img.pixels[i], want[i]) << name << " sample " << i;
  }
  // Nothing but the two PNGs (no temporaries left).
  int files = 0;
  for (const auto& e : fs::directory_iterator(tmp.path)) files += e.is_regular_file();
  EXPECT_EQ(files, 2);
}

TEST(GridImage, TilingOrderGrayPixelByPixel) {
  // 8 gray images of 3x2 (H=3, W=2), gw 4 x gh 2; image i has value 10 * i + 2 * y + x.
  const int n = 8, h = 3, w = 2, gw = 4, gh = 2;
  std::vector<uint8_t> src(n * h * w);
  for (int i = 0; i < n; ++i)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) src[(i * h + y) * w + x] = static_cast<uint8_t>(10 * i + 2 * y + x);
  ScratchDir tmp("grid_gray");
  sf::data::write_image_grid(tmp / "g.png", src.data(), n, 1, h, w, gw, gh);
  sf::data::Image img = sf::data::read_image_file(tmp / "g.png");
  ASSERT_EQ(img.channels, 1);
  ASSERT_EQ(img.width, gw * w);
  ASSERT_EQ(img.height, gh * h);
  for (int Y = 0; Y < gh * h; ++Y)
    for (int X = 0; X < gw * w; ++X) {
      int i = (Y / h) * gw + X / w;  // row-major over the grid
      EXPECT_EQ(img.row(Y)[X], 10 * i + 2 * (Y % h) + X % w) << "at " << X << "," << Y;
    }
  EXPECT_THROW(sf::data::write_image_grid(tmp / "bad.png", src.data(), n, 1, h, w, 3, 2), sf::data::ImageError);
  // A channel mapping that names a channel the images lack.
  EXPECT_THROW(sf::data::write_image_grid(tmp / "bad.png", src.data(), n, 1, h, w, gw, gh, sf::data::ChannelView{{1}}),
               sf::data::ImageError);
  EXPECT_FALSE(fs::exists(tmp / "bad.png"));
}

TEST(GridImage, AnyChannelCountPanelsAndRgbMapping) {
  // 6 images of C = 4 channels, 3x2 (H=3, W=2), gw 3 x gh 2; value 40 * i + 10 * ch + 2 * y + x.
  const int n = 6, c = 4, h = 3, w = 2, gw = 3, gh = 2;
  std::vector<uint8_t> src(n * c * h * w);
  std::vector<float> f32(src.size());
  auto value = [](int i, int ch, int y, int x) { return 40 * i + 10 * ch + 2 * y + x; };
  for (int i = 0; i < n; ++i)
    for (int ch = 0; ch < c; ++ch)
      for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
          const size_t at = ((static_cast<size_t>(i) * c + ch) * h + y) * w + x;
          src[at] = static_cast<uint8_t>(value(i, ch, y, x));
          f32[at] = static_cast<float>(value(i, ch, y, x)) / 127.5f - 1.0f;
        }
  ScratchDir tmp("grid_nchan");
  // Default: one gray panel per channel, side by side within each cell.
  sf::data::write_image_grid(tmp / "panels.png", src.data(), n, c, h, w, gw, gh);
  sf::data::write_image_grid(tmp / "panels_f32.png", f32.data(), n, c, h, w, -1.0f, 1.0f, gw, gh);
  for (const char* name : {"panels.png", "panels_f32.png"}) {
    sf::data::Image img = sf::data::read_image_file(tmp / name);
    ASSERT_EQ(img.channels, 1);
    ASSERT_EQ(img.width, gw * c * w);
    ASSERT_EQ(img.height, gh * h);
    for (int Y = 0; Y < img.height; ++Y)
      for (int X = 0; X < img.width; ++X) {
        const int cell = X / (c * w), ch = (X % (c * w)) / w, i = (Y / h) * gw + cell;
        EXPECT_EQ(img.row(Y)[X], value(i, ch, Y % h, X % w)) << name << " at " << X << "," << Y;
      }
  }
  // Mapping 3,0,2 to R,G,B; one index gives gray of that channel.
  sf::data::ChannelView rgb = sf::data::parse_channel_view("3,0,2");
  sf::data::write_image_grid(tmp / "rgb.png", src.data(), n, c, h, w, gw, gh, rgb);
  sf::data::Image img = sf::data::read_image_file(tmp / "rgb.png");
  ASSERT_EQ(img.channels, 3);
  ASSERT_EQ(img.width, gw * w);
  for (int Y = 0; Y < img.height; ++Y)
    for (int X = 0; X < img.width; ++X) {
      const int i = (Y / h) * gw + X / w;
      EXPECT_EQ(img.row(Y)[3 * X + 0], value(i, 3, Y % h, X % w));
      EXPECT_EQ(img.row(Y)[3 * X + 1], value(i, 0, Y % h, X % w));
      EXPECT_EQ(img.row(Y)[3 * X + 2], value(i, 2, Y % h, X % w));
    }
  sf::data::Image one = sf::data::view_image(src.data() + c * h * w, c, h, w, sf::data::parse_channel_view("1"));
  ASSERT_EQ(one.channels, 1);
  ASSERT_EQ(one.width, w);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) EXPECT_EQ(one.row(y)[x], value(1, 1, y, x));
  // Two channels: two panels; 3 channels stay RGB.
  EXPECT_EQ(sf::data::view_image(src.data(), 2, h, w).width, 2 * w);
  EXPECT_EQ(sf::data::view_image(src.data(), 3, h, w).channels, 3);
  EXPECT_EQ(rgb.describe(c), "RGB from channels 3,0,2");
  EXPECT_EQ(sf::data::ChannelView{}.describe(c), "4 gray panels");
  for (const char* bad : {"0,1", "a", "0,1,2,3", "1,,2", "16", "-1"})
    EXPECT_THROW(sf::data::parse_channel_view(bad), std::invalid_argument) << bad;
  EXPECT_TRUE(sf::data::parse_channel_view("panels").map.empty());
  EXPECT_THROW(sf::data::view_image(src.data(), c, h, w, sf::data::parse_channel_view("0,1,4")), sf::data::ImageError);
}

}  // namespace
