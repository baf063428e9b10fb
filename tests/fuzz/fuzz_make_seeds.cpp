// Writes the seed corpora of the fuzz targets: small valid inputs of every format, made with the
// project's own writers (packs, zips, PNGs), built by hand (NIfTI-1/2 both byte orders, npy,
// TFRecord, DICOM, pickles of several protocols), plus the small real files of the fixtures.
//   fuzz_make_seeds OUT_DIR [FIXTURES_DIR]
#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "data/bench.h"
#include "data/hash.h"
#include "data/image.h"
#include "data/pack.h"
#include "data/zip.h"

namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

static void put(const fs::path& p, const Bytes& b) {
  fs::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}
static Bytes get(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}
static Bytes str(const std::string& s) { return Bytes(s.begin(), s.end()); }

static Bytes nifti1(int nx, int ny, int nz, int16_t dtype, int16_t bitpix, bool swap) {
  size_t es = static_cast<size_t>(bitpix / 8);
  Bytes b(352 + static_cast<size_t>(nx) * ny * nz * es, 0);
  auto w16 = [&](size_t at, int16_t v) { std::memcpy(&b[at], &v, 2); if (swap) std::swap(b[at], b[at + 1]); };
  auto w32 = [&](size_t at, const void* v) { std::memcpy(&b[at], v, 4); if (swap) { std::swap(b[at], b[at + 3]); std::swap(b[at + 1], b[at + 2]); } };
  int32_t hs = 348;
  w32(0, &hs);
  int16_t dim[8] = {3, static_cast<int16_t>(nx), static_cast<int16_t>(ny), static_cast<int16_t>(nz), 1, 1, 1, 1};
  for (int i = 0; i < 8; ++i) w16(40 + 2 * i, dim[i]);
  w16(70, dtype);
  w16(72, bitpix);
  float one = 1, off = 352, slope = 2, inter = 1;
  for (int i = 0; i < 4; ++i) w32(76 + 4 * i, &one);
  w32(108, &off);
  w32(112, &slope);
  w32(116, &inter);
  std::memcpy(&b[344], "n+1\0", 4);
  for (size_t i = 352; i < b.size(); ++i) b[i] = static_cast<uint8_t>(i * 37);
  return b;
}

static Bytes nifti2(int nx, int ny, int nz, int nt) {
  Bytes b(544 + static_cast<size_t>(nx) * ny * nz * nt * 2, 0);
  int32_t hs = 540;
  std::memcpy(&b[0], &hs, 4);
  std::memcpy(&b[4], "n+2\0\r\n\032\n", 8);
  int16_t dt = 4;
  std::memcpy(&b[12], &dt, 2);
  int64_t dim[8] = {nt > 1 ? 4 : 3, nx, ny, nz, nt, 1, 1, 1};
  std::memcpy(&b[16], dim, 64);
  double pix[8] = {1, 1, 1, 1, 1, 1, 1, 1};
  std::memcpy(&b[104], pix, 64);
  int64_t off = 544;
  std::memcpy(&b[168], &off, 8);
  for (size_t i = 544; i < b.size(); ++i) b[i] = static_cast<uint8_t>(i * 11);
  return b;
}

static Bytes gz(const Bytes& in) {
  uLongf n = compressBound(static_cast<uLong>(in.size())) + 32;
  Bytes out(n + 18);
  z_stream zs{};
  deflateInit2(&zs, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  zs.next_in = const_cast<Bytef*>(in.data());
  zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

static Bytes npy(const std::string& descr, const std::string& shape, size_t bytes) {
  std::string h = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  while ((10 + h.size() + 1) % 64) h += ' ';
  h += '\n';
  Bytes b = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, static_cast<uint8_t>(h.size()), static_cast<uint8_t>(h.size() >> 8)};
  b.insert(b.end(), h.begin(), h.end());
  for (size_t i = 0; i < bytes; ++i) b.push_back(static_cast<uint8_t>(i == 0 ? 0 : (i % 8 == 0 ? 1 : 0)));
  return b;
}

// tf.train.Example {features {feature {key "shape" value {int64_list [C,H,W]}} feature {key "data" value {bytes_list [..]}}}}
static Bytes tf_example(int c, int h, int w) {
  auto varint = [](Bytes& o, uint64_t v) { while (v >= 0x80) { o.push_back(static_cast<uint8_t>(v | 0x80)); v >>= 7; } o.push_back(static_cast<uint8_t>(v)); };
  auto field = [&](Bytes& o, int num, const Bytes& payload) { o.push_back(static_cast<uint8_t>(num << 3 | 2)); varint(o, payload.size()); o.insert(o.end(), payload.begin(), payload.end()); };
  Bytes packed;
  for (int d : {c, h, w}) varint(packed, static_cast<uint64_t>(d));
  Bytes i64list, shape_feat, data_list, data_feat;
  field(i64list, 1, packed);
  field(shape_feat, 3, i64list);
  Bytes pix(static_cast<size_t>(c) * h * w);
  for (size_t i = 0; i < pix.size(); ++i) pix[i] = static_cast<uint8_t>(i * 3);
  field(data_list, 1, pix);
  field(data_feat, 1, data_list);
  auto entry = [&](const std::string& key, const Bytes& feat) { Bytes e; field(e, 1, str(key)); field(e, 2, feat); return e; };
  Bytes features;
  field(features, 1, entry("shape", shape_feat));
  field(features, 1, entry("data", data_feat));
  Bytes ex;
  field(ex, 1, features);
  return ex;
}
static Bytes tfrecord(const std::vector<Bytes>& records) {
  Bytes out;
  for (const auto& r : records) {
    uint64_t len = r.size();
    Bytes head(12);
    std::memcpy(head.data(), &len, 8);
    uint32_t c = sf::data::masked_crc32c(head.data(), 8);
    std::memcpy(head.data() + 8, &c, 4);
    out.insert(out.end(), head.begin(), head.end());
    out.insert(out.end(), r.begin(), r.end());
    uint32_t dc = sf::data::masked_crc32c(r.data(), r.size());
    out.insert(out.end(), reinterpret_cast<uint8_t*>(&dc), reinterpret_cast<uint8_t*>(&dc) + 4);
  }
  return out;
}

static Bytes dicom(uint16_t rows, uint16_t cols, bool meta) {
  Bytes d;
  if (meta) {
    d.assign(128, 0);
    d.insert(d.end(), {'D', 'I', 'C', 'M'});
  }
  auto el = [&](uint16_t g, uint16_t e, const char* vr, const Bytes& v) {
    d.insert(d.end(), {static_cast<uint8_t>(g), static_cast<uint8_t>(g >> 8), static_cast<uint8_t>(e), static_cast<uint8_t>(e >> 8),
                       static_cast<uint8_t>(vr[0]), static_cast<uint8_t>(vr[1])});
    if (!std::strcmp(vr, "OW") || !std::strcmp(vr, "SQ")) {
      uint32_t n = static_cast<uint32_t>(v.size());
      d.insert(d.end(), {0, 0, static_cast<uint8_t>(n), static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n >> 16), static_cast<uint8_t>(n >> 24)});
    } else {
      d.insert(d.end(), {static_cast<uint8_t>(v.size()), static_cast<uint8_t>(v.size() >> 8)});
    }
    d.insert(d.end(), v.begin(), v.end());
  };
  std::string ts = "1.2.840.10008.1.2.1";
  ts.push_back('\0');
  if (meta) el(0x0002, 0x0010, "UI", str(ts));
  el(0x0008, 0x0060, "CS", str("MR"));
  el(0x0020, 0x0013, "IS", str("3 "));
  el(0x0020, 0x0032, "DS", str("0\\0\\12.5"));
  el(0x0028, 0x0002, "US", {1, 0});
  el(0x0028, 0x0010, "US", {static_cast<uint8_t>(rows), static_cast<uint8_t>(rows >> 8)});
  el(0x0028, 0x0011, "US", {static_cast<uint8_t>(cols), static_cast<uint8_t>(cols >> 8)});
  el(0x0028, 0x0100, "US", {16, 0});
  el(0x0028, 0x0101, "US", {12, 0});
  el(0x0028, 0x0103, "US", {1, 0});
  el(0x0028, 0x1050, "DS", str("40"));
  el(0x0028, 0x1051, "DS", str("400 "));
  el(0x0028, 0x1052, "DS", str("-1024 "));
  el(0x0028, 0x1053, "DS", str("1 "));
  Bytes px(static_cast<size_t>(rows) * cols * 2);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(i * 5);
  el(0x7FE0, 0x0010, "OW", px);
  return d;
}

static Bytes hex(const char* h) {
  Bytes b;
  for (size_t i = 0; h[i] && h[i + 1]; i += 2) b.push_back(static_cast<uint8_t>(std::stoi(std::string(h + i, 2), nullptr, 16)));
  return b;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: fuzz_make_seeds OUT_DIR [FIXTURES_DIR]\n";
    return 2;
  }
  fs::path out = argv[1];
  std::string fixtures = argc > 2 ? argv[2] : "";
  int n = 0;
  auto seed = [&](const std::string& target, const std::string& name, const Bytes& b) {
    put(out / target / name, b);
    ++n;
  };
  // image
  for (int ch : {1, 2, 3, 4}) {
    sf::data::Image img;
    img.width = 7;
    img.height = 5;
    img.channels = ch;
    img.pixels.resize(static_cast<size_t>(7 * 5 * ch));
    for (size_t i = 0; i < img.pixels.size(); ++i) img.pixels[i] = static_cast<uint8_t>(i * 9);
    seed("image", "png_c" + std::to_string(ch), sf::data::encode_png(img, ch == 1 ? 0 : 6));
  }
  if (!fixtures.empty()) {
    for (const auto& e : fs::directory_iterator(fs::path(fixtures) / "png_gray_16"))
      if (e.path().extension() == ".png" && n < 8) seed("image", e.path().filename().string(), get(e.path()));
    for (const auto& e : fs::recursive_directory_iterator(fixtures))
      if (e.path().extension() == ".jpg" || e.path().extension() == ".jpeg") {
        if (fs::file_size(e.path()) < 64 * 1024) seed("image", "jpg_" + e.path().filename().string(), get(e.path()));
      }
  }
  // zip
  {
    sf::data::Image img;
    img.width = img.height = 4;
    img.channels = 1;
    img.pixels.assign(16, 7);
    fs::path tmp = out / "zip" / "stored.zip";
    fs::create_directories(tmp.parent_path());
    sf::data::write_zip_stored(tmp.string(), {{"a/img0.png", sf::data::encode_png(img)}, {"dataset.json", str("{\"labels\": null}")}});
    ++n;
  }
  // npy
  seed("npy", "f4", npy("<f4", "(3, 2)", 24));
  seed("npy", "i8", npy("<i8", "(4,)", 32));
  seed("npy", "u1", npy("|u1", "(2, 2)", 4));
  // tfrecord
  seed("tfrecord", "two.tfrecords", tfrecord({tf_example(1, 4, 4), tf_example(3, 2, 2)}));
  seed("tfrecord", "example", tf_example(1, 4, 4));
  // nifti
  seed("nifti", "u8.nii", nifti1(8, 8, 3, 2, 8, false));
  seed("nifti", "i16_be.nii", nifti1(8, 8, 2, 4, 16, true));
  seed("nifti", "f32.nii", nifti1(8, 8, 2, 16, 32, false));
  seed("nifti", "n2_4d.nii", nifti2(8, 8, 2, 2));
  seed("nifti", "u8.nii.gz", gz(nifti1(8, 8, 3, 2, 8, false)));
  if (!fixtures.empty() && fs::exists(fs::path(fixtures) / "real" / "standard.nii.gz"))
    seed("nifti", "standard.nii.gz", get(fs::path(fixtures) / "real" / "standard.nii.gz"));
  // dicom
  seed("dicom", "meta.dcm", dicom(8, 8, true));
  seed("dicom", "implicit_guess.dcm", dicom(8, 9, false));
  if (!fixtures.empty() && fs::exists(fs::path(fixtures) / "real" / "MR_small.dcm"))
    seed("dicom", "MR_small.dcm", get(fs::path(fixtures) / "real" / "MR_small.dcm"));
  // pack
  {
    fs::create_directories(out / "pack");
    sf::data::make_synthetic_pack((out / "pack" / "plain.h5").string(), 3, 8, 1, 1, true);
    sf::data::PackWriter::Options o;
    o.force = true;
    o.class_names = {"a", "b"};
    sf::data::PackWriter w((out / "pack" / "labels.h5").string(), o);
    std::vector<uint8_t> img(3 * 4 * 4, 9);
    for (int i = 0; i < 3; ++i) {
      sf::data::Label l;
      l.kind = sf::data::LabelKind::Class;
      l.cls = i % 2;
      w.add(img.data(), 3, 4, "x" + std::to_string(i) + ".png", l);
    }
    w.commit();
    sf::data::PackWriter::Options g;
    g.force = true;
    g.gzip_level = 6;
    sf::data::PackWriter wg((out / "pack" / "gzip_vec.h5").string(), g);
    for (int i = 0; i < 2; ++i) {
      sf::data::Label l;
      l.kind = sf::data::LabelKind::Vector;
      l.vec = {0.5f, static_cast<float>(i)};
      wg.add(img.data(), 1, 4, "v" + std::to_string(i), l);
    }
    wg.commit();
    n += 3;
  }
  // pickle: CPython-written protocol 0/2/4 dicts (as in tests/test_pickle.cpp), nested lists,
  // an allow-listed global, a memo reference and protocol 5 frames.
  seed("pickle", "p2_dict", hex("80027d71002858010000006171014b0158010000006c71025d7103284b014b024b03657558010000006f71046363"
                                 "6f6c6c656374696f6e730a4f726465726564446963740a71052952710628580100000078710768014b0173752e"));
  seed("pickle", "p0_list", str("(lp0\nI1\naI2\na(dp1\nVk\np2\nI3\nsa."));
  seed("pickle", "p4_nested", hex("8004951a000000000000005d945d945d945d945d944b01618c0178948694617474742e"));
  seed("pickle", "p2_tuple_float", hex("8002473ff8000000000000580300000061626371004e8771012e"));
  seed("pickle", "p5_bytes", hex("80059512000000000000004302616294430201027d94288c0161944b02752e"));
  std::cout << "wrote " << n << " seeds under " << out.string() << "\n";
  return 0;
}
