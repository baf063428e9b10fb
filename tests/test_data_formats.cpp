// Importers against the golden fixtures: TFRecord datasets, PNG folders with dataset.json, the
// corrupt TFRecord files, and real MRI files (NIfTI big-endian/gzipped/4-D, a DICOM slice).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "data/dicom.h"
#include "data/h5.h"
#include "data/image.h"
#include "data/import.h"
#include "data/nifti.h"
#include "data/pack.h"
#include "data/tfrecord.h"
#include "tests/test_data_util.h"

namespace fs = std::filesystem;
using namespace sf::data;
using sf::test::fixture;
using sf::test::ScratchDir;

namespace {

std::string expected_h5() { return fixture("data_formats_expected.h5"); }

void expect_tfr_pack_matches(const std::string& name) {
  ScratchDir tmp("tfr_" + name);
  ImportOptions o;
  o.source = fixture(name);
  o.dest = tmp / "pack.h5";
  ImportSummary s = pack_dataset(o);
  EXPECT_EQ(s.source_kind, "tfrecords");

  auto ex = sf::h5::open_file(expected_h5());
  std::vector<int64_t> shape;
  auto want = sf::h5::read_u8(ex, name + "/images", &shape);
  PackReader pack(o.dest);
  ASSERT_EQ(pack.size(), shape[0]);
  EXPECT_EQ(pack.info().channels, shape[1]);
  EXPECT_EQ(pack.info().resolution, shape[2]);
  std::vector<uint8_t> got(want.size());
  for (int64_t i = 0; i < pack.size(); ++i) pack.read_image(i, got.data() + i * pack.info().image_bytes());
  EXPECT_EQ(got, want) << name << ": images differ";

  if (sf::h5::exists(ex, name + "/labels")) {
    std::vector<int64_t> lshape;
    auto labels = sf::h5::read_f32(ex, name + "/labels", &lshape);
    ASSERT_EQ(pack.info().label_kind, LabelKind::Vector);
    ASSERT_EQ(pack.info().label_dim, lshape[1]);
    std::vector<float> mine(pack.vector_label(0), pack.vector_label(0) + labels.size());
    EXPECT_EQ(mine, labels);
  } else {
    EXPECT_EQ(pack.info().label_kind, LabelKind::None);
  }
  auto names = pack.names();
  ASSERT_EQ(static_cast<int64_t>(names.size()), pack.size());
  EXPECT_NE(names[0].find("-r0"), std::string::npos) << names[0];
}

TEST(DataTfrecord, RgbConditionalPackEqualsExpected) { expect_tfr_pack_matches("tfr_rgb16_cond"); }
TEST(DataTfrecord, GrayPackEqualsExpected) { expect_tfr_pack_matches("tfr_gray8"); }

TEST(DataTfrecord, LowerLevelsAreValidRecords) {
  // Every level of every fixture dataset decodes, with the resolution its file name says.
  for (std::string name : {"tfr_rgb16_cond", "tfr_gray8"}) {
    TfDatasetFiles files = find_tf_dataset(fixture(name));
    ASSERT_GE(files.levels.size(), 2u);
    for (auto& [lod, path] : files.levels) {
      TfRecordReader r(path);
      std::string rec;
      int n = 0;
      while (r.next(rec)) {
        auto img = parse_tf_example_image(rec, path);
        EXPECT_EQ(img.shape[1], 1 << lod);
        EXPECT_EQ(img.shape[2], 1 << lod);
        ++n;
      }
      EXPECT_GT(n, 0) << path;
    }
  }
}

void expect_rejected(const std::string& file, const std::string& problem) {
  ScratchDir tmp("corrupt");
  ImportOptions o;
  o.source = fixture(file);
  o.dest = tmp / "pack.h5";
  try {
    pack_dataset(o);
    FAIL() << file << " was accepted";
  } catch (const std::exception& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(file), std::string::npos) << msg;
    EXPECT_NE(msg.find("record "), std::string::npos) << msg;
    EXPECT_NE(msg.find(problem), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
  }
  EXPECT_FALSE(fs::exists(o.dest)) << "no partial pack";
  EXPECT_TRUE(fs::is_empty(tmp.path)) << "no temporary left behind";
}

TEST(DataTfrecord, CorruptCrcRejected) { expect_rejected("corrupt_crc.tfrecords", "CRC mismatch"); }
TEST(DataTfrecord, TruncatedRejected) { expect_rejected("corrupt_truncated.tfrecords", "truncated"); }

// ---- PNG folders ----

struct PngCase {
  std::string folder, dataset;
};

TEST(DataPng, FoldersDecodeByteForByte) {
  for (PngCase c : {PngCase{"png_gray_16", "images_hw"}, PngCase{"png_rgb_24x20", "images_hwc"}}) {
    auto ex = sf::h5::open_file(expected_h5());
    std::vector<int64_t> shape;
    auto want = sf::h5::read_u8(ex, c.folder + "/" + c.dataset, &shape);
    auto names = sf::h5::read_strings(ex, c.folder + "/names");
    ASSERT_EQ(static_cast<int64_t>(names.size()), shape[0]);
    size_t per = want.size() / names.size();
    for (size_t i = 0; i < names.size(); ++i) {
      Image img = read_image_file(fixture(c.folder + "/" + names[i]));
      EXPECT_EQ(img.height, shape[1]);
      EXPECT_EQ(img.width, shape[2]);
      EXPECT_EQ(img.channels, shape.size() == 4 ? shape[3] : 1);
      std::vector<uint8_t> w(want.begin() + static_cast<std::ptrdiff_t>(i * per), want.begin() + static_cast<std::ptrdiff_t>((i + 1) * per));
      EXPECT_EQ(img.pixels, w) << c.folder << "/" << names[i];
    }
    // The folder listing holds exactly these files (sorted like the reference: by path components).
    auto listed = list_image_folder(fixture(c.folder));
    std::vector<std::string> sorted_names = names;
    std::sort(sorted_names.begin(), sorted_names.end(), [](const std::string& a, const std::string& b) {
      bool as = a.find('/') != std::string::npos, bs = b.find('/') != std::string::npos;
      return as != bs ? bs : a < b;  // "img*.png" < "sub" as a path component
    });
    EXPECT_EQ(listed, sorted_names);
  }
}

std::map<std::string, int64_t> json_labels(const std::string& folder) {
  std::ifstream f(fixture(folder + "/dataset.json"));
  auto j = nlohmann::json::parse(f);
  std::map<std::string, int64_t> m;
  for (auto& e : j["labels"]) m[e[0].get<std::string>()] = e[1].get<int64_t>();
  return m;
}

TEST(DataPng, GrayFolderPacksWithDatasetJsonLabels) {
  ScratchDir tmp("png_gray");
  ImportOptions o;
  o.source = fixture("png_gray_16");
  o.dest = tmp / "pack.h5";
  auto s = pack_dataset(o);
  EXPECT_EQ(s.source_kind, "image-folder");
  PackReader pack(o.dest);
  EXPECT_EQ(pack.info().channels, 1);
  EXPECT_EQ(pack.info().resolution, 16);
  ASSERT_EQ(pack.info().label_kind, LabelKind::Class);
  auto labels = json_labels("png_gray_16");
  auto names = pack.names();
  ASSERT_EQ(names.size(), labels.size());
  auto ex = sf::h5::open_file(expected_h5());
  auto want = sf::h5::read_u8(ex, "png_gray_16/images_hw");
  auto want_names = sf::h5::read_strings(ex, "png_gray_16/names");
  std::vector<uint8_t> img(pack.info().image_bytes());
  for (int64_t i = 0; i < pack.size(); ++i) {
    EXPECT_EQ(pack.class_label(i), labels.at(names[static_cast<size_t>(i)])) << names[static_cast<size_t>(i)];
    size_t k = static_cast<size_t>(std::find(want_names.begin(), want_names.end(), names[static_cast<size_t>(i)]) - want_names.begin());
    ASSERT_LT(k, want_names.size());
    pack.read_image(i, img.data());
    EXPECT_TRUE(std::equal(img.begin(), img.end(), want.begin() + static_cast<std::ptrdiff_t>(k * img.size())));
  }
  EXPECT_EQ(pack.info().label_dim, 3);
}

TEST(DataPng, NonSquareNeedsTransformAndNamesTheFile) {
  ScratchDir tmp("png_rgb");
  ImportOptions o;
  o.source = fixture("png_rgb_24x20");
  o.dest = tmp / "pack.h5";
  try {
    pack_dataset(o);
    FAIL() << "non-square images accepted";
  } catch (const std::exception& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("img0000.png"), std::string::npos) << msg;
    EXPECT_NE(msg.find("24x20"), std::string::npos) << msg;
  }
  EXPECT_FALSE(fs::exists(o.dest));
  // With a transform and a resolution it packs; labels follow dataset.json; pad keeps the pixels.
  o.transform = "pad";
  o.resolution = 32;
  o.resize_filter = "box";
  pack_dataset(o);
  PackReader pack(o.dest);
  EXPECT_EQ(pack.info().channels, 3);
  EXPECT_EQ(pack.info().resolution, 32);
  auto labels = json_labels("png_rgb_24x20");
  auto names = pack.names();
  for (int64_t i = 0; i < pack.size(); ++i) EXPECT_EQ(pack.class_label(i), labels.at(names[static_cast<size_t>(i)]));
  // Pad to 24x24 then box-resize 24 -> 32 upsamples by nearest neighbour at 4/3: check one pixel.
  Image src = read_image_file(fixture("png_rgb_24x20/" + names[0]));
  std::vector<uint8_t> chw(pack.info().image_bytes());
  pack.read_image(0, chw.data());
  Image got = chw_to_image(chw.data(), 3, 32, 32);
  Image want = resize(pad_square(src), 32, 32, ResizeFilter::Box);
  EXPECT_EQ(got.pixels, want.pixels);
  // An existing pack is never replaced without force.
  EXPECT_THROW(pack_dataset(o), std::runtime_error);
  o.force = true;
  EXPECT_NO_THROW(pack_dataset(o));
}

// ---- real MRI files ----

std::string real(const std::string& f) { return fixture("real/" + f); }

void expect_nifti_matches(const std::string& file) {
  SCOPED_TRACE(file);
  NiftiVolume vol = read_nifti(real(file));
  auto ex = sf::h5::open_file(real("expected.h5"));
  auto g = sf::h5::open_group(ex, file);
  std::vector<int64_t> shape;
  auto want = sf::h5::read_f32(g, "data", &shape);
  EXPECT_EQ(vol.dims, shape);
  std::string dtype = sf::h5::read_string_attr(g, "dtype_on_disk");
  EXPECT_EQ(vol.big_endian, dtype[0] == '>');
  ASSERT_EQ(vol.data.size(), want.size());
  // expected.h5 is C order over [i, j, k, (t)]; the volume is i fastest.
  std::vector<int64_t> d = vol.dims;
  std::vector<int64_t> cstride(d.size(), 1);
  for (size_t a = d.size() - 1; a-- > 0;) cstride[a] = cstride[a + 1] * d[a + 1];
  double max_rel = 0;
  size_t bad = 0;
  std::vector<int64_t> idx(d.size(), 0);
  for (size_t f = 0; f < vol.data.size(); ++f) {
    int64_t rem = static_cast<int64_t>(f), c = 0;
    for (size_t a = 0; a < d.size(); ++a) {
      c += (rem % d[a]) * cstride[a];
      rem /= d[a];
    }
    float w = want[static_cast<size_t>(c)], m = vol.data[f];
    double tol = 1e-6 * std::max(1.0f, std::fabs(w));  // float32 rounding of a float64 result
    if (std::fabs(m - w) > tol) ++bad;
    max_rel = std::max(max_rel, static_cast<double>(std::fabs(m - w) / std::max(1.0f, std::fabs(w))));
  }
  EXPECT_EQ(bad, 0u) << "max relative error " << max_rel;
}

TEST(DataNifti, BigEndianInt16MatchesExpected) { expect_nifti_matches("anatomical.nii"); }
TEST(DataNifti, Gzipped4dMatchesExpected) { expect_nifti_matches("example4d.nii.gz"); }
TEST(DataNifti, GzippedUint8MatchesExpected) { expect_nifti_matches("standard.nii.gz"); }

TEST(DataDicom, SliceMatchesExpected) {
  DicomImage d = read_dicom(real("MR_small.dcm"));
  auto ex = sf::h5::open_file(real("expected.h5"));
  auto g = sf::h5::open_group(ex, "MR_small.dcm");
  std::vector<int64_t> shape;
  auto want = sf::h5::read_i64(g, "pixel_array", &shape);
  EXPECT_EQ(shape, (std::vector<int64_t>{d.rows, d.cols}));
  ASSERT_EQ(d.pixels.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) ASSERT_EQ(d.pixels[i], want[i]) << "pixel " << i;
  EXPECT_EQ(d.modality, sf::h5::read_string_attr(g, "modality"));
  EXPECT_DOUBLE_EQ(d.rescale_slope, sf::h5::read_double_attr(g, "rescale_slope"));
  EXPECT_DOUBLE_EQ(d.rescale_intercept, sf::h5::read_double_attr(g, "rescale_intercept"));
}

TEST(DataNifti, PacksSlicesPaddedToPowerOfTwo) {
  ScratchDir tmp("nifti_pack");
  ImportOptions o;
  o.source = real("anatomical.nii");
  o.dest = tmp / "mri.h5";
  o.axis = "axial";
  o.intensity = "minmax";  // the default is percentile:0.5:99.5
  o.slice_begin = 5;
  o.slice_end = 20;
  auto s = pack_dataset(o);
  EXPECT_EQ(s.source_kind, "nifti");
  PackReader pack(o.dest);
  EXPECT_EQ(pack.size(), 15);
  EXPECT_EQ(pack.info().resolution, 64);  // 33x41 -> padded to 64x64
  EXPECT_EQ(pack.info().channels, 1);
  // Slice 12 recomputed: min-max over the whole volume, image centred on the 64x64 canvas. The
  // file is stored LAS (nibabel: aff2axcodes == ('L', 'A', 'S'), affine diag(-2, 2, 2)): the
  // canonical grid reverses i, and the radiological axial view (patient's right on the left,
  // anterior at the top) reverses columns and rows again, so image row r, column c is stored
  // voxel (i = c, j = 40 - r, k = 12).
  NiftiVolume vol = read_nifti(o.source);
  auto [mn, mx] = std::minmax_element(vol.data.begin(), vol.data.end());
  std::vector<uint8_t> img(pack.info().image_bytes());
  pack.read_image(12 - 5, img.data());
  int x0 = (64 - 33) / 2, y0 = (64 - 41) / 2;
  for (int r = 0; r < 41; ++r)
    for (int c = 0; c < 33; ++c) {
      float v = vol.data[static_cast<size_t>(c + 33 * ((40 - r) + 41 * 12))];
      int want = static_cast<int>(std::lround((v - *mn) / (*mx - *mn) * 255.0));
      ASSERT_EQ(img[static_cast<size_t>((y0 + r) * 64 + x0 + c)], want) << r << "," << c;
    }
  EXPECT_EQ(img[0], 0);  // padding
  EXPECT_EQ(pack.names()[0], "anatomical.nii#slice=5");

  // 4-D: every time point is sliced; percentile scaling; resolution forced.
  o.source = real("example4d.nii.gz");
  o.dest = tmp / "fmri.h5";
  o.slice_begin = 0;
  o.slice_end = -1;
  o.intensity = "percentile:1:99";
  o.resolution = 64;
  pack_dataset(o);
  PackReader p4(o.dest);
  EXPECT_EQ(p4.size(), 24 * 2);
  EXPECT_EQ(p4.info().resolution, 64);
  EXPECT_EQ(p4.names()[24], "example4d.nii.gz#t=1,slice=0");
}

TEST(DataDicom, PacksSliceWithWindow) {
  ScratchDir tmp("dicom_pack");
  ImportOptions o;
  o.source = real("MR_small.dcm");
  o.dest = tmp / "dcm.h5";
  o.intensity = "window:500:1000";
  auto s = pack_dataset(o);
  EXPECT_EQ(s.source_kind, "dicom");
  PackReader pack(o.dest);
  ASSERT_EQ(pack.size(), 1);
  EXPECT_EQ(pack.info().resolution, 64);
  DicomImage d = read_dicom(o.source);
  std::vector<uint8_t> img(64 * 64);
  pack.read_image(0, img.data());
  for (size_t i = 0; i < img.size(); ++i) ASSERT_EQ(img[i], to_u8(static_cast<float>(d.pixels[i]), 0, 1000)) << i;
}

TEST(DataNifti, UnreadableFilesGiveOneLineErrors) {
  ScratchDir tmp("nifti_bad");
  std::string bad = tmp / "bad.nii";
  {
    std::ofstream f(bad, std::ios::binary);
    f << std::string(400, 'x');
  }
  try {
    read_nifti(bad);
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find(bad), std::string::npos);
  }
  // Truncated voxel data.
  std::ifstream in(real("anatomical.nii"), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string cut = tmp / "cut.nii";
  std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  try {
    read_nifti(cut);
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
  std::string dcm = tmp / "bad.dcm";
  std::ifstream din(real("MR_small.dcm"), std::ios::binary);
  std::string db((std::istreambuf_iterator<char>(din)), std::istreambuf_iterator<char>());
  std::ofstream(dcm, std::ios::binary) << db.substr(0, db.size() - 100);
  EXPECT_THROW(read_dicom(dcm), FormatError);
}

}  // namespace
