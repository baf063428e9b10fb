// The volume importer end to end on volumes written here with data::write_nifti: lesion-mask and
// CSV labels, modalities stacked as channels, the foreground filter, the dry run, mixed folders
// and one-line errors that leave no pack behind. Expected values are computed in the test from
// the arrays it wrote, with its own index arithmetic for orientation (display convention of
// data/orient.h: axial slice s of a canonical RAS array C is row r, column c = C[nx-1-c, ny-1-r, s]).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "data/image.h"
#include "data/import.h"
#include "data/nifti_write.h"
#include "data/pack.h"
#include "data/phantom_volume.h"
#include "data/volume.h"
#include "tests/test_data_util.h"

namespace {

namespace fs = std::filesystem;
using namespace sf::data;
using sf::test::ScratchDir;
using sf::test::one_line;

using Fill = std::function<float(int64_t, int64_t, int64_t)>;

// A 3-D volume whose stored voxel (i, j, k) is fill(i, j, k), with the given affine.
Volume make_volume(int64_t nx, int64_t ny, int64_t nz, const Affine& affine, const Fill& fill) {
  Volume v;
  v.nx = nx, v.ny = ny, v.nz = nz, v.nt = 1;
  v.affine = affine;
  v.data.resize(static_cast<size_t>(nx * ny * nz));
  for (int64_t k = 0; k < nz; ++k)
    for (int64_t j = 0; j < ny; ++j)
      for (int64_t i = 0; i < nx; ++i) v.data[static_cast<size_t>(i + nx * (j + ny * k))] = fill(i, j, k);
  return v;
}

Affine diag_affine(double sx, double sy, double sz, double tx = 0, double ty = 0, double tz = 0) {
  Affine a = identity_affine();
  a[0][0] = sx, a[1][1] = sy, a[2][2] = sz;
  a[0][3] = tx, a[1][3] = ty, a[2][3] = tz;
  return a;
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }


// Nothing named like the pack (the pack or a temporary of it) in its folder.
bool no_pack_left(const std::string& dest) {
  const std::string stem = fs::path(dest).filename().string();
  for (const auto& e : fs::directory_iterator(fs::path(dest).parent_path()))
    if (e.path().filename().string().rfind(stem, 0) == 0) return false;
  return true;
}

// Expects pack_dataset to throw a one-line error containing each of `parts`, and no pack left.
void expect_error(const ImportOptions& o, const std::vector<std::string>& parts) {
  try {
    pack_dataset(o);
    ADD_FAILURE() << "no error";
  } catch (const std::exception& e) {
    const std::string msg = e.what();
    EXPECT_TRUE(one_line(msg)) << msg;
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
  EXPECT_TRUE(no_pack_left(o.dest)) << o.dest;
}

std::vector<uint8_t> read_img(const PackReader& p, int64_t i) {
  std::vector<uint8_t> out(p.info().image_bytes());
  p.read_image(i, out.data());
  return out;
}

// numpy.percentile (linear interpolation) of `v`.
double percentile(std::vector<float> v, double p) {
  std::sort(v.begin(), v.end());
  const double pos = p / 100.0 * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos)), hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (static_cast<double>(v[hi]) - v[lo]) * (pos - static_cast<double>(lo));
}

// Window [lo, hi] to 0..255, rounded, clamped.
uint8_t window(float v, double lo, double hi) {
  const double x = (static_cast<double>(v) - lo) / (hi - lo) * 255.0;
  return static_cast<uint8_t>(std::clamp(std::lround(x), 0L, 255L));
}

// ---- masks ----

// Two patients, 16x16x10 each; P1 stored RAS, P2 stored with i, j and k all reversed (LPI).
// Lesion voxels (values 1 and 4) are put at stored positions; value 2 marks non-lesion tissue
// when --mask-values 1,4. Returns the canonical-k lesion counts the test derives itself.
struct MaskCase {
  std::string root;
  std::map<std::string, std::vector<int64_t>> counts;  // patient -> lesion voxels per canonical axial slice
};

constexpr int64_t N = 16, NZ = 10;

MaskCase make_mask_case(const std::string& root) {
  MaskCase mc;
  mc.root = root;
  for (int p = 1; p <= 2; ++p) {
    const std::string pid = "P" + std::to_string(p);
    fs::create_directories(fs::path(root) / pid);
    const bool flipped = p == 2;
    const Affine aff = flipped ? diag_affine(-1, -1, -1, N - 1, N - 1, NZ - 1) : diag_affine(1, 1, 1);
    // Stored lesion layout: slice k (stored) holds (k * 3 + p) % 5 voxels of value 1 or 4 along
    // row j = 3, plus two voxels of value 2 along row j = 9.
    auto mask_at = [&](int64_t i, int64_t j, int64_t k) -> float {
      const int64_t n = (k * 3 + p) % 5;
      if (j == 3 && i < n) return i % 2 ? 4.0f : 1.0f;
      if (j == 9 && i < 2) return 2.0f;
      return 0.0f;
    };
    Volume img = make_volume(N, N, NZ, aff, [&](int64_t i, int64_t j, int64_t k) { return static_cast<float>(10 + i + 2 * j + 3 * k + 50 * p); });
    Volume mask = make_volume(N, N, NZ, aff, mask_at);
    write_nifti((fs::path(root) / pid / (pid + "_t1.nii.gz")).string(), img);
    write_nifti((fs::path(root) / pid / (pid + "_seg.nii.gz")).string(), mask, NiftiStoreType::UInt8);
    // The count, per canonical axial slice: canonical k = stored k (P1) or NZ-1-k (P2).
    std::vector<int64_t> cnt(NZ, 0);
    for (int64_t k = 0; k < NZ; ++k)
      for (int64_t j = 0; j < N; ++j)
        for (int64_t i = 0; i < N; ++i) {
          const float v = mask.data[static_cast<size_t>(i + N * (j + N * k))];
          if (v == 1.0f || v == 4.0f) ++cnt[static_cast<size_t>(flipped ? NZ - 1 - k : k)];
        }
    mc.counts[pid] = cnt;
  }
  return mc;
}

TEST(DataImportVolumes, MaskLabelsEqualAnIndependentCount) {
  ScratchDir tmp("vol_mask");
  MaskCase mc = make_mask_case(tmp / "src");
  ImportOptions o;
  o.source = tmp / "src";
  o.dest = tmp / "m.h5";
  o.labels = "mask";
  o.mask_glob = "*_seg.nii.gz";
  o.mask_values = "1,4";
  o.mask_min_voxels = 2;
  o.intensity = "minmax";
  ImportSummary s = pack_dataset(o);
  EXPECT_EQ(s.source_kind, "nifti");

  // Expected: every canonical slice with 0 or >= 2 lesion voxels, labelled 0 or 1; 1 voxel: dropped.
  std::vector<std::string> want_names;
  std::vector<int64_t> want_labels;
  int64_t ambiguous = 0, lesion = 0, none = 0;
  for (const auto& [pid, cnt] : mc.counts)
    for (int64_t k = 0; k < NZ; ++k) {
      const int64_t c = cnt[static_cast<size_t>(k)];
      if (c == 1) {
        ++ambiguous;
        continue;
      }
      want_names.push_back(pid + "/" + pid + "_t1.nii.gz#slice=" + std::to_string(k));
      want_labels.push_back(c >= 2 ? 1 : 0);
      (c >= 2 ? lesion : none) += 1;
    }
  ASSERT_GT(ambiguous, 0);
  ASSERT_GT(lesion, 0);
  ASSERT_GT(none, 0);
  PackReader pack(o.dest);
  EXPECT_EQ(pack.names(), want_names);
  ASSERT_EQ(pack.size(), static_cast<int64_t>(want_labels.size()));
  for (int64_t i = 0; i < pack.size(); ++i) EXPECT_EQ(pack.class_label(i), want_labels[static_cast<size_t>(i)]) << want_names[static_cast<size_t>(i)];
  EXPECT_EQ(pack.info().label_kind, LabelKind::Class);
  EXPECT_EQ(pack.info().class_names, (std::vector<std::string>{"no-lesion", "lesion"}));
  EXPECT_EQ(pack.info().class_counts, (std::vector<int64_t>{none, lesion}));
  EXPECT_EQ(s.dropped.at("ambiguous mask"), ambiguous);
  EXPECT_NE(s.line().find("no-lesion " + std::to_string(none) + ", lesion " + std::to_string(lesion)), std::string::npos) << s.line();
  for (const auto& n : pack.names()) EXPECT_EQ(n.find("_seg"), std::string::npos) << n;  // masks are never images

  // The flipped patient's image: canonical C[i, j, k] = stored S[N-1-i, N-1-j, NZ-1-k], so
  // display row r, column c of axial slice s is C[N-1-c, N-1-r, s] = S[c, r, NZ-1-s].
  const std::string name = "P2/P2_t1.nii.gz#slice=4";
  auto names = pack.names();
  auto it = std::find(names.begin(), names.end(), name);
  ASSERT_NE(it, names.end());
  auto px = read_img(pack, it - names.begin());
  ASSERT_EQ(pack.info().resolution, 16);
  auto stored = [](int64_t i, int64_t j, int64_t k) { return static_cast<float>(10 + i + 2 * j + 3 * k + 100); };
  const double lo = stored(0, 0, 0), hi = stored(N - 1, N - 1, NZ - 1);  // min-max over P2
  for (int64_t r = 0; r < N; ++r)
    for (int64_t c = 0; c < N; ++c) ASSERT_EQ(px[static_cast<size_t>(r * N + c)], window(stored(c, r, NZ - 1 - 4), lo, hi)) << r << "," << c;

  // --keep-classes 1: only the lesion slices.
  o.dest = tmp / "k.h5";
  o.keep_classes = "1";
  s = pack_dataset(o);
  PackReader kept(o.dest);
  EXPECT_EQ(kept.size(), lesion);
  EXPECT_EQ(kept.info().class_counts, (std::vector<int64_t>{0, lesion}));
  EXPECT_EQ(s.dropped.at("keep-classes"), none);
}

// ---- CSV ----

TEST(DataImportVolumes, CsvLabelsPerPatient) {
  ScratchDir tmp("vol_csv");
  const std::vector<std::string> pids = {"P01", "P02", "P03"};
  for (size_t p = 0; p < pids.size(); ++p) {
    fs::create_directories(tmp.path / "src" / pids[p]);
    write_nifti(tmp / ("src/" + pids[p] + "/" + pids[p] + "_flair.nii.gz"),
                make_volume(N, N, 4, diag_affine(1, 1, 1), [&](int64_t i, int64_t j, int64_t k) { return static_cast<float>(i * j + k + p); }));
  }
  write_text(tmp / "grades.csv", "patient,grade\nP01,low\nP02,high\n\nP03,low\n\n");  // trailing blank lines are fine
  ImportOptions o;
  o.source = tmp / "src";
  o.dest = tmp / "c.h5";
  o.labels = "csv";
  o.labels_file = tmp / "grades.csv";
  // A blank line inside the file is an empty row.
  expect_error(o, {tmp / "grades.csv:4", "empty row"});
  write_text(tmp / "grades.csv", "patient,grade\nP01,low\nP02,high\nP03,low\n");
  pack_dataset(o);
  PackReader pack(o.dest);
  EXPECT_EQ(pack.info().class_names, (std::vector<std::string>{"high", "low"}));
  ASSERT_EQ(pack.size(), 12);
  const std::vector<int64_t> per_patient = {1, 0, 1};  // low, high, low in sorted class names
  for (int64_t i = 0; i < 12; ++i) EXPECT_EQ(pack.class_label(i), per_patient[static_cast<size_t>(i / 4)]) << i;
  EXPECT_EQ(pack.info().class_counts, (std::vector<int64_t>{4, 8}));

  // Integer classes keyed by the file name without .nii.gz.
  write_text(tmp / "ids.csv", "P01_flair,2\nP02_flair,0\nP03_flair,1\n");
  o.labels_file = tmp / "ids.csv";
  o.dest = tmp / "i.h5";
  pack_dataset(o);
  PackReader ids(o.dest);
  for (int64_t i = 0; i < 12; ++i) EXPECT_EQ(ids.class_label(i), (std::vector<int64_t>{2, 0, 1})[static_cast<size_t>(i / 4)]);

  // A volume without a row, one matched by two rows, a malformed row.
  write_text(tmp / "bad.csv", "P01,1\nP02,0\n");
  o.labels_file = tmp / "bad.csv";
  o.dest = tmp / "b.h5";
  expect_error(o, {"P03_flair.nii.gz", "no row"});
  write_text(tmp / "bad.csv", "P01,1\nP02,0\nP03,1\nP03_flair,0\n");
  expect_error(o, {"P03_flair.nii.gz", "two rows"});
  write_text(tmp / "bad.csv", "P01,1\nP02\nP03,1\n");
  expect_error(o, {tmp / "bad.csv:2"});
  write_text(tmp / "bad.csv", "P01,1\nP02,\nP03,1\n");
  expect_error(o, {tmp / "bad.csv:2", "empty"});
}

// ---- channels ----

TEST(DataImportVolumes, FourModalitiesAsChannels) {
  ScratchDir tmp("vol_chan");
  const std::vector<std::string> mods = {"t1", "t1ce", "t2", "flair"};
  std::map<std::string, std::map<std::string, Volume>> vols;  // patient -> modality -> volume
  for (int p = 0; p < 2; ++p) {
    const std::string pid = "BraTS_" + std::to_string(p);
    fs::create_directories(tmp.path / "src" / pid);
    for (size_t m = 0; m < mods.size(); ++m) {
      // Different ranges and patterns per modality (and an outlier voxel that percentile windowing clips).
      Volume v = make_volume(N, N, 6, diag_affine(1, 1, 1), [&](int64_t i, int64_t j, int64_t k) {
        float x = static_cast<float>((i * (m + 2) + j * (3 - m % 2) + k * 5 + p * 7) % 37) * static_cast<float>(m + 1) * 10.0f;
        if (i == 0 && j == 0 && k == 0) x = 5000.0f * static_cast<float>(m + 1);
        return x;
      });
      write_nifti(tmp / ("src/" + pid + "/" + pid + "_" + mods[m] + ".nii.gz"), v);
      vols[pid][mods[m]] = v;
    }
    write_text(tmp / ("src/" + pid + "/notes.txt"), "not an image");
  }
  ImportOptions o;
  o.source = tmp / "src";
  o.dest = tmp / "c.h5";
  o.channels_from = "flair:*_flair.nii.gz,t1:*_t1.nii.gz,t1ce:*_t1ce.nii.gz,t2:*_t2.nii.gz";
  const std::vector<std::string> order = {"flair", "t1", "t1ce", "t2"};
  pack_dataset(o);
  PackReader pack(o.dest);
  ASSERT_EQ(pack.info().channels, 4);
  EXPECT_EQ(pack.info().channel_names, order);
  ASSERT_EQ(pack.size(), 12);
  EXPECT_EQ(pack.names()[0], "BraTS_0#slice=0");
  const int64_t plane = N * N;
  for (int64_t i = 0; i < pack.size(); ++i) {
    const std::string pid = "BraTS_" + std::to_string(i / 6);
    const int64_t s = i % 6;
    auto px = read_img(pack, i);
    for (size_t c = 0; c < order.size(); ++c) {
      const Volume& v = vols[pid][order[c]];
      const double lo = percentile(v.data, 0.5), hi = percentile(v.data, 99.5);  // the default window, per modality
      for (int64_t r = 0; r < N; ++r)
        for (int64_t col = 0; col < N; ++col) {
          const float val = v.data[static_cast<size_t>((N - 1 - col) + N * ((N - 1 - r) + N * s))];
          ASSERT_EQ(px[static_cast<size_t>(static_cast<int64_t>(c) * plane + r * N + col)], window(val, lo, hi))
              << pid << " slice " << s << " channel " << order[c] << " at " << r << "," << col;
        }
    }
  }

  // --resolution 32: every channel is resized on its own (as a one-channel image of it would be).
  o.dest = tmp / "c32.h5";
  o.resolution = 32;
  pack_dataset(o);
  PackReader p32(o.dest);
  ASSERT_EQ(p32.info().resolution, 32);
  ASSERT_EQ(p32.info().channels, 4);
  for (int64_t i : {0, 7}) {
    const std::string pid = "BraTS_" + std::to_string(i / 6);
    auto px = read_img(p32, i);
    for (size_t c = 0; c < order.size(); ++c) {
      const Volume& v = vols[pid][order[c]];
      const double lo = percentile(v.data, 0.5), hi = percentile(v.data, 99.5);
      Image one;
      one.width = one.height = static_cast<int>(N);
      one.channels = 1;
      for (int64_t r = 0; r < N; ++r)
        for (int64_t col = 0; col < N; ++col)
          one.pixels.push_back(window(v.data[static_cast<size_t>((N - 1 - col) + N * ((N - 1 - r) + N * (i % 6)))], lo, hi));
      Image big = resize(one, 32, 32, ResizeFilter::Lanczos);
      EXPECT_TRUE(std::equal(big.pixels.begin(), big.pixels.end(), px.begin() + static_cast<std::ptrdiff_t>(c * 32 * 32))) << "channel " << order[c];
    }
  }
  o.resolution = 0;

  // A modality on another grid: one line naming both files.
  Volume small = make_volume(N, N, 5, diag_affine(1, 1, 1), [](int64_t, int64_t, int64_t) { return 1.0f; });
  write_nifti(tmp / "src/BraTS_1/BraTS_1_t2.nii.gz", small);
  o.dest = tmp / "bad.h5";
  expect_error(o, {"BraTS_1_t2.nii.gz", "BraTS_1_flair.nii.gz", "does not match"});
  // Same shape, shifted affine.
  Volume shifted = vols["BraTS_1"]["t2"];
  shifted.affine[0][3] += 2.0;
  write_nifti(tmp / "src/BraTS_1/BraTS_1_t2.nii.gz", shifted);
  o.dest = tmp / "bad2.h5";
  expect_error(o, {"BraTS_1_t2.nii.gz", "BraTS_1_flair.nii.gz"});
  // A missing modality: names the folder and the glob.
  fs::remove(tmp.path / "src/BraTS_1/BraTS_1_t2.nii.gz");
  o.dest = tmp / "bad3.h5";
  expect_error(o, {(tmp.path / "src/BraTS_1").string(), "*_t2.nii.gz"});
}

// ---- foreground ----

TEST(DataImportVolumes, MinForegroundDropsExactlyTheEmptySlices) {
  ScratchDir tmp("vol_fg");
  // Slices 0, 1, 8, 9 empty; 5 holds a 2x2 spot (4/256 of the slice); the others an 8x8 block.
  auto fill = [](int64_t i, int64_t j, int64_t k) -> float {
    if (k == 0 || k == 1 || k == 8 || k == 9) return 0.0f;
    if (k == 5) return (i < 2 && j < 2) ? 100.0f : 0.0f;
    return (i >= 4 && i < 12 && j >= 4 && j < 12) ? 100.0f : 0.0f;
  };
  Volume v = make_volume(N, N, NZ, diag_affine(1, 1, 1), fill);
  write_nifti(tmp / "v.nii.gz", v);
  ImportOptions o;
  o.source = tmp / "v.nii.gz";
  o.dest = tmp / "all.h5";
  pack_dataset(o);
  EXPECT_EQ(PackReader(o.dest).size(), NZ);  // default 0: every slice
  o.dest = tmp / "fg.h5";
  o.min_foreground = 0.01;
  ImportSummary s = pack_dataset(o);
  std::vector<std::string> want;
  int64_t empty = 0;
  for (int64_t k = 0; k < NZ; ++k) {
    int64_t nonzero = 0;
    for (int64_t j = 0; j < N; ++j)
      for (int64_t i = 0; i < N; ++i) nonzero += v.data[static_cast<size_t>(i + N * (j + N * k))] != 0;
    if (nonzero > 0) want.push_back("v.nii.gz#slice=" + std::to_string(k));
    else ++empty;
  }
  EXPECT_EQ(PackReader(o.dest).names(), want);
  EXPECT_EQ(s.dropped.at("foreground"), empty);
  // 0.1: the 2x2 spot (1.6%) goes too.
  o.dest = tmp / "fg2.h5";
  o.min_foreground = 0.1;
  pack_dataset(o);
  auto names = PackReader(o.dest).names();
  EXPECT_EQ(names.size(), want.size() - 1);
  EXPECT_EQ(std::count(names.begin(), names.end(), "v.nii.gz#slice=5"), 0);

  // Air with noise: values 0..9 everywhere, a 6x6 block of 100 in slices 3..6. Windowed (0.5 and
  // 99.5 percentiles: 0 and 100) the noise reaches 23 of 255, well above any small fixed level;
  // foreground is above the volume's Otsu threshold, which lies between noise and block. Slices
  // of noise alone have no foreground and go at any F > 0.
  auto noisy = [](int64_t i, int64_t j, int64_t k) -> float {
    if (k >= 3 && k <= 6 && i >= 5 && i < 11 && j >= 5 && j < 11) return 100.0f;
    return static_cast<float>((i * 7 + j * 13 + k * 5) % 10);
  };
  write_nifti(tmp / "n.nii.gz", make_volume(N, N, NZ, diag_affine(1, 1, 1), noisy));
  o.source = tmp / "n.nii.gz";
  o.dest = tmp / "noise.h5";
  o.min_foreground = 0.1;  // the block is 36/256 = 14% of a slice
  s = pack_dataset(o);
  EXPECT_EQ(PackReader(o.dest).names(),
            (std::vector<std::string>{"n.nii.gz#slice=3", "n.nii.gz#slice=4", "n.nii.gz#slice=5", "n.nii.gz#slice=6"}));
  EXPECT_EQ(s.dropped.at("foreground"), NZ - 4);
}

// ---- planes ----

TEST(DataImportVolumes, CoronalAndSagittalPlanes) {
  ScratchDir tmp("vol_plane");
  Volume v = make_volume(16, 12, 8, diag_affine(1, 1, 1), [](int64_t i, int64_t j, int64_t k) { return static_cast<float>(i + 16 * j + 192 * k); });
  write_nifti(tmp / "v.nii", v);
  ImportOptions o;
  o.source = tmp / "v.nii";
  o.dest = tmp / "c.h5";
  o.axis = "coronal";
  o.intensity = "minmax";
  pack_dataset(o);
  PackReader c(o.dest);
  ASSERT_EQ(c.size(), 12);  // coronal: one slice per j
  EXPECT_EQ(c.names()[3], "v.nii#coronal=3");
  // Coronal slice s: row r, column c = C[nx-1-c, s, nz-1-r]; 16x8 padded to 16x16 (rows 4..11).
  auto px = read_img(c, 3);
  const double hi = 15 + 16 * 11 + 192 * 7;
  for (int64_t r = 0; r < 8; ++r)
    for (int64_t col = 0; col < 16; ++col)
      ASSERT_EQ(px[static_cast<size_t>((r + 4) * 16 + col)], window(static_cast<float>((15 - col) + 16 * 3 + 192 * (7 - r)), 0, hi));
  o.axis = "0";  // sagittal
  o.dest = tmp / "s.h5";
  pack_dataset(o);
  EXPECT_EQ(PackReader(o.dest).size(), 16);
  o.axis = "oblique";
  o.dest = tmp / "x.h5";
  expect_error(o, {"oblique"});
}

// ---- dry run ----

TEST(DataImportVolumes, DryRunWritesNothingAndCounts) {
  ScratchDir tmp("vol_dry");
  MaskCase mc = make_mask_case(tmp / "src");
  auto listing = [&]() {
    std::set<std::string> s;
    for (const auto& e : fs::recursive_directory_iterator(tmp.path)) s.insert(e.path().string());
    return s;
  };
  const auto before = listing();
  ImportOptions o;
  o.source = tmp / "src";
  o.dest = tmp / "d.h5";
  o.labels = "mask";
  o.mask_glob = "*_seg.nii.gz";
  o.mask_min_voxels = 3;
  o.dry_run = true;
  ImportSummary s = pack_dataset(o);
  EXPECT_EQ(listing(), before);  // not even a temporary
  int64_t lesion = 0, none = 0, ambiguous = 0;
  // Without --mask-values every non-zero voxel counts, the two 2s included.
  for (const auto& [pid, cnt] : mc.counts)
    for (int64_t c : cnt) {
      const int64_t all = c + 2;
      (all >= 3 ? lesion : all == 0 ? none : ambiguous) += 1;
    }
  EXPECT_EQ(s.images, lesion + none);
  std::string report;
  for (const auto& l : s.report_lines) report += l + "\n";
  EXPECT_NE(report.find("classes: no-lesion " + std::to_string(none) + ", lesion " + std::to_string(lesion)), std::string::npos) << report;
  EXPECT_NE(report.find("2 NIfTI volumes (" + (tmp / "src/P1/P1_t1.nii.gz") + ", " + (tmp / "src/P2/P2_t1.nii.gz") + ")"), std::string::npos)
      << report;
  EXPECT_NE(report.find("P1/P1_t1.nii.gz: RAS -> RAS 16x16x10"), std::string::npos) << report;
  EXPECT_NE(report.find("P2/P2_t1.nii.gz: LPI -> RAS 16x16x10"), std::string::npos) << report;
  if (ambiguous) EXPECT_NE(report.find("ambiguous mask"), std::string::npos) << report;
  EXPECT_NE(report.find("intensity: percentile 0.5:99.5"), std::string::npos) << report;
  EXPECT_NE(report.find("output: " + std::to_string(lesion + none) + " images 16x16x1"), std::string::npos) << report;
  EXPECT_NE(s.line().find("dry run"), std::string::npos);
}

// ---- DICOM (written by hand: explicit VR little-endian Part-10 files) ----

void put_u16(std::string& b, uint16_t v) { b.push_back(static_cast<char>(v & 0xFF)), b.push_back(static_cast<char>(v >> 8)); }
void put_u32(std::string& b, uint32_t v) { put_u16(b, static_cast<uint16_t>(v & 0xFFFF)), put_u16(b, static_cast<uint16_t>(v >> 16)); }

// One data element; values padded to even length (UI with NUL, text with a space).
void element(std::string& b, uint16_t g, uint16_t e, const char* vr, std::string v) {
  const std::string r(vr);
  if (v.size() % 2) v.push_back(r == "UI" || r == "OB" || r == "OW" ? '\0' : ' ');
  put_u16(b, g), put_u16(b, e);
  b += r;
  if (r == "OB" || r == "OW") {
    put_u16(b, 0);
    put_u32(b, static_cast<uint32_t>(v.size()));
  } else {
    put_u16(b, static_cast<uint16_t>(v.size()));
  }
  b += v;
}
std::string us(uint16_t v) {
  std::string s;
  put_u16(s, v);
  return s;
}

// An axial MR slice at z = `z` mm (16x16, int16 values v(i, j) + z), instance `n`.
void write_dicom_slice(const std::string& path, int n, double z) {
  const std::string sop = "1.2.826.0.1.3680043.9.7777.2." + std::to_string(n), series = "1.2.826.0.1.3680043.9.7777.1";
  std::string ds;
  element(ds, 0x0008, 0x0016, "UI", "1.2.840.10008.5.1.4.1.1.4");
  element(ds, 0x0008, 0x0018, "UI", sop);
  element(ds, 0x0008, 0x0060, "CS", "MR");
  element(ds, 0x0020, 0x000D, "UI", "1.2.826.0.1.3680043.9.7777.3");
  element(ds, 0x0020, 0x000E, "UI", series);
  element(ds, 0x0020, 0x0013, "IS", std::to_string(n));
  element(ds, 0x0020, 0x0032, "DS", "0\\0\\" + std::to_string(z));
  element(ds, 0x0020, 0x0037, "DS", "1\\0\\0\\0\\1\\0");
  element(ds, 0x0028, 0x0002, "US", us(1));
  element(ds, 0x0028, 0x0004, "CS", "MONOCHROME2");
  element(ds, 0x0028, 0x0010, "US", us(16));
  element(ds, 0x0028, 0x0011, "US", us(16));
  element(ds, 0x0028, 0x0030, "DS", "1\\1");
  element(ds, 0x0028, 0x0100, "US", us(16));
  element(ds, 0x0028, 0x0101, "US", us(16));
  element(ds, 0x0028, 0x0102, "US", us(15));
  element(ds, 0x0028, 0x0103, "US", us(1));
  std::string px;
  for (int j = 0; j < 16; ++j)
    for (int i = 0; i < 16; ++i) put_u16(px, static_cast<uint16_t>(i * 3 + j * 5 + static_cast<int>(z) * 7));
  element(ds, 0x7FE0, 0x0010, "OW", px);
  std::string meta;
  element(meta, 0x0002, 0x0001, "OB", std::string("\0\1", 2));
  element(meta, 0x0002, 0x0002, "UI", "1.2.840.10008.5.1.4.1.1.4");
  element(meta, 0x0002, 0x0003, "UI", sop);
  element(meta, 0x0002, 0x0010, "UI", "1.2.840.10008.1.2.1");
  std::string file(128, '\0');
  file += "DICM";
  element(file, 0x0002, 0x0000, "UL", [&] {
    std::string l;
    put_u32(l, static_cast<uint32_t>(meta.size()));
    return l;
  }());
  write_text(path, file + meta + ds);
}

TEST(DataImportVolumes, DicomSeriesThroughTheVolumePath) {
  ScratchDir tmp("vol_dcm");
  fs::create_directories(tmp.path / "dcm/S1");
  for (int n = 0; n < 6; ++n) write_dicom_slice(tmp / ("dcm/S1/im" + std::to_string(n) + ".dcm"), n + 1, n * 2.0);
  ImportOptions o;
  o.source = tmp / "dcm";
  o.dest = tmp / "d.h5";
  ImportSummary s = pack_dataset(o);
  EXPECT_EQ(s.source_kind, "dicom");
  PackReader p(o.dest);
  ASSERT_EQ(p.size(), 6);
  EXPECT_EQ(p.names()[0], "S1#slice=0");
  EXPECT_EQ(p.info().resolution, 16);
  // A slice missing from the middle: the reader's error, naming the series; no pack.
  fs::remove(tmp.path / "dcm/S1/im3.dcm");
  o.dest = tmp / "gap.h5";
  expect_error(o, {(tmp.path / "dcm/S1").string(), "missing"});
}

// ---- phantom volumes (data/phantom_volume.h) ----

// BraTS-like phantom folders stored RAS, LPS, PIL and oblique hold the same canonical voxels: the
// packs are identical. Mask labels equal the lesion count of the canonical phantom mask per
// axial section (render_phantom_patient, summed here), and the folder's labels.csv gives
// per-patient labels.
TEST(DataImportVolumes, PhantomVolumesPackAlikeInAnyStorageOrientation) {
  ScratchDir tmp("vol_phantom");
  PhantomVolumeOptions po;
  po.resolution = 32;
  po.slices = 12;
  po.seed = 11;
  const int64_t count = 3;
  const int64_t min_voxels = 10;
  std::string hash;
  std::vector<std::string> names;
  for (const char* orient : {"RAS", "LPS", "PIL", "oblique"}) {
    SCOPED_TRACE(orient);
    po.orientation = orient;
    const std::string dir = tmp / (std::string("ph_") + orient);
    write_phantom_volume_folder(dir, count, po);
    ImportOptions o;
    o.source = dir;
    o.dest = tmp / (std::string("p_") + orient + ".h5");
    o.channels_from = "t1:*_t1.nii.gz,t1ce:*_t1ce.nii.gz,t2:*_t2.nii.gz,flair:*_flair.nii.gz";
    o.labels = "mask";
    o.mask_glob = "*_seg.nii.gz";
    o.mask_min_voxels = min_voxels;
    ImportSummary s = pack_dataset(o);
    PackReader p(o.dest);
    EXPECT_EQ(p.info().channel_names, (std::vector<std::string>{"t1", "t1ce", "t2", "flair"}));
    if (hash.empty()) {
      hash = s.info.content_hash, names = p.names();
      // The labels against the canonical masks.
      std::vector<std::string> want_names;
      std::vector<int64_t> want;
      for (int64_t i = 0; i < count; ++i) {
        PhantomPatient pt = render_phantom_patient(po, i, count);
        const Volume& m = pt.mask;
        for (int64_t k = 0; k < m.nz; ++k) {
          int64_t n = 0;
          for (int64_t j = 0; j < m.ny; ++j)
            for (int64_t x = 0; x < m.nx; ++x) n += m.at(x, j, k) != 0;
          if (n > 0 && n < min_voxels) continue;
          want_names.push_back(pt.name + "#slice=" + std::to_string(k));
          want.push_back(n > 0);
        }
      }
      ASSERT_GT(std::count(want.begin(), want.end(), 1), 0);  // both classes present
      ASSERT_GT(std::count(want.begin(), want.end(), 0), 0);
      ASSERT_EQ(names, want_names);
      for (int64_t i = 0; i < p.size(); ++i) EXPECT_EQ(p.class_label(i), want[static_cast<size_t>(i)]) << names[static_cast<size_t>(i)];
    } else {
      EXPECT_EQ(s.info.content_hash, hash);
      EXPECT_EQ(p.names(), names);
    }
  }
  // Patient labels from the folder's labels.csv ("patient,label" rows).
  ImportOptions o;
  o.source = tmp / "ph_LPS";
  o.dest = tmp / "csv.h5";
  o.channels_from = "flair:*_flair.nii.gz";
  o.labels = "csv";
  o.labels_file = tmp / "ph_LPS/labels.csv";
  o.mask_glob = "*_seg.nii.gz";
  pack_dataset(o);
  PackReader p(o.dest);
  EXPECT_EQ(p.info().channels, 1);
  const auto pn = p.names();
  for (int64_t i = 0; i < p.size(); ++i) {
    const std::string patient = pn[static_cast<size_t>(i)].substr(0, pn[static_cast<size_t>(i)].find('#'));
    const int64_t idx = std::stoll(patient.substr(patient.rfind('_') + 1));
    EXPECT_EQ(p.class_label(i), render_phantom_patient(po, idx, count).label) << patient;
  }
}

// ---- mixed folders and other bad input ----

TEST(DataImportVolumes, MixedFoldersNeedSourceKind) {
  ScratchDir tmp("vol_mixed");
  fs::create_directories(tmp.path / "src/a");
  Image img;
  img.width = img.height = 8;
  img.channels = 1;
  img.pixels.assign(64, 7);
  write_png_file(tmp / "src/a/x.png", img);
  write_png_file(tmp / "src/a/y.png", img);
  write_nifti(tmp / "src/v.nii.gz", make_volume(N, N, 3, diag_affine(1, 1, 1), [](int64_t i, int64_t, int64_t) { return static_cast<float>(i); }));
  write_text(tmp / "src/readme.txt", "notes");
  write_text(tmp / "src/labels.csv", "a,1\n");
  ImportOptions o;
  o.source = tmp / "src";
  o.dest = tmp / "m.h5";
  expect_error(o, {tmp / "src", "2 PNG/JPEG images (e.g. a/x.png)", "1 NIfTI files (e.g. v.nii.gz)", "--source-kind"});
  std::vector<std::string> notices;
  o.notice = [&](const std::string& l) { notices.push_back(l); };
  o.source_kind = "nifti";
  ImportSummary s = pack_dataset(o);
  EXPECT_EQ(PackReader(o.dest).size(), 3);
  ASSERT_EQ(notices.size(), 1u);
  EXPECT_EQ(notices[0].rfind("skipped: 2 PNG/JPEG images (e.g. a/x.png)", 0), 0u) << notices[0];
  EXPECT_EQ(s.notices, notices);
  o.source_kind = "image-folder";
  o.dest = tmp / "i.h5";
  notices.clear();
  pack_dataset(o);
  EXPECT_EQ(PackReader(o.dest).size(), 2);
  ASSERT_EQ(notices.size(), 1u);
  EXPECT_NE(notices[0].find("1 NIfTI files (e.g. v.nii.gz)"), std::string::npos) << notices[0];
  o.source_kind = "dicom";
  o.dest = tmp / "d.h5";
  expect_error(o, {tmp / "src", "no DICOM"});
  // --dest must be a .h5 file.
  o.source_kind = "nifti";
  o.dest = tmp / "out.hdf";
  expect_error(o, {tmp / "out.hdf", ".h5"});
}

TEST(DataImportVolumes, MaskNotMatchingItsImageIsAnError) {
  ScratchDir tmp("vol_badmask");
  fs::create_directories(tmp.path / "src/P1");
  write_nifti(tmp / "src/P1/P1_t1.nii.gz", make_volume(N, N, NZ, diag_affine(1, 1, 1), [](int64_t i, int64_t, int64_t) { return static_cast<float>(i); }));
  write_nifti(tmp / "src/P1/P1_seg.nii.gz", make_volume(N, N, NZ - 1, diag_affine(1, 1, 1), [](int64_t, int64_t, int64_t) { return 0.0f; }),
              NiftiStoreType::UInt8);
  ImportOptions o;
  o.source = tmp / "src";
  o.dest = tmp / "m.h5";
  o.labels = "mask";
  o.mask_glob = "*_seg.nii.gz";
  expect_error(o, {"P1_seg.nii.gz", "P1_t1.nii.gz", "does not match"});
  // Same shape, 1 mm voxels against 2 mm: also a different grid.
  write_nifti(tmp / "src/P1/P1_seg.nii.gz", make_volume(N, N, NZ, diag_affine(2, 2, 2), [](int64_t, int64_t, int64_t) { return 0.0f; }),
              NiftiStoreType::UInt8);
  expect_error(o, {"P1_seg.nii.gz", "P1_t1.nii.gz"});
  // No mask beside the volume.
  fs::remove(tmp.path / "src/P1/P1_seg.nii.gz");
  expect_error(o, {"P1_t1.nii.gz", "*_seg.nii.gz"});
}

}  // namespace

// --labels folders for volumes: the first folder under the source is the class (sorted names),
// for NIfTI files (one volume each) and for patient folders with --channels-from; a volume
// outside a class folder is a one-line error naming it.
TEST(DataImportVolumes, FolderLabels) {
  ScratchDir tmp("vol_folders");
  const std::vector<std::pair<std::string, std::string>> vols = {
      {"tumour", "A"}, {"normal", "B"}, {"tumour", "C"}};  // class folder, patient
  for (size_t v = 0; v < vols.size(); ++v) {
    const auto& [cls, pid] = vols[v];
    fs::create_directories(tmp.path / "src" / cls / pid);
    for (const char* mod : {"t1", "flair"})
      write_nifti(tmp / ("src/" + cls + "/" + pid + "/" + pid + "_" + mod + ".nii.gz"),
                  make_volume(N, N, 3, diag_affine(1, 1, 1),
                              [&](int64_t i, int64_t j, int64_t k) { return static_cast<float>(i + j * k + v); }));
  }
  ImportOptions o;
  o.source = tmp / "src";
  o.dest = tmp / "f.h5";
  o.labels = "folders";
  o.channels_from = "t1:*_t1.nii.gz,flair:*_flair.nii.gz";
  pack_dataset(o);
  PackReader pack(o.dest);
  EXPECT_EQ(pack.info().class_names, (std::vector<std::string>{"normal", "tumour"}));
  ASSERT_EQ(pack.size(), 9);
  // Patients in path order: normal/B, tumour/A, tumour/C; three slices each.
  for (int64_t i = 0; i < 9; ++i) EXPECT_EQ(pack.class_label(i), i < 3 ? 0 : 1) << i;
  EXPECT_EQ(pack.info().class_counts, (std::vector<int64_t>{3, 6}));

  // One volume per file: the same classes.
  o.channels_from.clear();
  o.dest = tmp / "g.h5";
  pack_dataset(o);
  PackReader per_file(o.dest);
  EXPECT_EQ(per_file.size(), 18);
  EXPECT_EQ(per_file.info().class_counts, (std::vector<int64_t>{6, 12}));

  // A volume directly under the source has no class folder.
  write_nifti(tmp / "src/loose_t1.nii.gz",
              make_volume(N, N, 3, diag_affine(1, 1, 1), [](int64_t i, int64_t, int64_t) { return static_cast<float>(i); }));
  o.dest = tmp / "h.h5";
  expect_error(o, {"loose_t1.nii.gz", "class folder"});
}
