// The pack format itself: attributes, content hash, atomic writes, version and corruption
// errors, zip sources (incl. unsafe entry names), folder labels, CSV labels, and the prefetching
// loader with x-flip.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "data/h5.h"
#include "data/image.h"
#include "data/import.h"
#include "data/loader.h"
#include "data/pack.h"
#include "data/zip.h"
#include "sharding/sampler.h"
#include "tests/test_data_util.h"

namespace fs = std::filesystem;
using namespace sf::data;
using sf::test::fixture;
using sf::test::ScratchDir;
using sf::test::file_bytes;

namespace {

// A synthetic gray image whose pixels encode its index.
Image synthetic(int res, int channels, int seed) {
  Image img;
  img.width = img.height = res;
  img.channels = channels;
  img.pixels.resize(static_cast<size_t>(res) * res * channels);
  for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<uint8_t>((i * 7 + seed * 31) & 0xFF);
  return img;
}

TEST(DataPack, AttributesAndContentHash) {
  ScratchDir tmp("attrs");
  ImportOptions o;
  o.source = fixture("tfr_rgb16_cond");
  o.dest = tmp / "p.h5";
  auto s = pack_dataset(o);
  {
  auto f = sf::h5::open_file(o.dest);
  EXPECT_EQ(sf::h5::read_string_attr(f, "format"), "styleforge-pack");
  EXPECT_EQ(sf::h5::read_int_attr(f, "format_version"), kPackFormatVersion);
  EXPECT_EQ(sf::h5::read_string_attr(f, "styleforge_version"), STYLEFORGE_VERSION);
  EXPECT_EQ(sf::h5::read_int_attr(f, "resolution"), 16);
  EXPECT_EQ(sf::h5::read_int_attr(f, "channels"), 3);
  EXPECT_EQ(sf::h5::read_string_attr(f, "label_kind"), "vector");
  EXPECT_EQ(sf::h5::read_string_attr(f, "compression"), "none");
  auto importer = nlohmann::json::parse(sf::h5::read_string_attr(f, "importer"));
  EXPECT_EQ(importer["source_kind"], "tfrecords");
  }  // closed before the shared (lock-free) open below
  PackReader pack(o.dest);
  EXPECT_EQ(pack.info().content_hash, s.info.content_hash);
  EXPECT_EQ(pack.info().content_hash.rfind("sha256:", 0), 0u);
  EXPECT_EQ(compute_content_hash(pack), pack.info().content_hash);
  EXPECT_NE(s.line().find("packed 12 images 16x16x3"), std::string::npos) << s.line();

  // gzip changes storage, not content: same hash, same pixels.
  o.dest = tmp / "gz.h5";
  o.gzip_level = 4;
  pack_dataset(o);
  PackReader gz(o.dest);
  EXPECT_EQ(gz.info().compression, "gzip-4");
  EXPECT_EQ(gz.info().content_hash, pack.info().content_hash);
  std::vector<uint8_t> a(pack.info().image_bytes()), b(a.size());
  pack.read_image(11, a.data());
  gz.read_image(11, b.data());
  EXPECT_EQ(a, b);
  // --max-images keeps a prefix and changes the hash.
  o.dest = tmp / "few.h5";
  o.gzip_level = 0;
  o.max_images = 5;
  pack_dataset(o);
  PackReader few(o.dest);
  EXPECT_EQ(few.size(), 5);
  EXPECT_NE(few.info().content_hash, pack.info().content_hash);
}

TEST(DataPack, ChunkedOneImagePerChunk) {
  ScratchDir tmp("chunks");
  ImportOptions o;
  o.source = fixture("png_gray_16");
  o.dest = tmp / "p.h5";
  pack_dataset(o);
  auto f = sf::h5::open_file(o.dest);
  auto ds = sf::h5::open_dataset(f, "images");
  hid_t dcpl = H5Dget_create_plist(ds.id());
  hsize_t chunk[4] = {0, 0, 0, 0};
  ASSERT_EQ(H5Pget_chunk(dcpl, 4, chunk), 4);
  H5Pclose(dcpl);
  EXPECT_EQ(chunk[0], 1u);
  EXPECT_EQ(chunk[1], 1u);
  EXPECT_EQ(chunk[2], 16u);
  EXPECT_EQ(chunk[3], 16u);
  // Format 2: no compression, only the Fletcher32 checksum filter.
  EXPECT_EQ(sf::h5::filter_count(ds), 1);
  EXPECT_TRUE(sf::h5::has_filter(ds, H5Z_FILTER_FLETCHER32));
}

TEST(DataPack, RejectsUnknownVersionCorruptFilesAndNonPacks) {
  ScratchDir tmp("bad");
  ImportOptions o;
  o.source = fixture("png_gray_16");
  o.dest = tmp / "p.h5";
  pack_dataset(o);
  fs::copy_file(o.dest, tmp / "v99.h5");
  {
    auto f = sf::h5::open_file(tmp / "v99.h5", sf::h5::Mode::ReadWrite);
    sf::h5::write_int_attr(f, "format_version", 99);
  }
  try {
    PackReader r(tmp / "v99.h5");
    FAIL();
  } catch (const PackError& e) {
    EXPECT_NE(std::string(e.what()).find("unknown pack format version 99"), std::string::npos) << e.what();
  }
  // Truncated file.
  auto bytes = file_bytes(o.dest);
  std::ofstream(tmp / "cut.h5", std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size() / 3));
  try {
    PackReader r(tmp / "cut.h5");
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cut.h5"), std::string::npos) << e.what();
  }
  // Garbage.
  std::ofstream(tmp / "junk.h5") << "not hdf5 at all";
  EXPECT_THROW(PackReader(tmp / "junk.h5"), std::runtime_error);
  // An HDF5 file that is not a pack.
  { auto f = sf::h5::create_file(tmp / "other.h5", false); }
  try {
    PackReader r(tmp / "other.h5");
    FAIL();
  } catch (const PackError& e) {
    EXPECT_NE(std::string(e.what()).find("not a styleforge pack"), std::string::npos) << e.what();
  }
}

TEST(DataPack, WriterChecksConsistencyAndLeavesNothingOnError) {
  ScratchDir tmp("writer");
  std::string dest = tmp / "w.h5";
  {
    PackWriter w(dest, {});
    std::vector<uint8_t> img(3 * 8 * 8, 1), gray(8 * 8, 2);
    Label l;
    l.kind = LabelKind::Class;
    l.cls = 1;
    w.add(img.data(), 3, 8, "a.png", l);
    try {
      w.add(gray.data(), 1, 8, "b.png", l);
      FAIL();
    } catch (const PackError& e) {
      EXPECT_NE(std::string(e.what()).find("b.png"), std::string::npos);
      EXPECT_NE(std::string(e.what()).find("mixed channel"), std::string::npos) << e.what();
    }
    try {
      w.add(img.data(), 3, 8, "c.png", Label{});
      FAIL();
    } catch (const PackError& e) {
      EXPECT_NE(std::string(e.what()).find("c.png"), std::string::npos) << e.what();
    }
  }  // destroyed without commit
  EXPECT_TRUE(fs::is_empty(tmp.path));
}

TEST(DataPack, MixedChannelsNeedConversion) {
  ScratchDir tmp("mixed");
  fs::create_directories(tmp.path / "src");
  write_png_file(tmp / "src/a.png", synthetic(8, 1, 0));
  write_png_file(tmp / "src/b.png", synthetic(8, 3, 1));
  ImportOptions o;
  o.source = tmp / "src";
  o.dest = tmp / "p.h5";
  try {
    pack_dataset(o);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("b.png"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("channels"), std::string::npos) << e.what();
  }
  o.channels = 3;
  pack_dataset(o);
  PackReader p(o.dest);
  EXPECT_EQ(p.info().channels, 3);
  std::vector<uint8_t> chw(p.info().image_bytes());
  p.read_image(0, chw.data());
  Image gray = synthetic(8, 1, 0);
  for (int c = 0; c < 3; ++c) EXPECT_TRUE(std::equal(gray.pixels.begin(), gray.pixels.end(), chw.begin() + c * 64));
}

TEST(DataZip, ZipEqualsFolderAndRejectsUnsafeNames) {
  ScratchDir tmp("zip");
  std::vector<std::pair<std::string, std::vector<uint8_t>>> files;
  for (std::string n : {"sub/img0003.png", "img0002.png", "dataset.json", "img0000.png", "sub/img0001.png"})
    files.emplace_back(n, file_bytes(fixture("png_gray_16/" + n)));
  write_zip_stored(tmp / "ds.zip", files);
  ImportOptions o;
  o.source = tmp / "ds.zip";
  o.dest = tmp / "zip.h5";
  auto s = pack_dataset(o);
  EXPECT_EQ(s.source_kind, "zip");
  o.source = fixture("png_gray_16");
  o.dest = tmp / "dir.h5";
  pack_dataset(o);
  PackReader a(tmp / "zip.h5"), b(tmp / "dir.h5");
  EXPECT_EQ(a.info().content_hash, b.info().content_hash);
  EXPECT_EQ(a.names(), b.names());

  for (std::string evil : {"../evil.png", "/abs/evil.png", "a/../../evil.png"}) {
    auto bad = files;
    bad.emplace_back(evil, file_bytes(fixture("png_gray_16/img0000.png")));
    write_zip_stored(tmp / "bad.zip", bad);
    o.source = tmp / "bad.zip";
    o.dest = tmp / "bad.h5";
    try {
      pack_dataset(o);
      FAIL() << evil << " accepted";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find(evil), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(o.dest));
  }
}

TEST(DataLabels, FoldersCsvAndCountMismatch) {
  ScratchDir tmp("labels");
  fs::create_directories(tmp.path / "src/cat");
  fs::create_directories(tmp.path / "src/dog");
  write_png_file(tmp / "src/dog/1.png", synthetic(8, 1, 1));
  write_png_file(tmp / "src/cat/2.png", synthetic(8, 1, 2));
  write_png_file(tmp / "src/dog/3.png", synthetic(8, 1, 3));
  ImportOptions o;
  o.source = tmp / "src";
  o.dest = tmp / "f.h5";
  o.labels = "folders";
  pack_dataset(o);
  PackReader p(o.dest);
  EXPECT_EQ(p.info().class_names, (std::vector<std::string>{"cat", "dog"}));
  EXPECT_EQ(p.names(), (std::vector<std::string>{"cat/2.png", "dog/1.png", "dog/3.png"}));
  EXPECT_EQ(p.class_label(0), 0);
  EXPECT_EQ(p.class_label(1), 1);
  EXPECT_EQ(p.class_label(2), 1);
  float onehot[2];
  p.label_as_float(0, onehot);
  EXPECT_EQ(onehot[0], 1.0f);
  EXPECT_EQ(onehot[1], 0.0f);

  std::ofstream(tmp / "l.csv") << "name,label\ncat/2.png,0.5,1.5\ndog/1.png,2,3\ndog/3.png,4,5\n";
  o.dest = tmp / "c.h5";
  o.labels = "csv";
  o.labels_file = tmp / "l.csv";
  pack_dataset(o);
  PackReader c(o.dest);
  ASSERT_EQ(c.info().label_kind, LabelKind::Vector);
  EXPECT_EQ(c.vector_label(0)[1], 1.5f);
  EXPECT_EQ(c.vector_label(2)[0], 4.0f);

  std::ofstream(tmp / "short.csv") << "cat/2.png,0\ndog/1.png,1\n";
  o.dest = tmp / "s.h5";
  o.labels_file = tmp / "short.csv";
  try {
    pack_dataset(o);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("label count mismatch"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("dog/3.png"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(o.dest));
}

TEST(DataLoader, PrefetchedBatchesFollowTheSamplerWithXflip) {
  ScratchDir tmp("loader");
  ImportOptions o;
  o.source = fixture("tfr_rgb16_cond");
  o.dest = tmp / "p.h5";
  pack_dataset(o);
  PackReader ref(o.dest);
  const int64_t n = ref.size();
  sf::sharding::InfiniteSampler::Options so;
  so.seed = 3;
  so.xflip = true;
  auto sampler = std::make_shared<sf::sharding::InfiniteSampler>(n, 1, 2, so);
  BatchLoader loader(o.dest, [sampler] { return sampler->next(); }, {5, 3});
  sf::sharding::InfiniteSampler check(n, 1, 2, so);
  const size_t bytes = ref.info().image_bytes();
  std::vector<uint8_t> img(bytes);
  int flipped = 0;
  for (int k = 0; k < 6; ++k) {
    Batch b = loader.next();
    ASSERT_EQ(b.size, 5);
    ASSERT_EQ(b.label_dim, 3);
    for (int i = 0; i < 5; ++i) {
      int64_t idx = check.next();
      ASSERT_EQ(b.indices[static_cast<size_t>(i)], idx);
      ref.read_image(idx % n, img.data());
      if (idx >= n) {
        xflip_image(img.data(), 3, 16);
        ++flipped;
      }
      EXPECT_TRUE(std::equal(img.begin(), img.end(), b.images.begin() + static_cast<std::ptrdiff_t>(i * bytes)));
      EXPECT_TRUE(std::equal(ref.vector_label(idx % n), ref.vector_label(idx % n) + 3, b.labels.begin() + i * 3));
    }
  }
  EXPECT_GT(flipped, 0);
  // Mirroring twice is the identity, and mirroring moves pixel x to R-1-x.
  ref.read_image(0, img.data());
  auto orig = img;
  xflip_image(img.data(), 3, 16);
  EXPECT_EQ(img[0], orig[15]);
  xflip_image(img.data(), 3, 16);
  EXPECT_EQ(img, orig);
}

TEST(DataLoader, ReaderErrorsReachTheConsumer) {
  ScratchDir tmp("loader_err");
  ImportOptions o;
  o.source = fixture("png_gray_16");
  o.dest = tmp / "p.h5";
  pack_dataset(o);
  BatchLoader loader(o.dest, [] { return int64_t{1000}; }, {4, 2});
  EXPECT_THROW(loader.next(), PackError);
}

}  // namespace

// ---- JPEG and DICOM series ----

#include <jpeglib.h>

namespace {

std::vector<uint8_t> encode_jpeg_for_test(const Image& img, int quality) {
  jpeg_compress_struct c;
  jpeg_error_mgr err;
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&c, &buf, &size);
  c.image_width = static_cast<JDIMENSION>(img.width);
  c.image_height = static_cast<JDIMENSION>(img.height);
  c.input_components = img.channels;
  c.in_color_space = img.channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, quality, TRUE);
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = const_cast<JSAMPROW>(img.row(static_cast<int>(c.next_scanline)));
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  std::vector<uint8_t> out(buf, buf + size);
  jpeg_destroy_compress(&c);
  free(buf);
  return out;
}

TEST(DataJpeg, FolderOfJpegsPacks) {
  ScratchDir tmp("jpeg");
  fs::create_directories(tmp.path / "src");
  Image flat;
  flat.width = flat.height = 16;
  flat.channels = 3;
  flat.pixels.assign(16 * 16 * 3, 0);
  for (int i = 0; i < 16 * 16; ++i) {
    flat.pixels[static_cast<size_t>(3 * i)] = 200;
    flat.pixels[static_cast<size_t>(3 * i + 1)] = 100;
    flat.pixels[static_cast<size_t>(3 * i + 2)] = 50;
  }
  auto bytes = encode_jpeg_for_test(flat, 95);
  for (std::string n : {"a.jpg", "b.JPEG"}) std::ofstream(tmp / ("src/" + n), std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  Image dec = decode_image(bytes.data(), bytes.size(), "a.jpg");
  ASSERT_EQ(dec.channels, 3);
  for (size_t i = 0; i < dec.pixels.size(); ++i) ASSERT_NEAR(dec.pixels[i], flat.pixels[i], 3) << i;
  ImportOptions o;
  o.source = tmp / "src";
  o.dest = tmp / "j.h5";
  pack_dataset(o);
  PackReader p(o.dest);
  EXPECT_EQ(p.size(), 2);
  EXPECT_EQ(p.names(), (std::vector<std::string>{"a.jpg", "b.JPEG"}));
  // A corrupt JPEG names the file.
  std::ofstream(tmp / "src/c.jpg", std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), 40);
  o.dest = tmp / "bad.h5";
  try {
    pack_dataset(o);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("c.jpg"), std::string::npos) << e.what();
  }
}

// A folder holding one DICOM file is a series of one slice (multi-slice series, ordering and a
// missing slice: tests/test_data_import_volumes.cpp, whose files differ in position; two copies
// of one file are one position twice, which the series reader refuses).
TEST(DataDicom, FolderIsASeries) {
  ScratchDir tmp("dcm_series");
  fs::create_directories(tmp.path / "s1");
  fs::copy_file(fixture("real/MR_small.dcm"), tmp.path / "s1/0001.dcm");
  ImportOptions o;
  o.source = tmp / "s1";
  o.dest = tmp / "s.h5";
  auto s = pack_dataset(o);
  EXPECT_EQ(s.source_kind, "dicom");
  PackReader p(o.dest);
  ASSERT_EQ(p.size(), 1);
  EXPECT_EQ(p.names()[0], "s1#slice=0");
  std::vector<uint8_t> a(64 * 64);
  p.read_image(0, a.data());
  // Default percentile window (0.5..99.5): the extremes clip to 0 and 255.
  EXPECT_EQ(*std::max_element(a.begin(), a.end()), 255);
  EXPECT_EQ(*std::min_element(a.begin(), a.end()), 0);
}

}  // namespace
