// Robustness of the data layer against hostile or unlucky input (issue 18): full disks while
// packing, temporaries of killed processes, damaged packs (flipped bits, zeroed blocks,
// truncation), old-format packs, NIfTI headers with a negative vox_offset or wrapping
// dimensions, tiny files that claim huge images, DICOM nesting. Every case must end in a one-line
// error naming the file (or in bit-identical data), never in a crash, hang or huge allocation:
// the risky calls run in forked children with a memory limit and an alarm.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>

#include "data/atomic_file.h"
#include "data/dicom.h"
#include "data/h5.h"
#include "data/hash.h"
#include "data/image.h"
#include "data/import.h"
#include "data/nifti.h"
#include "data/pack.h"
#include "data/tfrecord.h"
#include "data/zip.h"
#include "tests/test_child_util.h"
#include "tests/test_data_util.h"

namespace fs = std::filesystem;
using namespace sf::data;
using namespace sf::test;

namespace {

// A pack with class labels and names whose contents we know.
struct KnownPack {
  std::vector<std::vector<uint8_t>> images;
  std::vector<int64_t> labels;
  std::vector<std::string> names;
};
KnownPack write_known_pack(const std::string& path, int n, int res, uint32_t seed) {
  KnownPack k;
  PackWriter::Options o;
  o.force = true;
  PackWriter w(path, o);
  uint32_t x = seed;
  for (int i = 0; i < n; ++i) {
    std::vector<uint8_t> img(static_cast<size_t>(res) * res);
    for (auto& v : img) {
      x = x * 1664525u + 1013904223u;
      v = static_cast<uint8_t>(x >> 24);
    }
    for (int j = 0; j < res; ++j) img[static_cast<size_t>(j)] = 255;  // some 0xFF runs too
    Label l;
    l.kind = LabelKind::Class;
    l.cls = i % 3;
    std::string name = "img" + std::to_string(i) + ".png";
    w.add(img.data(), 1, res, name, l);
    k.images.push_back(img);
    k.labels.push_back(l.cls);
    k.names.push_back(name);
  }
  w.commit();
  return k;
}

// 0: everything read equals `k`; 1: a PackError (message in msg); 2: different data.
int load_and_compare(const std::string& path, const KnownPack& k, std::string& msg) {
  try {
    PackReader r(path);
    if (r.size() != static_cast<int64_t>(k.images.size())) { msg = "size differs"; return 2; }
    std::vector<uint8_t> buf(r.info().image_bytes());
    for (int64_t i = 0; i < r.size(); ++i) {
      if (buf.size() != k.images[static_cast<size_t>(i)].size()) { msg = "image size differs"; return 2; }
      r.read_image(i, buf.data());
      if (buf != k.images[static_cast<size_t>(i)]) { msg = "image " + std::to_string(i) + " differs"; return 2; }
      if (r.class_label(i) != k.labels[static_cast<size_t>(i)]) { msg = "label differs"; return 2; }
    }
    if (r.names() != k.names) { msg = "names differ"; return 2; }
    return 0;
  } catch (const PackError& e) {
    msg = e.what();
    return 1;
  }
}

// NIfTI-1 single file: header (348) + 4 extension bytes + data.
std::vector<uint8_t> nifti1(const std::vector<int16_t>& dims, int16_t datatype, int16_t bitpix, float vox_offset,
                            size_t data_bytes) {
  std::vector<uint8_t> b = sf::test::nifti1_header(dims, datatype, bitpix, vox_offset);
  b.resize(352 + data_bytes);
  for (size_t i = 352; i < b.size(); ++i) b[i] = static_cast<uint8_t>(i * 13);
  return b;
}

// NIfTI-2 single file: header (540) + 4 extension bytes + data.
std::vector<uint8_t> nifti2(const std::vector<int64_t>& dims, int16_t datatype, int64_t vox_offset, size_t data_bytes) {
  std::vector<uint8_t> b(544 + data_bytes, 0);
  int32_t hs = 540;
  std::memcpy(&b[0], &hs, 4);
  std::memcpy(&b[4], "n+2\0\r\n\032\n", 8);
  std::memcpy(&b[12], &datatype, 2);
  int64_t dim[8] = {static_cast<int64_t>(dims.size()), 1, 1, 1, 1, 1, 1, 1};
  for (size_t i = 0; i < dims.size(); ++i) dim[i + 1] = dims[i];
  std::memcpy(&b[16], dim, 64);
  double pix[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  std::memcpy(&b[104], pix, 64);
  std::memcpy(&b[168], &vox_offset, 8);
  return b;
}


}  // namespace

// ---- full file system ----

TEST(DataRobust, FullDiskPackFailsWithExit1AndLeavesNothing) {
  Tmpfs t("pack", "512k");
  if (!t.mounted) GTEST_SKIP() << t.skip_message();
  const std::string dest = t.dir + "/ph.h5";
  // Like the CLI: error on stderr, exit 1 through std::exit (at-exit handlers run: libhdf5's
  // used to crash there after the failed write).
  Child c = in_child(
      [&](std::string& msg) {
        try {
          make_synthetic_pack(dest, 400, 64, 1, 7, false);  // ~1.6 MB into 512 KiB
          msg = "packed?";
          return 0;
        } catch (const std::exception& e) {
          msg = e.what();
          return 1;
        }
      },
      {60, 0, /*use_exit=*/true});
  EXPECT_TRUE(c.exited) << c.describe();
  EXPECT_EQ(c.code, 1) << c.describe();
  EXPECT_TRUE(one_line(c.msg)) << c.msg;
  EXPECT_NE(c.msg.find("ph.h5"), std::string::npos) << c.msg;
  EXPECT_TRUE(t.files().empty()) << "left behind: " << (t.files().empty() ? "" : t.files()[0]);
}

TEST(DataRobust, FullDiskPackWithForceKeepsTheIntactPack) {
  Tmpfs t("force", "1m");
  if (!t.mounted) GTEST_SKIP() << t.skip_message();
  const std::string dest = t.dir + "/ph.h5";
  make_synthetic_pack(dest, 20, 32, 1, 3, false);  // ~20 KB, intact
  const auto before = file_bytes(dest);
  ASSERT_FALSE(before.empty());
  Child c = in_child(
      [&](std::string& msg) {
        try {
          make_synthetic_pack(dest, 400, 64, 1, 9, /*force=*/true);  // does not fit
          return 0;
        } catch (const std::exception& e) {
          msg = e.what();
          return 1;
        }
      },
      {60, 0, /*use_exit=*/true});
  EXPECT_TRUE(c.exited) << c.describe();
  EXPECT_EQ(c.code, 1) << c.describe();
  EXPECT_TRUE(one_line(c.msg)) << c.msg;
  EXPECT_EQ(file_bytes(dest), before) << "the intact pack was changed";
  EXPECT_EQ(t.files(), std::vector<std::string>{"ph.h5"});
  PackReader r(dest);  // still loads
  EXPECT_EQ(r.size(), 20);
}

// ---- temporaries of killed processes ----

TEST(DataRobust, StaleTemporariesOfDeadProcessesAreRemoved) {
  ScratchDir tmp("stale");
  pid_t dead = fork();
  if (dead == 0) _exit(0);
  waitpid(dead, nullptr, 0);  // reaped: that pid no longer runs
  const std::string self_host = temp_name_for("x").substr(temp_name_for("x").find('@') + 1);
  const std::string stale1 = tmp / ("a.h5.tmp-" + std::to_string(dead) + "@" + self_host);
  const std::string stale2 = tmp / ("b.h5.tmp-" + std::to_string(dead));  // older naming
  const std::string live = tmp / ("c.h5.tmp-" + std::to_string(getppid()) + "@" + self_host);
  const std::string other_host = tmp / ("d.h5.tmp-" + std::to_string(dead) + "@some-other-node");
  const std::string unrelated = tmp / ("notes.txt.tmp-" + std::to_string(dead));
  for (const auto& p : {stale1, stale2, live, other_host, unrelated}) put_bytes(p, std::vector<uint8_t>(8 << 10, 1));
  make_synthetic_pack(tmp / "new.h5", 4, 16, 1, 1, false);  // a writer starting in that folder
  EXPECT_FALSE(fs::exists(stale1));
  EXPECT_FALSE(fs::exists(stale2));
  EXPECT_TRUE(fs::exists(live));
  EXPECT_TRUE(fs::exists(other_host));
  EXPECT_TRUE(fs::exists(unrelated));
  EXPECT_TRUE(fs::exists(tmp / "new.h5"));
}

// ---- damaged packs ----

TEST(DataRobust, DamagedPackLoadsIdenticalOrFailsWithOneLine) {
  ScratchDir tmp("damage");
  const std::string good = tmp / "good.h5";
  KnownPack k = write_known_pack(good, 12, 32, 5);
  const auto bytes = file_bytes(good);
  ASSERT_GT(bytes.size(), 12u * 32 * 32);
  const std::string bad = tmp / "bad.h5";
  int identical = 0, errors = 0, cases = 0;
  std::vector<std::string> failures;
  auto run = [&](const std::vector<uint8_t>& b, const std::string& what) {
    put_bytes(bad, b);
    Child c = in_child([&](std::string& msg) { return load_and_compare(bad, k, msg); }, {20, 2ull << 30});
    ++cases;
    if (c.exited && c.code == 0) ++identical;
    else if (c.exited && c.code == 1 && one_line(c.msg) && c.msg.find(bad) != std::string::npos) ++errors;
    else failures.push_back(what + ": " + c.describe());
  };
  // STYLEFORGE_DAMAGE_DENSITY=N multiplies the number of damaged copies (longer sweeps by hand).
  const size_t density = std::max(1, std::getenv("STYLEFORGE_DAMAGE_DENSITY") ? std::atoi(std::getenv("STYLEFORGE_DAMAGE_DENSITY")) : 1);
  for (size_t off = 0; off < bytes.size(); off += std::max<size_t>(1, 29 / density)) {  // one flipped bit
    auto b = bytes;
    b[off] ^= static_cast<uint8_t>(1u << (off % 8));
    run(b, "flip at " + std::to_string(off));
  }
  for (size_t off = 0; off < bytes.size(); off += std::max<size_t>(1, 97 / density)) {  // a zeroed block
    auto b = bytes;
    std::fill(b.begin() + static_cast<std::ptrdiff_t>(off), b.begin() + static_cast<std::ptrdiff_t>(std::min(bytes.size(), off + 48)), 0);
    run(b, "zero block at " + std::to_string(off));
  }
  for (size_t len = 0; len < bytes.size(); len += bytes.size() / 40 + 1) {  // truncation
    run(std::vector<uint8_t>(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(len)), "truncated to " + std::to_string(len));
  }
  for (const auto& f : failures) ADD_FAILURE() << f;
  EXPECT_TRUE(failures.empty());
  EXPECT_GT(errors, cases / 2);  // most damage is detected, not silently read
  std::printf("[ damage ] pack of %zu bytes: %d cases, %d identical, %d one-line errors, %zu other\n", bytes.size(), cases,
              identical, errors, failures.size());
}

TEST(DataRobust, ChangedImageByteIsAChecksumError) {
  ScratchDir tmp("crc");
  const std::string p = tmp / "p.h5";
  KnownPack k = write_known_pack(p, 4, 32, 1);
  // Find image 2's bytes in the file and change one of them (also 0xFF -> 0x00 pairs, which
  // Fletcher32 cannot see).
  auto bytes = file_bytes(p);
  auto it = std::search(bytes.begin(), bytes.end(), k.images[2].begin(), k.images[2].end());
  ASSERT_NE(it, bytes.end());
  it[0] = 0;
  it[1] = 0;  // the first row of every image is 0xFF
  put_bytes(p, bytes);
  PackReader r(p);
  std::vector<uint8_t> buf(r.info().image_bytes());
  r.read_image(1, buf.data());
  try {
    r.read_image(2, buf.data());
    FAIL() << "damaged image read without error";
  } catch (const PackError& e) {
    EXPECT_NE(std::string(e.what()).find("image 2: checksum mismatch"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

TEST(DataRobust, Fletcher32MatchesHdf5) {
  ScratchDir tmp("fl32");
  std::vector<uint8_t> data(1001);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 7 + 3);
  {
    auto f = sf::h5::create_file(tmp / "f.h5", true);
    auto ds = sf::h5::create_rows(f, "x", H5T_STD_U8LE, {1001}, 0);
    sf::h5::append_rows(ds, H5T_NATIVE_UINT8, data.data(), 1);
  }
  auto f = sf::h5::open_file(tmp / "f.h5");
  auto ds = sf::h5::open_dataset(f, "x");
  hsize_t off[2] = {0, 0}, size = 0;
  ASSERT_GE(H5Dget_chunk_storage_size(ds.id(), off, &size), 0);
  ASSERT_EQ(size, 1005u);
  std::vector<uint8_t> raw(size);
  uint32_t mask = 0;
  ASSERT_GE(H5Dread_chunk(ds.id(), H5P_DEFAULT, off, &mask, raw.data()), 0);
  uint32_t stored = uint32_t(raw[1001]) | uint32_t(raw[1002]) << 8 | uint32_t(raw[1003]) << 16 | uint32_t(raw[1004]) << 24;
  EXPECT_EQ(sf::h5::fletcher32(data.data(), data.size()), stored);
}

TEST(DataRobust, VariableLengthStringInFormat2IsRefusedFormat1StillReads) {
  ScratchDir tmp("vlen");
  const std::string p = tmp / "p.h5";
  KnownPack k = write_known_pack(p, 3, 16, 2);
  // A format-2 pack never has variable-length strings: one written there is damage.
  {
    auto f = sf::h5::open_file(p, sf::h5::Mode::ReadWrite);
    H5Adelete(f.id(), "importer");
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f.id(), "importer", t, sp, H5P_DEFAULT, H5P_DEFAULT);
    const char* v = "{}";
    H5Awrite(a, t, &v);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
  }
  try {
    PackReader r(p);
    FAIL() << "variable-length attribute accepted in a format-2 pack";
  } catch (const PackError& e) {
    EXPECT_TRUE(one_line(e.what()));
    EXPECT_NE(std::string(e.what()).find("variable-length"), std::string::npos) << e.what();
  }
  // A format-1 pack (variable-length strings, old file format, no checksums) still reads.
  const std::string old = tmp / "old.h5";
  {
    hid_t f = H5Fcreate(old.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    auto vstr_attr = [&](const char* name, const std::string& value) {
      hid_t t = H5Tcopy(H5T_C_S1);
      H5Tset_size(t, H5T_VARIABLE);
      hid_t sp = H5Screate(H5S_SCALAR);
      hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
      const char* v = value.c_str();
      H5Awrite(a, t, &v);
      H5Aclose(a);
      H5Sclose(sp);
      H5Tclose(t);
    };
    auto int_attr = [&](const char* name, int64_t v) {
      hid_t sp = H5Screate(H5S_SCALAR);
      hid_t a = H5Acreate2(f, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
      H5Awrite(a, H5T_NATIVE_INT64, &v);
      H5Aclose(a);
      H5Sclose(sp);
    };
    vstr_attr("format", "styleforge-pack");
    int_attr("format_version", 1);
    vstr_attr("styleforge_version", "0.1.0");
    int_attr("num_images", 2);
    int_attr("resolution", 4);
    int_attr("channels", 1);
    vstr_attr("label_kind", "none");
    int_attr("label_dim", 0);
    vstr_attr("class_names", "[]");
    vstr_attr("importer", "{}");
    vstr_attr("compression", "none");
    vstr_attr("content_hash", "sha256:" + std::string(64, '0'));
    hsize_t dims[4] = {2, 1, 4, 4}, chunk[4] = {1, 1, 4, 4};
    hid_t sp = H5Screate_simple(4, dims, nullptr);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 4, chunk);
    hid_t ds = H5Dcreate2(f, "images", H5T_STD_U8LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    uint8_t px[32];
    for (int i = 0; i < 32; ++i) px[i] = static_cast<uint8_t>(i);
    H5Dwrite(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, px);
    H5Dclose(ds);
    H5Pclose(dcpl);
    H5Sclose(sp);
    hsize_t n = 2;
    hid_t nsp = H5Screate_simple(1, &n, nullptr);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    hid_t nds = H5Dcreate2(f, "names", t, nsp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    const char* names[2] = {"a.png", "b.png"};
    H5Dwrite(nds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, names);
    H5Dclose(nds);
    H5Tclose(t);
    H5Sclose(nsp);
    H5Fclose(f);
  }
  EXPECT_EQ(sf::h5::superblock_version(old), 0);
  PackReader r(old);
  EXPECT_EQ(r.info().format_version, 1);
  std::vector<uint8_t> img(16);
  r.read_image(1, img.data());
  EXPECT_EQ(img[0], 16);
  EXPECT_EQ(r.names(), (std::vector<std::string>{"a.png", "b.png"}));
  EXPECT_GE(sf::h5::superblock_version(p), 2);
}

TEST(DataRobust, PackRefusesImagesTrainCannotUse) {
  ScratchDir tmp("tiny");
  PackWriter w(tmp / "p.h5", {});
  uint8_t px = 0;
  try {
    w.add(&px, 1, 1, "one.png", Label{});
    FAIL() << "1x1 image accepted";
  } catch (const PackError& e) {
    EXPECT_NE(std::string(e.what()).find("1x1"), std::string::npos) << e.what();
  }
}

// ---- NIfTI ----

TEST(DataRobust, NiftiNegativeVoxOffsetIsAnError) {
  ScratchDir tmp("nii_neg");
  const std::string p = tmp / "neg.nii";
  put_bytes(p, nifti1({8, 8, 2}, 2, 8, -256.0f, 128));
  try {
    read_nifti(p);
    FAIL() << "negative vox_offset accepted";
  } catch (const FormatError& e) {
    EXPECT_TRUE(one_line(e.what()));
    EXPECT_NE(std::string(e.what()).find("vox_offset"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
  // Same through `pack`: nothing written.
  ImportOptions o;
  o.source = p;
  o.dest = tmp / "out.h5";
  EXPECT_THROW(pack_dataset(o), std::exception);
  EXPECT_FALSE(fs::exists(o.dest));
  // NaN and beyond-the-file offsets too.
  put_bytes(p, nifti1({8, 8, 2}, 2, 8, std::nanf(""), 128));
  EXPECT_THROW(read_nifti(p), FormatError);
  put_bytes(p, nifti1({8, 8, 2}, 2, 8, 1e9f, 128));
  EXPECT_THROW(read_nifti(p), FormatError);
  put_bytes(p, nifti1({8, 8, 2}, 2, 8, 352.0f, 128));  // the valid one reads
  EXPECT_EQ(read_nifti(p).data.size(), 128u);
}

TEST(DataRobust, NiftiWrappingDimensionsAreAnError) {
  ScratchDir tmp("nii_wrap");
  const std::string p = tmp / "wrap.nii";
  const std::vector<std::vector<int64_t>> bad_dims = {
      {int64_t(1) << 32, int64_t(1) << 32, 1},            // product wraps to 0
      {64, 64, 64, int64_t(1) << 46},                     // 2^64: wraps to 0
      {3, 5, int64_t(1) << 62},                           // wraps to a small number
      {-4, 8, 8},                                         // negative
  };
  for (const auto& d : bad_dims) {
    put_bytes(p, nifti2(d, 2, 544, 64));
    Child c = in_child(
        [&](std::string& msg) {
          try {
            read_nifti(p);
            return 0;
          } catch (const FormatError& e) {
            msg = e.what();
            return 1;
          }
        },
        {20, 1ull << 30});
    EXPECT_TRUE(c.exited && c.code == 1) << c.describe();
    EXPECT_TRUE(one_line(c.msg)) << c.msg;
    EXPECT_NE(c.msg.find(p), std::string::npos) << c.msg;
  }
}

TEST(DataRobust, NiftiHeaderCannotMakeHugeOutput) {
  ScratchDir tmp("nii_big");
  // 4-D gzip volume of 2x2 slices: few bytes, would become hundreds of thousands of images.
  const std::string p = tmp / "many.nii.gz";
  auto raw = nifti1({2, 2, 1, 30000}, 2, 8, 352.0f, 4 * 30000);
  gzFile gz = gzopen(p.c_str(), "wb9");
  gzwrite(gz, raw.data(), static_cast<unsigned>(raw.size()));
  gzclose(gz);
  ImportOptions o;
  o.source = p;
  o.dest = tmp / "out.h5";
  o.resolution = 64;
  try {
    pack_dataset(o);
    FAIL() << "2x2 slices packed";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("smaller than 8x8"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(o.dest));
  // More slices than any real volume: refused when read.
  put_bytes(tmp / "slices.nii", nifti2({8, 8, 1, int64_t(1) << 21}, 2, 544, 0));
  EXPECT_THROW(read_nifti(tmp / "slices.nii"), FormatError);
}

// ---- tiny files that claim huge contents: bounded allocations (512 MiB address-space limit) ----

TEST(DataRobust, TinyFilesDoNotAllocateGigabytes) {
  ScratchDir tmp("tiny_alloc");
  std::vector<std::pair<std::string, std::function<void()>>> cases;
  // PNG: a valid 1x1 PNG whose IHDR claims 60000x60000 RGBA.
  {
    Image img;
    img.width = img.height = 1;
    img.channels = 4;
    img.pixels = {1, 2, 3, 4};
    auto png = encode_png(img, 9);
    uint32_t w = htonl(60000);
    std::memcpy(&png[16], &w, 4);
    std::memcpy(&png[20], &w, 4);
    uint32_t crc = static_cast<uint32_t>(::crc32(0, &png[12], 17));
    uint32_t be = htonl(crc);
    std::memcpy(&png[29], &be, 4);
    const std::string p = tmp / "huge.png";
    put_bytes(p, png);
    cases.emplace_back(p, [p] { read_image_file(p); });
  }
  // JPEG: SOF0 claiming 65000x65000 (a 926-byte-like stub).
  {
    std::vector<uint8_t> j = {0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x0B, 0x08, 0xFD, 0xE8, 0xFD, 0xE8, 0x01, 0x01, 0x11, 0x00};
    j.resize(900, 0);
    const std::string p = tmp / "huge.jpg";
    put_bytes(p, j);
    cases.emplace_back(p, [p] { read_image_file(p); });
  }
  // zip: a stored entry claiming 4 GB.
  {
    const std::string p = tmp / "huge.zip";
    write_zip_stored(p, {{"a.png", std::vector<uint8_t>(10, 1)}});
    auto z = file_bytes(p);
    // central directory record: sizes at +20 (compressed) and +24 (uncompressed)
    auto cd = std::search(z.begin(), z.end(), std::begin("PK\x01\x02") , std::begin("PK\x01\x02") + 4);
    ASSERT_NE(cd, z.end());
    const uint32_t big = 0xF0000000u;
    std::memcpy(&*(cd + 24), &big, 4);
    std::memcpy(&*(cd + 20), &big, 4);
    put_bytes(p, z);
    cases.emplace_back(p, [p] { ZipReader r(p); r.read("a.png"); });
    const std::string q = tmp / "bomb.zip";
    auto z2 = file_bytes(p);
    const uint32_t small = 10;
    auto cd2 = z2.begin() + (cd - z.begin());
    std::memcpy(&*(cd2 + 20), &small, 4);
    cd2[10] = 8;  // deflate: 10 compressed bytes cannot give 4 GB
    put_bytes(q, z2);
    cases.emplace_back(q, [q] { ZipReader r(q); r.read("a.png"); });
  }
  // npy: 27-byte-ish header claiming 4e9 float64 values.
  {
    std::string h = "{'descr': '<f8', 'fortran_order': False, 'shape': (70000, 70000), }";
    std::vector<uint8_t> b = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<uint8_t>(h.size()), 0};
    b.insert(b.end(), h.begin(), h.end());
    const std::string p = tmp / "huge.npy";
    put_bytes(p, b);
    cases.emplace_back(p, [p] { read_npy(p); });
  }
  // TFRecord: a length field (with a valid CRC) claiming 8 GB.
  {
    std::vector<uint8_t> r(12);
    uint64_t len = 8ull << 30;
    std::memcpy(r.data(), &len, 8);
    uint32_t c = masked_crc32c(r.data(), 8);
    std::memcpy(r.data() + 8, &c, 4);
    const std::string p = tmp / "huge.tfrecords";
    put_bytes(p, r);
    cases.emplace_back(p, [p] { TfRecordReader t(p); std::string s; t.next(s); });
  }
  // NIfTI-1 claiming 32767^3 int16 voxels.
  {
    const std::string p = tmp / "huge.nii";
    put_bytes(p, nifti1({32767, 32767, 32767}, 4, 16, 352.0f, 64));
    cases.emplace_back(p, [p] { read_nifti(p); });
  }
  // DICOM: 65535x65535, 1e6 frames in a few hundred bytes.
  {
    std::vector<uint8_t> d(128, 0);
    d.insert(d.end(), {'D', 'I', 'C', 'M'});
    auto el = [&](uint16_t g, uint16_t e, const char* vr, const std::vector<uint8_t>& v) {
      d.insert(d.end(), {static_cast<uint8_t>(g), static_cast<uint8_t>(g >> 8), static_cast<uint8_t>(e), static_cast<uint8_t>(e >> 8),
                         static_cast<uint8_t>(vr[0]), static_cast<uint8_t>(vr[1])});
      if (!std::strcmp(vr, "OB") || !std::strcmp(vr, "OW")) {
        d.insert(d.end(), {0, 0});
        uint32_t n = static_cast<uint32_t>(v.size());
        d.insert(d.end(), {static_cast<uint8_t>(n), static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n >> 16), static_cast<uint8_t>(n >> 24)});
      } else {
        d.insert(d.end(), {static_cast<uint8_t>(v.size()), static_cast<uint8_t>(v.size() >> 8)});
      }
      d.insert(d.end(), v.begin(), v.end());
    };
    std::string ts = "1.2.840.10008.1.2.1";
    ts.push_back('\0');
    el(0x0002, 0x0010, "UI", std::vector<uint8_t>(ts.begin(), ts.end()));
    el(0x0028, 0x0002, "US", {1, 0});
    std::string frames = "1000000 ";
    el(0x0028, 0x0008, "IS", std::vector<uint8_t>(frames.begin(), frames.end()));
    el(0x0028, 0x0010, "US", {0xFF, 0xFF});
    el(0x0028, 0x0011, "US", {0xFF, 0xFF});
    el(0x0028, 0x0100, "US", {16, 0});
    el(0x7FE0, 0x0010, "OW", std::vector<uint8_t>(64, 0));
    const std::string p = tmp / "huge.dcm";
    put_bytes(p, d);
    cases.emplace_back(p, [p] { read_dicom(p); });
    cases.emplace_back(p, [p] { read_dicom_series(find_dicom_series(p).at(0)); });
    // An element claiming 4 GB (GDCM would allocate what it declares) before the pixel data.
    d.resize(132);
    el(0x0002, 0x0010, "UI", std::vector<uint8_t>(ts.begin(), ts.end()));
    el(0x0008, 0x0070, "OB", {});
    const uint32_t claim = 0xF0000000u;
    std::memcpy(&d[d.size() - 4], &claim, 4);
    d.resize(d.size() + 64, 0);
    const std::string q = tmp / "claim.dcm";
    put_bytes(q, d);
    cases.emplace_back(q, [q] { read_dicom(q); });
    cases.emplace_back(q, [q] { find_dicom_series(q); });
  }
  for (const auto& [path, fn] : cases) {
    Child c = in_child(
        [&](std::string& msg) {
          try {
            fn();
            msg = "accepted";
            return 0;
          } catch (const std::bad_alloc&) {
            msg = "std::bad_alloc";
            return 3;
          } catch (const std::exception& e) {
            msg = e.what();
            return 1;
          }
        },
        {20, 512ull << 20});
    EXPECT_TRUE(c.exited && c.code == 1) << path << ": " << c.describe();
    EXPECT_TRUE(one_line(c.msg)) << c.msg;
    EXPECT_NE(c.msg.find(path), std::string::npos) << "error does not name the file: " << c.msg;
  }
}

TEST(DataRobust, DicomDeeplyNestedSequencesAreAnError) {
  ScratchDir tmp("dcm_nest");
  // Implicit VR: 100000 nested undefined-length sequences (would overflow the stack).
  std::vector<uint8_t> d;
  for (int i = 0; i < 100000; ++i) {
    d.insert(d.end(), {0x08, 0x00, 0x15, 0x11, 0xFF, 0xFF, 0xFF, 0xFF});  // (0008,1115) SQ undefined
    d.insert(d.end(), {0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF});  // item, undefined
  }
  const std::string p = tmp / "nest.dcm";
  put_bytes(p, d);
  Child c = in_child(
      [&](std::string& msg) {
        try {
          read_dicom(p);
          return 0;
        } catch (const FormatError& e) {
          msg = e.what();
          return 1;
        }
      },
      {20});
  EXPECT_TRUE(c.exited && c.code == 1) << c.describe();
  EXPECT_NE(c.msg.find("nested"), std::string::npos) << c.msg;
  // Scanning a folder for series parses up to SeriesInstanceUID, past these sequences.
  Child s = in_child(
      [&](std::string& msg) {
        try {
          find_dicom_series(tmp.path.string());
          return 0;
        } catch (const FormatError& e) {
          msg = e.what();
          return 1;
        }
      },
      {20});
  EXPECT_TRUE(s.exited && s.code == 1) << s.describe();
  EXPECT_NE(s.msg.find("nested"), std::string::npos) << s.msg;
  EXPECT_NE(s.msg.find(p), std::string::npos) << s.msg;
}

// A 298-byte file (found by fuzz_dicom) with a garbled RescaleIntercept: Debian's libgdcm aborts
// on it in an assert(); GDCM runs in a child process, so this is a one-line error.
TEST(DataRobust, DicomThatAbortsGdcmIsAnError) {
  ScratchDir tmp("dcm_abort");
  const std::string hex =
      "08006000435302004d52200013004953020033202000320044530800305c305c31322e352800020055530200010028001000555302000800"
      "280011005553020009002800000155530200100028000101555302000c002800030155530200010028005010445302003430280051104453"
      "0400343030202800521044530600b7681008215600005310445302003120e07f10004f5700009000000000050a0f14191e23282d32373c41"
      "464b50555a5f64696e73787d82878c91969ba0a5aaafb4b9bec3c8cdd2d7dce1e6ebf0f5faff04090e13181d22272c31363b40454a4f5459"
      "5e63686d72777c81868b90959a9fa4a9aeb3b8bdc2c7ccd1d6dbe0e5eaeff4f9fe03080d12171c21262b30353a3f44494e53585d62676c71"
      "767b80858a8f94999ea3a8adb2b7bcc1c6cb";
  std::vector<uint8_t> d;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) d.push_back(static_cast<uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  const std::string p = tmp / "abort.dcm";
  put_bytes(p, d);
  for (int how = 0; how < 2; ++how) {
    Child c = in_child(
        [&](std::string& msg) {
          try {
            if (how == 0) read_dicom(p);
            else read_dicom_series(find_dicom_series(p).at(0));
            return 0;
          } catch (const FormatError& e) {
            msg = e.what();
            return 1;
          }
        },
        {20});
    EXPECT_TRUE(c.exited && c.code == 1) << c.describe();
    EXPECT_TRUE(one_line(c.msg)) << c.msg;
    EXPECT_NE(c.msg.find(p), std::string::npos) << c.msg;
  }
}

// Links and attributes stay in checksummed object headers however many there are: no fractal
// heaps (whose direct blocks carry no checksum; libhdf5 crashed on damaged ones), no v2 B-trees
// of names, no global heaps (variable-length data).
TEST(DataRobust, FilesHoldNoUncheckedHeaps) {
  ScratchDir tmp("heaps");
  const std::string p = tmp / "many.h5";
  {
    auto f = sf::h5::create_file(p, true);
    for (int i = 0; i < 40; ++i) sf::h5::write_string_attr(f, "attr" + std::to_string(i), std::string(100, 'x'));
    std::vector<float> v(300, 1.5f);
    for (int i = 0; i < 300; ++i) sf::h5::write_f32(f, "G/synthesis.b" + std::to_string(i) + ".weight", v.data(), {300});
    for (int i = 0; i < 50; ++i) sf::h5::write_f32(f, "opt/exp_avg/k" + std::to_string(i), v.data(), {10, 30});
    sf::h5::close_file(f);
  }
  const auto b = file_bytes(p);
  for (const char* sig : {"FRHP", "FHDB", "FHIB", "BTHD", "BTLF", "BTIN", "GCOL"})
    EXPECT_EQ(std::search(b.begin(), b.end(), sig, sig + 4), b.end()) << sig << " found";
  auto f = sf::h5::open_file(p);
  EXPECT_EQ(sf::h5::members(sf::h5::open_group(f, "G")).size(), 300u);
  EXPECT_EQ(sf::h5::read_string_attr(f, "attr39", false), std::string(100, 'x'));
  EXPECT_EQ(sf::h5::read_f32(f, "opt/exp_avg/k49").size(), 300u);
}

namespace sf::data {
TEST(DataRobust, PackCrcEqualsZlibCrc32) {
  // The image checksums of existing packs were written with zlib's crc32: the faster
  // implementation must give the same value for every length and alignment.
  std::mt19937 rng(11);
  std::vector<uint8_t> buf(70000);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  for (size_t n : {size_t(0), size_t(1), size_t(3), size_t(15), size_t(16), size_t(63), size_t(64), size_t(255),
                   size_t(4096), size_t(65536), size_t(69993)})
    for (size_t off : {size_t(0), size_t(1), size_t(7)}) {
      const uint32_t ours = crc32_zlib(buf.data() + off, n);
      const uint32_t zl = static_cast<uint32_t>(::crc32(0L, buf.data() + off, static_cast<uInt>(n)));
      EXPECT_EQ(ours, zl) << "n=" << n << " off=" << off;
      EXPECT_EQ(crc32_zlib(buf.data() + off + n / 2, n - n / 2, crc32_zlib(buf.data() + off, n / 2)), zl) << "continued, n=" << n;
    }
}
}  // namespace sf::data
