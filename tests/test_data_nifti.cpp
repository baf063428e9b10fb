// NIfTI through nifticlib: orientation and display slices against nibabel (volumes generated
// with many affines by tests/orient_nibabel.py), the real LAS fixture, and the header checks
// that run before any voxel memory is allocated.
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <set>

#include "data/nifti.h"
#include "data/orient.h"
#include "data/tfrecord.h"
#include "tests/test_data_util.h"

using namespace sf::data;
using sf::test::fixture;
using sf::test::ScratchDir;
using sf::test::one_line;
using sf::test::file_bytes;
using sf::test::put_bytes;

namespace {

std::vector<float> read_f32(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::string b((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<float> v(b.size() / 4);
  if (!v.empty()) std::memcpy(v.data(), b.data(), v.size() * 4);
  return v;
}

void put_gz(const std::string& p, const std::vector<uint8_t>& b) {
  gzFile gz = gzopen(p.c_str(), "wb6");
  ASSERT_TRUE(gz);
  gzwrite(gz, b.data(), static_cast<unsigned>(b.size()));
  gzclose(gz);
}

// A NIfTI-1 single file: 348-byte header, 4 extension bytes, voxel bytes.
std::vector<uint8_t> nifti1(const std::vector<int16_t>& dims, int16_t datatype, int16_t bitpix,
                            const std::vector<uint8_t>& voxels, const char* magic = "n+1") {
  std::vector<uint8_t> b = sf::test::nifti1_header(dims, datatype, bitpix, 352.0f, magic);
  b.insert(b.end(), voxels.begin(), voxels.end());
  return b;
}


// Runs fn with stderr sent to a file; returns what was written there.
template <typename F>
std::string stderr_of(F fn) {
  std::fflush(stderr);
  char name[] = "/tmp/sf_nifti_stderr_XXXXXX";
  const int fd = mkstemp(name);
  const int saved = dup(2);
  dup2(fd, 2);
  fn();
  std::fflush(stderr);
  dup2(saved, 2);
  close(saved);
  close(fd);
  std::ifstream f(name);
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::remove(name);
  return s;
}

double max_abs_diff(const Affine& a, const nlohmann::json& b) {
  double d = 0;
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) d = std::max(d, std::fabs(a[r][c] - b.at(r).at(c).get<double>()));
  return d;
}

// nibabel's reading of generated volumes and of the LAS fixture, as tests/orient_nibabel.py
// writes it. The script is required: without /usr/bin/python3 and nibabel the test fails.
struct NibabelCases {
  ScratchDir dir{"orient_nibabel"};
  nlohmann::json cases;
  std::string error;
  NibabelCases() {
    const std::string cmd = "/usr/bin/python3 " STYLEFORGE_SOURCE_DIR "/tests/orient_nibabel.py " + dir.path.string() +
                            " " + fixture("real/anatomical.nii");
    auto r = sf::test::run_shell(cmd);
    if (r.rc != 0) {
      error = "tests/orient_nibabel.py failed (needs /usr/bin/python3 with nibabel and numpy: run "
              "scripts/install-test-deps.sh): " + r.out;
      return;
    }
    std::ifstream f(dir / "cases.json");
    cases = nlohmann::json::parse(f).at("cases");
  }
};

TEST(DataNiftiOrient, SlicesMatchNibabelCanonicalOrientation) {
  NibabelCases nb;
  ASSERT_TRUE(nb.error.empty()) << nb.error;
  ASSERT_GE(nb.cases.size(), 90u);
  std::set<std::string> codes_seen;
  std::set<std::string> sources_seen;
  size_t slices_compared = 0;
  for (const auto& c : nb.cases) {
    const std::string name = c.at("name");
    SCOPED_TRACE(name);
    Volume v = read_nifti_volume(c.at("file"));
    // The affine nibabel reads (get_best_affine), within float32 rounding of the header fields.
    EXPECT_LT(max_abs_diff(v.affine, c.at("affine")), 1e-4) << v.description;
    const std::string codes = c.at("axcodes");
    EXPECT_EQ(axis_codes(v.affine, v.path), codes);
    codes_seen.insert(codes);
    sources_seen.insert(v.description.substr(v.description.rfind(' ') + 1));
    std::vector<int64_t> shape{v.nx, v.ny, v.nz};
    if (v.nt > 1) shape.push_back(v.nt);
    EXPECT_EQ(shape, c.at("shape").get<std::vector<int64_t>>());

    const Volume canon = to_canonical(v);
    std::vector<int64_t> cshape{canon.nx, canon.ny, canon.nz};
    if (canon.nt > 1) cshape.push_back(canon.nt);
    ASSERT_EQ(cshape, c.at("canonical_shape").get<std::vector<int64_t>>());
    EXPECT_LT(max_abs_diff(canon.affine, c.at("canonical_affine")), 1e-4);
    // RAS, except for some oblique grids where the greedy choice differs on the reordered grid.
    EXPECT_EQ(axis_codes(canon.affine, canon.path), c.at("canonical_axcodes").get<std::string>());
    if (codes == "RAS") EXPECT_EQ(canon.affine, v.affine);  // already canonical: unchanged

    for (Plane p : {Plane::Axial, Plane::Coronal, Plane::Sagittal}) {
      const auto& e = c.at("planes").at(plane_name(p));
      const SliceShape sh = plane_slice_shape(canon, p);
      ASSERT_EQ(sh.rows, e.at("rows").get<int64_t>()) << plane_name(p);
      ASSERT_EQ(sh.cols, e.at("cols").get<int64_t>()) << plane_name(p);
      const int64_t n = plane_slice_count(canon, p);
      ASSERT_EQ(n * canon.nt, e.at("count").get<int64_t>()) << plane_name(p);
      const std::vector<float> want = read_f32(e.at("file"));
      const size_t per = static_cast<size_t>(sh.rows * sh.cols);
      ASSERT_EQ(want.size(), per * static_cast<size_t>(n * canon.nt)) << plane_name(p);
      for (int64_t t = 0; t < canon.nt; ++t)
        for (int64_t s = 0; s < n; ++s) {
          const std::vector<float> got = display_slice(canon, p, s, t);
          const float* w = want.data() + static_cast<size_t>(t * n + s) * per;
          size_t bad = 0, first = 0;
          for (size_t i = 0; i < per; ++i)
            if (got[i] != w[i] && bad++ == 0) first = i;
          ASSERT_EQ(bad, 0u) << plane_name(p) << " slice " << s << " t " << t << ": first mismatch at row "
                             << first / static_cast<size_t>(sh.cols) << " col " << first % static_cast<size_t>(sh.cols)
                             << ": " << got[first] << " vs nibabel " << w[first];
          ++slices_compared;
        }
    }
  }
  // The generated set covers every kind of orientation and every affine source.
  EXPECT_GE(codes_seen.size(), 40u);
  EXPECT_EQ(sources_seen, (std::set<std::string>{"sform", "qform", "base"}));
  EXPECT_GT(slices_compared, 1500u);
}

TEST(DataNiftiOrient, AnatomicalLasAxialSliceIsFlippedFromStoredOrder) {
  const std::string path = fixture("real/anatomical.nii");
  NiftiVolume stored = read_nifti(path);
  Volume v = read_nifti_volume(path);
  ASSERT_EQ(axis_codes(v.affine, path), "LAS");
  const Volume canon = to_canonical(v);
  ASSERT_EQ(canon.nx, stored.nx());
  // Stored i runs to the left: the canonical grid reverses i, and the display (patient's right
  // on the image's left, anterior at the top) then shows the stored slice with its rows reversed
  // and its columns as stored.
  const int64_t nx = stored.nx(), ny = stored.ny();
  size_t differs_unflipped = 0;
  for (int64_t s : {int64_t(0), int64_t(12), stored.nz() - 1}) {
    const std::vector<float> got = display_slice(canon, Plane::Axial, s);
    ASSERT_EQ(got.size(), static_cast<size_t>(nx * ny));
    for (int64_t r = 0; r < ny; ++r)
      for (int64_t c = 0; c < nx; ++c) {
        const float want = stored.data[static_cast<size_t>(c + nx * ((ny - 1 - r) + ny * s))];
        ASSERT_EQ(got[static_cast<size_t>(r * nx + c)], want) << "slice " << s << " row " << r << " col " << c;
        if (got[static_cast<size_t>(r * nx + c)] != stored.data[static_cast<size_t>(c + nx * (r + ny * s))]) ++differs_unflipped;
      }
  }
  EXPECT_GT(differs_unflipped, 100u);  // the flip is visible in the data
}

// ---- reader: values, header checks, quiet nifticlib ----

TEST(DataNiftiReader, ValuesScaledAndNonFiniteFloatsReadAsZero) {
  ScratchDir tmp("nii_vals");
  // int16 with scl_slope 0.5, scl_inter -3 (header offsets 112 and 116).
  std::vector<uint8_t> vox;
  for (int16_t x : {int16_t(-4), int16_t(0), int16_t(7), int16_t(1000)}) {
    vox.push_back(static_cast<uint8_t>(x & 0xFF));
    vox.push_back(static_cast<uint8_t>((x >> 8) & 0xFF));
  }
  auto b = nifti1({2, 2}, 4, 16, vox);
  const float slope = 0.5f, inter = -3.0f;
  std::memcpy(&b[112], &slope, 4);
  std::memcpy(&b[116], &inter, 4);
  put_bytes(tmp / "s.nii", b);
  NiftiVolume v = read_nifti(tmp / "s.nii");
  EXPECT_EQ(v.data, (std::vector<float>{-5.0f, -3.0f, 0.5f, 497.0f}));
  EXPECT_EQ(v.dtype, "int16");
  // Slope 0: values as stored (nibabel ignores a zero slope).
  const float zero = 0;
  std::memcpy(&b[112], &zero, 4);
  put_bytes(tmp / "z.nii", b);
  EXPECT_EQ(read_nifti(tmp / "z.nii").data, (std::vector<float>{-4.0f, 0.0f, 7.0f, 1000.0f}));
  // float32 NaN/inf voxels: nifticlib reads them as 0.
  std::vector<float> f = {1.5f, std::nanf(""), INFINITY, -2.0f};
  std::vector<uint8_t> fb(16);
  std::memcpy(fb.data(), f.data(), 16);
  put_gz(tmp / "f.nii.gz", nifti1({4}, 16, 32, fb));
  EXPECT_EQ(read_nifti(tmp / "f.nii.gz").data, (std::vector<float>{1.5f, 0.0f, 0.0f, -2.0f}));
}

TEST(DataNiftiReader, BadFilesGiveOneLineErrorsAndNothingOnStderr) {
  ScratchDir tmp("nii_bad");
  std::vector<std::pair<std::string, std::string>> cases;  // path, expected part of the message
  std::vector<uint8_t> vox(64, 7);
  put_bytes(tmp / "pair.nii", nifti1({4, 4, 4}, 2, 8, vox, "ni1"));
  cases.emplace_back(tmp / "pair.nii", "two-file");
  put_bytes(tmp / "analyze.nii", nifti1({4, 4, 4}, 2, 8, vox, "\0\0\0"));
  cases.emplace_back(tmp / "analyze.nii", "magic");
  put_bytes(tmp / "complex.nii", nifti1({4, 4, 2}, 32, 64, vox));
  cases.emplace_back(tmp / "complex.nii", "datatype 32");
  put_bytes(tmp / "dim0.nii", nifti1({4, 4, 4, 1, 1, 1, 1, 1}, 2, 8, vox));
  cases.emplace_back(tmp / "dim0.nii", "dim[0]");
  put_bytes(tmp / "zero.nii", nifti1({4, 0, 4}, 2, 8, vox));
  cases.emplace_back(tmp / "zero.nii", "dim[2]");
  put_bytes(tmp / "short.nii", nifti1({4, 4, 5}, 2, 8, vox));
  cases.emplace_back(tmp / "short.nii", "truncated");
  put_bytes(tmp / "data.bin", nifti1({4, 4, 4}, 2, 8, vox));
  cases.emplace_back(tmp / "data.bin", ".nii");
  cases.emplace_back(tmp / "missing.nii", "cannot open");
  // gzip: a stream cut short, and a header declaring more than the file can expand to.
  {
    std::vector<uint8_t> noise(64 * 64 * 64);
    uint32_t x = 12345;
    for (auto& n : noise) n = static_cast<uint8_t>((x = x * 1103515245u + 12345u) >> 24);
    auto whole = nifti1({64, 64, 64}, 2, 8, noise);
    put_gz(tmp / "cut.nii.gz", whole);
    auto gz = file_bytes(tmp / "cut.nii.gz");
    gz.resize(gz.size() / 2);
    put_bytes(tmp / "cut.nii.gz", gz);
    cases.emplace_back(tmp / "cut.nii.gz", "voxel data");
    put_gz(tmp / "bomb.nii.gz", nifti1({20000, 20000, 20}, 2, 8, vox));
    cases.emplace_back(tmp / "bomb.nii.gz", "gzip file");
    // A damaged CRC trailer in a gzip file shorter than a NIfTI-2 header: the header read fails.
    put_gz(tmp / "crc.nii.gz", nifti1({4, 4, 4}, 2, 8, vox));
    auto crc = file_bytes(tmp / "crc.nii.gz");
    crc[crc.size() - 6] ^= 0xFF;
    put_bytes(tmp / "crc.nii.gz", crc);
    cases.emplace_back(tmp / "crc.nii.gz", "gzip");
  }
  for (const auto& [path, part] : cases) {
    std::string msg;
    const std::string err = stderr_of([&, p = path] {
      try {
        read_nifti_volume(p);
        msg = "accepted";
      } catch (const FormatError& e) {
        msg = e.what();
      }
    });
    EXPECT_TRUE(one_line(msg)) << path << ": " << msg;
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(part), std::string::npos) << msg;
    EXPECT_EQ(err, "") << path;
  }
}

TEST(DataNiftiReader, AffineFollowsNibabelBestAffineRule) {
  // Header fields written directly (offsets of the NIfTI-1 header), so the rule is checked
  // without nibabel: sform when its code is set, else qform, else the centred base affine.
  ScratchDir tmp("nii_aff");
  auto b = nifti1({3, 5, 7}, 2, 8, std::vector<uint8_t>(105, 1));
  const float pix[4] = {1, 3, 2, 1};  // qfac 1, voxel sizes 3, 2, 1
  std::memcpy(&b[76], pix, 16);
  const float srow[12] = {0, 0, 1, 10, 2, 0, 0, 20, 0, -3, 0, 30};
  std::memcpy(&b[280], srow, 48);
  const float quat[6] = {0, 0, 1, -5, -6, -7};  // b c d: 180 degrees about z; offsets
  std::memcpy(&b[256], quat, 24);
  auto with_codes = [&](int16_t q, int16_t s) {
    auto c = b;
    std::memcpy(&c[252], &q, 2);
    std::memcpy(&c[254], &s, 2);
    put_bytes(tmp / "a.nii", c);
    return read_nifti_volume(tmp / "a.nii").affine;
  };
  const Affine sform = with_codes(1, 2);
  EXPECT_EQ(sform[0], (std::array<double, 4>{0, 0, 1, 10}));
  EXPECT_EQ(sform[1], (std::array<double, 4>{2, 0, 0, 20}));
  EXPECT_EQ(sform[2], (std::array<double, 4>{0, -3, 0, 30}));
  const Affine qform = with_codes(1, 0);
  const double want_q[3][4] = {{-3, 0, 0, -5}, {0, -2, 0, -6}, {0, 0, 1, -7}};
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 4; ++c) EXPECT_NEAR(qform[r][c], want_q[r][c], 1e-12) << r << "," << c;
  // nibabel's docstring example: shape (3, 5, 7), zooms (3, 2, 1) -> x flipped, centred.
  const Affine base = with_codes(0, 0);
  const double want_b[3][4] = {{-3, 0, 0, 3}, {0, 2, 0, -4}, {0, 0, 1, -3}};
  for (int r = 0; r < 3; ++r)
    for (int c = 0; c < 4; ++c) EXPECT_DOUBLE_EQ(base[r][c], want_b[r][c]) << r << "," << c;
}

}  // namespace
