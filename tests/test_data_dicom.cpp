// DICOM series through GDCM (data/dicom.h): synthetic series written here with GDCM, compressed
// with gdcmconv (JPEG lossless, JPEG 2000 reversible, JPEG-LS, RLE, deflate) and read back with
// exactly the same values; grouping by SeriesInstanceUID; ordering along the slice normal; the
// RAS affine and display orientation; refusals (missing or duplicate slice, mismatched sizes,
// truncated file, a .dcm that is not DICOM); MONOCHROME1, RGB and multi-frame files.
#include <gtest/gtest.h>

#include <gdcmDataElement.h>
#include <gdcmDataSet.h>
#include <gdcmFile.h>
#include <gdcmItem.h>
#include <gdcmSequenceOfItems.h>
#include <gdcmTransferSyntax.h>
#include <gdcmWriter.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "data/dicom.h"
#include "data/orient.h"
#include "data/tfrecord.h"
#include "tests/test_data_util.h"

namespace fs = std::filesystem;
using namespace sf::data;
using sf::test::run_shell;
using sf::test::ScratchDir;
using sf::test::one_line;

namespace {

void put(gdcm::DataSet& ds, uint16_t g, uint16_t e, gdcm::VR vr, std::string v) {
  if (v.size() % 2) v.push_back(vr == gdcm::VR::UI ? '\0' : ' ');
  gdcm::DataElement de(gdcm::Tag(g, e));
  de.SetVR(vr);
  de.SetByteValue(v.data(), gdcm::VL(static_cast<uint32_t>(v.size())));
  ds.Replace(de);
}
void put_us(gdcm::DataSet& ds, uint16_t g, uint16_t e, uint16_t v) {
  gdcm::DataElement de(gdcm::Tag(g, e));
  de.SetVR(gdcm::VR::US);
  de.SetByteValue(reinterpret_cast<const char*>(&v), gdcm::VL(2));
  ds.Replace(de);
}
void put_seq(gdcm::DataSet& ds, uint16_t g, uint16_t e, const std::vector<gdcm::DataSet>& items) {
  gdcm::SmartPointer<gdcm::SequenceOfItems> sq = new gdcm::SequenceOfItems;
  sq->SetLengthToUndefined();
  for (const auto& nested : items) {
    gdcm::Item it;
    it.SetVLToUndefined();
    it.SetNestedDataSet(nested);
    sq->AddItem(it);
  }
  gdcm::DataElement de(gdcm::Tag(g, e));
  de.SetVR(gdcm::VR::SQ);
  de.SetValue(*sq);
  de.SetVLToUndefined();
  ds.Replace(de);
}
std::string ds_list(const std::vector<double>& v) {
  std::ostringstream s;
  for (size_t i = 0; i < v.size(); ++i) s << (i ? "\\" : "") << v[i];
  return s.str();
}

// One uncompressed (explicit VR little-endian) MR image.
struct Slice {
  std::string series_uid = "1.2.826.0.1.3680043.9.7777.1";
  int rows = 40, cols = 32, frames = 1;
  int instance = 1;
  std::vector<double> ipp{-20, -30, 0}, iop{1, 0, 0, 0, 1, 0}, spacing{0.8, 0.6};  // spacing: rows, columns
  double slope = 0.5, intercept = -100;
  double slice_spacing = 0;  // SpacingBetweenSlices (multi-frame)
  std::string photometric = "MONOCHROME2";
  int samples = 1, bits_allocated = 16, bits_stored = 16;
  bool is_signed = true;
  std::vector<int16_t> values;  // [frames, rows, cols] (16-bit)
  std::vector<uint8_t> bytes;   // raw pixel bytes instead (8-bit images)
};

void write_slice(const std::string& path, const Slice& s) {
  static int serial = 0;
  gdcm::Writer w;
  w.SetFileName(path.c_str());
  gdcm::File& file = w.GetFile();
  file.GetHeader().SetDataSetTransferSyntax(gdcm::TransferSyntax::ExplicitVRLittleEndian);
  gdcm::DataSet& ds = file.GetDataSet();
  put(ds, 0x0008, 0x0016, gdcm::VR::UI, "1.2.840.10008.5.1.4.1.1.4");  // MR Image Storage
  put(ds, 0x0008, 0x0018, gdcm::VR::UI, s.series_uid + "." + std::to_string(++serial));
  put(ds, 0x0008, 0x0060, gdcm::VR::CS, "MR");
  put(ds, 0x0010, 0x0010, gdcm::VR::PN, "Phantom^Test");
  put(ds, 0x0020, 0x000D, gdcm::VR::UI, "1.2.826.0.1.3680043.9.7777.100");
  put(ds, 0x0020, 0x000E, gdcm::VR::UI, s.series_uid);
  put(ds, 0x0020, 0x0013, gdcm::VR::IS, std::to_string(s.instance));
  if (!s.ipp.empty()) put(ds, 0x0020, 0x0032, gdcm::VR::DS, ds_list(s.ipp));
  if (!s.iop.empty()) put(ds, 0x0020, 0x0037, gdcm::VR::DS, ds_list(s.iop));
  put_us(ds, 0x0028, 0x0002, static_cast<uint16_t>(s.samples));
  put(ds, 0x0028, 0x0004, gdcm::VR::CS, s.photometric);
  if (s.samples == 3) put_us(ds, 0x0028, 0x0006, 0);
  if (s.frames > 1) put(ds, 0x0028, 0x0008, gdcm::VR::IS, std::to_string(s.frames));
  if (s.slice_spacing > 0) put(ds, 0x0018, 0x0088, gdcm::VR::DS, ds_list({s.slice_spacing}));
  put_us(ds, 0x0028, 0x0010, static_cast<uint16_t>(s.rows));
  put_us(ds, 0x0028, 0x0011, static_cast<uint16_t>(s.cols));
  put(ds, 0x0028, 0x0030, gdcm::VR::DS, ds_list(s.spacing));
  put_us(ds, 0x0028, 0x0100, static_cast<uint16_t>(s.bits_allocated));
  put_us(ds, 0x0028, 0x0101, static_cast<uint16_t>(s.bits_stored));
  put_us(ds, 0x0028, 0x0102, static_cast<uint16_t>(s.bits_stored - 1));
  put_us(ds, 0x0028, 0x0103, s.is_signed ? 1 : 0);
  put(ds, 0x0028, 0x1050, gdcm::VR::DS, "40");
  put(ds, 0x0028, 0x1051, gdcm::VR::DS, "400");
  put(ds, 0x0028, 0x1052, gdcm::VR::DS, ds_list({s.intercept}));
  put(ds, 0x0028, 0x1053, gdcm::VR::DS, ds_list({s.slope}));
  gdcm::DataElement px(gdcm::Tag(0x7FE0, 0x0010));
  if (s.bits_allocated == 16) {
    px.SetVR(gdcm::VR::OW);
    px.SetByteValue(reinterpret_cast<const char*>(s.values.data()), gdcm::VL(static_cast<uint32_t>(s.values.size() * 2)));
  } else {
    px.SetVR(gdcm::VR::OB);
    std::vector<uint8_t> b = s.bytes;
    if (b.size() % 2) b.push_back(0);
    px.SetByteValue(reinterpret_cast<const char*>(b.data()), gdcm::VL(static_cast<uint32_t>(b.size())));
  }
  ds.Replace(px);
  ASSERT_TRUE(w.Write()) << path;
}

// Stored value of slice k (0 = lowest position), row j, column i: signed, over the whole range.
int16_t stored(int k, int j, int i) { return static_cast<int16_t>((i * 37 + j * 11 + k * 101) % 3000 - 1000 + (i == j ? 20000 : 0)); }

std::vector<int16_t> slice_values(int k, int rows, int cols) {
  std::vector<int16_t> v(static_cast<size_t>(rows) * cols);
  for (int j = 0; j < rows; ++j)
    for (int i = 0; i < cols; ++i) v[static_cast<size_t>(j * cols + i)] = stored(k, j, i);
  return v;
}

struct SeriesSpec {
  std::string uid = "1.2.826.0.1.3680043.9.7777.1";
  int slices = 24, rows = 40, cols = 32;
  std::vector<double> iop{1, 0, 0, 0, 1, 0};
  std::vector<double> origin{-20, -30, 4};
  double dz = 2.5;
  std::string prefix = "im";
};

// Normal of an IOP (row cosines x column cosines), by hand.
std::array<double, 3> normal_of(const std::vector<double>& o) {
  return {o[1] * o[5] - o[2] * o[4], o[2] * o[3] - o[0] * o[5], o[0] * o[4] - o[1] * o[3]};
}

// Writes the series's files in shuffled order with InstanceNumber counting down (so that the
// order must come from the positions). Slice k sits at origin + k * dz * normal.
std::vector<std::string> write_series(const fs::path& dir, const SeriesSpec& sp, uint32_t seed = 7) {
  fs::create_directories(dir);
  std::vector<int> order(static_cast<size_t>(sp.slices));
  for (int k = 0; k < sp.slices; ++k) order[static_cast<size_t>(k)] = k;
  std::mt19937 rng(seed);
  std::shuffle(order.begin(), order.end(), rng);
  const auto n = normal_of(sp.iop);
  std::vector<std::string> names(static_cast<size_t>(sp.slices));
  for (size_t f = 0; f < order.size(); ++f) {
    const int k = order[f];
    Slice s;
    s.series_uid = sp.uid;
    s.rows = sp.rows;
    s.cols = sp.cols;
    s.instance = sp.slices - k;
    s.iop = sp.iop;
    s.ipp = {sp.origin[0] + k * sp.dz * n[0], sp.origin[1] + k * sp.dz * n[1], sp.origin[2] + k * sp.dz * n[2]};
    s.values = slice_values(k, sp.rows, sp.cols);
    char name[64];
    std::snprintf(name, sizeof name, "%s%03zu.dcm", sp.prefix.c_str(), f);
    write_slice((dir / name).string(), s);
    names[static_cast<size_t>(k)] = name;
  }
  return names;  // by slice index
}

// The values the series must hold (slope 0.5, intercept -100 as written), slice k at [k].
void expect_series_values(const Volume& v, const SeriesSpec& sp) {
  ASSERT_EQ(v.nx, sp.cols);
  ASSERT_EQ(v.ny, sp.rows);
  ASSERT_EQ(v.nz, sp.slices);
  size_t bad = 0;
  for (int k = 0; k < sp.slices; ++k)
    for (int j = 0; j < sp.rows; ++j)
      for (int i = 0; i < sp.cols; ++i)
        if (v.at(i, j, k) != static_cast<float>(0.5 * stored(k, j, i) - 100)) ++bad;
  EXPECT_EQ(bad, 0u) << v.path;
}

// The affine a series written by write_series must have: LPS columns from IOP/PixelSpacing, then
// x and y negated (computed here by hand).
Affine expected_affine(const SeriesSpec& sp) {
  const auto n = normal_of(sp.iop);
  Affine a{};
  for (int d = 0; d < 3; ++d) {
    const double sign = d < 2 ? -1 : 1;
    a[d][0] = sign * sp.iop[d] * 0.6;       // column spacing
    a[d][1] = sign * sp.iop[3 + d] * 0.8;   // row spacing
    a[d][2] = sign * n[d] * sp.dz;
    a[d][3] = sign * sp.origin[d];
  }
  a[3][3] = 1;
  return a;
}

void expect_affine_near(const Affine& got, const Affine& want) {
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c) EXPECT_NEAR(got[r][c], want[r][c], 1e-6) << "affine[" << r << "][" << c << "]";
}

// The exception message of fn (FormatError), "" when it threw none.
template <typename Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const FormatError& e) {
    return e.what();
  }
  return "";
}

std::string gdcmconv() {
  auto r = run_shell("command -v gdcmconv");
  std::string p = r.out;
  while (!p.empty() && (p.back() == '\n' || p.back() == ' ')) p.pop_back();
  return r.rc == 0 ? p : "";
}

}  // namespace

TEST(DataDicom, SeriesGroupedByUidAndOrderedAlongTheNormal) {
  ScratchDir tmp("dcm_group");
  SeriesSpec a;
  SeriesSpec b;
  b.uid = "1.2.826.0.1.3680043.9.7777.2";
  b.slices = 5;
  b.rows = 16;
  b.cols = 16;
  b.prefix = "other";
  write_series(tmp.path / "src/study", a);
  write_series(tmp.path / "src/study", b, 3);
  write_series(tmp.path / "src/single", [] { SeriesSpec c; c.uid = "1.2.826.0.1.3680043.9.7777.3"; c.slices = 3; return c; }());
  std::ofstream(tmp / "src/study/notes.txt") << "not an image";  // ignored: does not look like DICOM
  auto series = find_dicom_series(tmp / "src");
  ASSERT_EQ(series.size(), 3u);
  EXPECT_EQ(series[0].name, "single");
  EXPECT_EQ(series[1].name, "study#" + a.uid);
  EXPECT_EQ(series[2].name, "study#" + b.uid);
  EXPECT_EQ(series[1].uid, a.uid);
  EXPECT_EQ(series[1].files.size(), 24u);
  EXPECT_EQ(series[2].files.size(), 5u);
  Volume v = read_dicom_series(series[1]);
  expect_series_values(v, a);
  expect_affine_near(v.affine, expected_affine(a));
  EXPECT_TRUE(v.has_orientation);
  EXPECT_TRUE(v.has_window);
  EXPECT_EQ(v.window_center, 40);
  EXPECT_EQ(v.window_width, 400);
  EXPECT_NE(v.description.find("MR"), std::string::npos) << v.description;
  EXPECT_NE(v.description.find(a.uid), std::string::npos) << v.description;
  EXPECT_NE(v.description.find("24 slices"), std::string::npos) << v.description;
  expect_series_values(read_dicom_series(series[2]), b);
  // One file as the source.
  auto one = find_dicom_series(tmp / "src/single/im000.dcm");
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].files, std::vector<std::string>{"im000.dcm"});
  EXPECT_EQ(read_dicom_series(one[0]).nz, 1);
}

TEST(DataDicom, CompressedSeriesHaveTheSameValues) {
  const std::string conv = gdcmconv();
  ASSERT_FALSE(conv.empty()) << "gdcmconv not found: run scripts/install-test-deps.sh (package libgdcm-tools)";
  ScratchDir tmp("dcm_codecs");
  SeriesSpec sp;
  auto names = write_series(tmp.path / "raw", sp);
  const Volume raw = read_dicom_series(find_dicom_series(tmp / "raw").at(0));
  expect_series_values(raw, sp);
  struct Codec {
    const char* option;
    const char* uid;
  };
  for (const Codec& c : {Codec{"--jpeg", "1.2.840.10008.1.2.4.70"}, Codec{"--j2k", "1.2.840.10008.1.2.4.90"},
                         Codec{"--jpegls", "1.2.840.10008.1.2.4.80"}, Codec{"--rle", "1.2.840.10008.1.2.5"},
                         Codec{"--deflated", "1.2.840.10008.1.2.1.99"}}) {
    SCOPED_TRACE(c.option);
    const fs::path dir = tmp.path / (std::string("c") + (c.option + 2));
    fs::create_directories(dir);
    for (const auto& n : names) {
      auto r = run_shell(conv + " " + c.option + " " + (tmp.path / "raw" / n).string() + " " + (dir / n).string());
      ASSERT_EQ(r.rc, 0) << r.out;
    }
    DicomImage one = read_dicom((dir / names[0]).string());
    EXPECT_EQ(one.transfer_syntax, c.uid) << one.transfer_syntax_name;
    auto series = find_dicom_series(dir.string());
    ASSERT_EQ(series.size(), 1u);
    Volume v = read_dicom_series(series[0]);
    EXPECT_EQ(v.data, raw.data);  // exact: every codec here is lossless
    expect_affine_near(v.affine, raw.affine);
    EXPECT_NE(v.description.find(one.transfer_syntax_name), std::string::npos) << v.description;
  }
}

TEST(DataDicom, AxialSeriesDisplaysAsStored) {
  ScratchDir tmp("dcm_axial");
  SeriesSpec sp;
  sp.slices = 6;
  write_series(tmp.path / "ax", sp);
  Volume v = read_dicom_series(find_dicom_series(tmp / "ax").at(0));
  EXPECT_EQ(axis_codes(v.affine), "LPS");  // +i towards L (LPS +x), +j towards P, +k towards S
  Volume c = to_canonical(v);
  ASSERT_EQ(plane_slice_count(c, Plane::Axial), sp.slices);
  for (int k = 0; k < sp.slices; ++k) {
    auto img = display_slice(c, Plane::Axial, k);
    ASSERT_EQ(img.size(), static_cast<size_t>(sp.rows * sp.cols));
    for (int j = 0; j < sp.rows; ++j)
      for (int i = 0; i < sp.cols; ++i)
        ASSERT_EQ(img[static_cast<size_t>(j * sp.cols + i)], static_cast<float>(0.5 * stored(k, j, i) - 100))
            << "slice " << k << " row " << j << " column " << i;
  }
}

TEST(DataDicom, FlippedAndPermutedOrientations) {
  // Expected codes from the LPS -> RAS rule by hand: a direction along +x(LPS) is L, -x is R,
  // +y is P, -y is A, +z is S, -z is I.
  auto letter = [](const std::array<double, 3>& d) {
    for (int a = 0; a < 3; ++a)
      if (std::fabs(d[a]) > 0.5) return d[a] > 0 ? "LPS"[a] : "RAI"[a];
    return '?';
  };
  ScratchDir tmp("dcm_orient");
  int idx = 0;
  for (const std::vector<double>& iop : {std::vector<double>{1, 0, 0, 0, 0, -1}, std::vector<double>{0, 1, 0, 0, 0, -1},
                                         std::vector<double>{-1, 0, 0, 0, 1, 0}, std::vector<double>{0, -1, 0, 1, 0, 0}}) {
    SeriesSpec sp;
    sp.slices = 5;
    sp.iop = iop;
    sp.uid += "." + std::to_string(++idx);
    const fs::path dir = tmp.path / ("s" + std::to_string(idx));
    write_series(dir, sp);
    Volume v = read_dicom_series(find_dicom_series(dir.string()).at(0));
    const auto n = normal_of(iop);
    std::string want;
    want += letter({iop[0], iop[1], iop[2]});
    want += letter({iop[3], iop[4], iop[5]});
    want += letter(n);
    EXPECT_EQ(axis_codes(v.affine), want) << "IOP " << ds_list(iop);
    expect_series_values(v, sp);
    expect_affine_near(v.affine, expected_affine(sp));
  }
}

TEST(DataDicom, MissingSliceIsAnErrorNamingTheSeries) {
  ScratchDir tmp("dcm_gap");
  SeriesSpec sp;
  sp.slices = 8;
  auto names = write_series(tmp.path / "src/gappy", sp);
  fs::remove(tmp.path / "src/gappy" / names[4]);
  auto series = find_dicom_series(tmp / "src");
  ASSERT_EQ(series.size(), 1u);
  const std::string msg = error_of([&] { read_dicom_series(series[0]); });
  EXPECT_TRUE(one_line(msg)) << msg;
  EXPECT_NE(msg.find("gappy"), std::string::npos) << msg;
  EXPECT_NE(msg.find(names[3]), std::string::npos) << msg;
  EXPECT_NE(msg.find(names[5]), std::string::npos) << msg;
  EXPECT_NE(msg.find("missing"), std::string::npos) << msg;
}

TEST(DataDicom, DuplicatePositionIsAnError) {
  ScratchDir tmp("dcm_dup");
  SeriesSpec sp;
  sp.slices = 4;
  auto names = write_series(tmp.path / "d", sp);
  Slice s;
  s.series_uid = sp.uid;
  s.ipp = {sp.origin[0], sp.origin[1], sp.origin[2] + 2 * sp.dz};  // where slice 2 is
  s.values = slice_values(9, s.rows, s.cols);
  write_slice(tmp / "d/extra.dcm", s);
  const std::string msg = error_of([&] { read_dicom_series(find_dicom_series(tmp / "d").at(0)); });
  EXPECT_TRUE(one_line(msg)) << msg;
  EXPECT_NE(msg.find("extra.dcm"), std::string::npos) << msg;
  EXPECT_NE(msg.find(names[2]), std::string::npos) << msg;
  EXPECT_NE(msg.find("same slice position"), std::string::npos) << msg;
}

TEST(DataDicom, MismatchedSizeTruncatedAndNonDicomFiles) {
  ScratchDir tmp("dcm_bad");
  SeriesSpec sp;
  sp.slices = 4;
  write_series(tmp.path / "size", sp);
  Slice s;
  s.series_uid = sp.uid;
  s.rows = 20;
  s.ipp = {sp.origin[0], sp.origin[1], sp.origin[2] + 4 * sp.dz};
  s.values = slice_values(4, s.rows, s.cols);
  write_slice(tmp / "size/zz_small.dcm", s);
  std::string msg = error_of([&] { read_dicom_series(find_dicom_series(tmp / "size").at(0)); });
  EXPECT_TRUE(one_line(msg)) << msg;
  EXPECT_NE(msg.find("zz_small.dcm"), std::string::npos) << msg;
  EXPECT_NE(msg.find("32x20"), std::string::npos) << msg;

  // Truncated: the pixel data ends early.
  auto names = write_series(tmp.path / "cut", sp);
  const std::string victim = tmp / ("cut/" + names[1]);
  const auto size = fs::file_size(victim);
  fs::resize_file(victim, size - 100);
  msg = error_of([&] { read_dicom_series(find_dicom_series(tmp / "cut").at(0)); });
  EXPECT_TRUE(one_line(msg)) << msg;
  EXPECT_NE(msg.find(names[1]), std::string::npos) << msg;
  msg = error_of([&] { read_dicom(victim); });
  EXPECT_NE(msg.find(victim), std::string::npos) << msg;

  // A .dcm that is not DICOM: named, not ignored.
  write_series(tmp.path / "junk", sp);
  std::ofstream(tmp / "junk/readme.dcm") << "this is plain text, not a DICOM file at all\n";
  msg = error_of([&] { find_dicom_series(tmp / "junk"); });
  EXPECT_TRUE(one_line(msg)) << msg;
  EXPECT_NE(msg.find("readme.dcm"), std::string::npos) << msg;
  msg = error_of([&] { read_dicom(tmp / "junk/readme.dcm"); });
  EXPECT_NE(msg.find("readme.dcm"), std::string::npos) << msg;
}

TEST(DataDicom, SeriesWithoutGeometryFollowsInstanceNumbers) {
  ScratchDir tmp("dcm_nogeo");
  for (int k = 0; k < 3; ++k) {
    Slice s;
    s.ipp.clear();
    s.iop.clear();
    s.instance = 3 - k;  // file a: instance 3, b: 2, c: 1
    s.values = slice_values(k, s.rows, s.cols);
    write_slice(tmp / (std::string("nogeo_") + static_cast<char>('a' + k) + ".dcm"), s);
  }
  Volume v = read_dicom_series(find_dicom_series(tmp.path.string()).at(0));
  EXPECT_FALSE(v.has_orientation);
  ASSERT_EQ(v.nz, 3);
  for (int k = 0; k < 3; ++k) EXPECT_EQ(v.at(5, 7, k), static_cast<float>(0.5 * stored(2 - k, 7, 5) - 100)) << k;
}

TEST(DataDicom, MultiFrameStackedAlongTheNormal) {
  ScratchDir tmp("dcm_mf");
  Slice s;
  s.frames = 4;
  s.slice_spacing = 3;
  s.iop = {1, 0, 0, 0, 0, -1};  // coronal: normal (0, 1, 0) in LPS
  s.ipp = {-10, 5, 20};
  for (int f = 0; f < 4; ++f) {
    auto v = slice_values(f, s.rows, s.cols);
    s.values.insert(s.values.end(), v.begin(), v.end());
  }
  write_slice(tmp / "mf.dcm", s);
  DicomImage d = read_dicom(tmp / "mf.dcm");
  EXPECT_EQ(d.frames, 4);
  Volume v = read_dicom_series(find_dicom_series(tmp.path.string()).at(0));
  ASSERT_EQ(v.nz, 4);
  for (int f = 0; f < 4; ++f) EXPECT_EQ(v.at(3, 9, f), static_cast<float>(0.5 * stored(f, 9, 3) - 100)) << f;
  // k direction: +y (LPS) * 3 mm -> RAS y = -3; origin LPS (-10, 5, 20) -> RAS (10, -5, 20).
  EXPECT_NEAR(v.affine[1][2], -3, 1e-9);
  EXPECT_NEAR(v.affine[0][3], 10, 1e-9);
  EXPECT_NEAR(v.affine[1][3], -5, 1e-9);
  EXPECT_NEAR(v.affine[2][3], 20, 1e-9);
}

TEST(DataDicom, EnhancedMultiFrameUsesPerFramePositions) {
  // Enhanced MR: geometry and rescale in the functional groups only; frames stored from the top
  // (frame f at z = 10 - 4 f), so the volume must reverse them.
  ScratchDir tmp("dcm_enh");
  const int frames = 3, rows = 12, cols = 10;
  gdcm::Writer w;
  const std::string path = tmp / "enhanced.dcm";
  w.SetFileName(path.c_str());
  w.GetFile().GetHeader().SetDataSetTransferSyntax(gdcm::TransferSyntax::ExplicitVRLittleEndian);
  gdcm::DataSet& ds = w.GetFile().GetDataSet();
  put(ds, 0x0008, 0x0016, gdcm::VR::UI, "1.2.840.10008.5.1.4.1.1.4.1");  // Enhanced MR Image Storage
  put(ds, 0x0008, 0x0018, gdcm::VR::UI, "1.2.826.0.1.3680043.9.7777.50.1");
  put(ds, 0x0008, 0x0060, gdcm::VR::CS, "MR");
  put(ds, 0x0020, 0x000D, gdcm::VR::UI, "1.2.826.0.1.3680043.9.7777.100");
  put(ds, 0x0020, 0x000E, gdcm::VR::UI, "1.2.826.0.1.3680043.9.7777.50");
  put(ds, 0x0020, 0x0013, gdcm::VR::IS, "1");
  put_us(ds, 0x0028, 0x0002, 1);
  put(ds, 0x0028, 0x0004, gdcm::VR::CS, "MONOCHROME2");
  put(ds, 0x0028, 0x0008, gdcm::VR::IS, std::to_string(frames));
  put_us(ds, 0x0028, 0x0010, rows);
  put_us(ds, 0x0028, 0x0011, cols);
  put_us(ds, 0x0028, 0x0100, 16);
  put_us(ds, 0x0028, 0x0101, 16);
  put_us(ds, 0x0028, 0x0102, 15);
  put_us(ds, 0x0028, 0x0103, 1);
  gdcm::DataSet orient, measures, rescale, shared;
  put(orient, 0x0020, 0x0037, gdcm::VR::DS, "1\\0\\0\\0\\1\\0");
  put(measures, 0x0028, 0x0030, gdcm::VR::DS, "0.8\\0.6");
  put(measures, 0x0018, 0x0050, gdcm::VR::DS, "4");
  put(rescale, 0x0028, 0x1052, gdcm::VR::DS, "-100");
  put(rescale, 0x0028, 0x1053, gdcm::VR::DS, "0.5");
  put(rescale, 0x0028, 0x1054, gdcm::VR::LO, "US");
  put_seq(shared, 0x0020, 0x9116, {orient});
  put_seq(shared, 0x0028, 0x9110, {measures});
  put_seq(shared, 0x0028, 0x9145, {rescale});
  put_seq(ds, 0x5200, 0x9229, {shared});
  std::vector<gdcm::DataSet> per_frame;
  std::vector<int16_t> values;
  for (int f = 0; f < frames; ++f) {
    gdcm::DataSet pos, item;
    put(pos, 0x0020, 0x0032, gdcm::VR::DS, ds_list({-20, -30, 10.0 - 4 * f}));
    put_seq(item, 0x0020, 0x9113, {pos});
    per_frame.push_back(item);
    auto v = slice_values(frames - 1 - f, rows, cols);  // slice index from the bottom
    values.insert(values.end(), v.begin(), v.end());
  }
  put_seq(ds, 0x5200, 0x9230, per_frame);
  gdcm::DataElement px(gdcm::Tag(0x7FE0, 0x0010));
  px.SetVR(gdcm::VR::OW);
  px.SetByteValue(reinterpret_cast<const char*>(values.data()), gdcm::VL(static_cast<uint32_t>(values.size() * 2)));
  ds.Replace(px);
  ASSERT_TRUE(w.Write());

  DicomImage d = read_dicom(path);
  ASSERT_EQ(d.frames, frames);
  ASSERT_EQ(d.frame_positions.size(), static_cast<size_t>(frames));
  Volume v = read_dicom_series(find_dicom_series(tmp.path.string()).at(0));
  SeriesSpec sp;
  sp.slices = frames;
  sp.rows = rows;
  sp.cols = cols;
  sp.origin = {-20, -30, 2};
  sp.dz = 4;
  expect_series_values(v, sp);
  expect_affine_near(v.affine, expected_affine(sp));
}

TEST(DataDicom, Monochrome1IsInvertedAndRgbBecomesLuma) {
  ScratchDir tmp("dcm_photo");
  Slice m;
  m.photometric = "MONOCHROME1";
  m.is_signed = false;
  m.bits_stored = 12;
  m.slope = 1;
  m.intercept = 0;
  m.rows = m.cols = 8;
  for (int i = 0; i < 64; ++i) m.values.push_back(static_cast<int16_t>(i * 60));
  write_slice(tmp / "m1.dcm", m);
  DicomImage d = read_dicom(tmp / "m1.dcm");
  ASSERT_EQ(d.pixels.size(), 64u);
  for (int i = 0; i < 64; ++i) EXPECT_EQ(d.pixels[static_cast<size_t>(i)], 4095 - i * 60) << i;
  EXPECT_EQ(d.window_center, 4095 - 40);  // mirrored with the values
  EXPECT_EQ(d.window_width, 400);

  Slice c;
  c.photometric = "RGB";
  c.samples = 3;
  c.bits_allocated = c.bits_stored = 8;
  c.is_signed = false;
  c.slope = 1;
  c.intercept = 0;
  c.rows = 16;
  c.cols = 24;  // (gdcmconv --j2k crashes on tiny colour images)
  for (int p = 0; p < 16 * 24; ++p)
    for (int ch = 0; ch < 3; ++ch) c.bytes.push_back(static_cast<uint8_t>((p * 10 + ch * 70) % 256));
  write_slice(tmp / "rgb.dcm", c);
  d = read_dicom(tmp / "rgb.dcm");
  ASSERT_EQ(d.pixels.size(), 16u * 24u);
  for (int p = 0; p < 16 * 24; ++p) {
    const double r = (p * 10) % 256, g = (p * 10 + 70) % 256, b = (p * 10 + 140) % 256;
    EXPECT_EQ(d.pixels[static_cast<size_t>(p)], static_cast<int32_t>(std::lround(0.299 * r + 0.587 * g + 0.114 * b))) << p;
  }
  // The same luma from planar (RRR..GGG..BBB) and lossless compressed copies.
  const std::string conv = gdcmconv();
  ASSERT_FALSE(conv.empty()) << "gdcmconv not found: run scripts/install-test-deps.sh (package libgdcm-tools)";
  for (const char* option : {"--planar-configuration 1", "--rle", "--jpeg", "--j2k", "--jpegls"}) {
    const std::string out = tmp / "rgb_copy.dcm";
    auto r = run_shell(conv + " " + option + " " + (tmp / "rgb.dcm") + " " + out);
    ASSERT_EQ(r.rc, 0) << option << ": " << r.out;
    EXPECT_EQ(read_dicom(out).pixels, d.pixels) << option;
  }
}
