// Zip archives through libzip: archives written by Python's zipfile (deflate and stored) read
// back byte for byte, our stored writer read by Python, unsafe names, damaged entries,
// concurrent reads.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <random>
#include <thread>

#include "data/tfrecord.h"
#include "data/zip.h"
#include "tests/test_data_util.h"

using namespace sf::data;
using sf::test::ScratchDir;

namespace {

std::vector<uint8_t> file_bytes(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void put_bytes(const std::string& p, const std::vector<uint8_t>& b) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// Three contents: incompressible, very compressible, empty.
std::vector<std::pair<std::string, std::vector<uint8_t>>> sample_files() {
  std::mt19937 rng(7);
  std::vector<uint8_t> noise(70000);
  for (auto& b : noise) b = static_cast<uint8_t>(rng());
  std::string text;
  for (int i = 0; i < 5000; ++i) text += "line " + std::to_string(i % 17) + " of a dataset.json-like text\n";
  return {{"a/noise.bin", noise}, {"text.txt", std::vector<uint8_t>(text.begin(), text.end())}, {"b/c/empty.png", {}}};
}

TEST(DataZip, PythonDeflateArchiveReadsBackTheSameBytes) {
  ScratchDir tmp("zip_py");
  const auto files = sample_files();
  for (const auto& [name, data] : files) {
    std::filesystem::create_directories(std::filesystem::path(tmp / ("src/" + name)).parent_path());
    put_bytes(tmp / ("src/" + name), data);
  }
  // Deflate for all but the text file (stored), plus a folder entry, in a fixed order.
  const std::string py =
      "import sys, zipfile\n"
      "src, out = sys.argv[1], sys.argv[2]\n"
      "with zipfile.ZipFile(out, 'w') as z:\n"
      "    z.write(src + '/a', 'a/')\n"
      "    z.write(src + '/a/noise.bin', 'a/noise.bin', zipfile.ZIP_DEFLATED, 9)\n"
      "    z.write(src + '/text.txt', 'text.txt', zipfile.ZIP_STORED)\n"
      "    z.write(src + '/b/c/empty.png', 'b/c/empty.png', zipfile.ZIP_DEFLATED)\n"
      "    z.writestr(zipfile.ZipInfo('deflated.txt'), open(src + '/text.txt', 'rb').read(), zipfile.ZIP_DEFLATED)\n";
  put_bytes(tmp / "mk.py", std::vector<uint8_t>(py.begin(), py.end()));
  auto r = sf::test::run_shell("/usr/bin/python3 " + (tmp / "mk.py") + " " + (tmp / "src") + " " + (tmp / "py.zip"));
  ASSERT_EQ(r.rc, 0) << "needs /usr/bin/python3 (scripts/install-test-deps.sh): " << r.out;
  // The deflated entries really are compressed (the archive is much smaller than the text).
  ASSERT_LT(file_bytes(tmp / "py.zip").size(), files[0].second.size() + 2 * files[1].second.size());

  ZipReader z(tmp / "py.zip");
  EXPECT_EQ(z.names(), (std::vector<std::string>{"a/noise.bin", "text.txt", "b/c/empty.png", "deflated.txt"}));
  EXPECT_FALSE(z.contains("a/"));
  EXPECT_EQ(z.read("a/noise.bin"), files[0].second);
  EXPECT_EQ(z.read("text.txt"), files[1].second);
  EXPECT_EQ(z.read("b/c/empty.png"), files[2].second);
  EXPECT_EQ(z.read("deflated.txt"), files[1].second);
  try {
    z.read("missing.png");
    FAIL();
  } catch (const FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("missing.png"), std::string::npos) << e.what();
  }
}

TEST(DataZip, StoredWriterIsReadByPythonAndByUs) {
  ScratchDir tmp("zip_w");
  const auto files = sample_files();
  write_zip_stored(tmp / "w.zip", files);
  const std::string py =
      "import sys, zipfile\n"
      "z = zipfile.ZipFile(sys.argv[1])\n"
      "assert z.testzip() is None\n"
      "for i in z.infolist():\n"
      "    assert i.compress_type == zipfile.ZIP_STORED, i\n"
      "    d = z.read(i)\n"
      "    print(i.filename, len(d), sum(d) % 65521)\n";
  put_bytes(tmp / "chk.py", std::vector<uint8_t>(py.begin(), py.end()));
  auto r = sf::test::run_shell("/usr/bin/python3 " + (tmp / "chk.py") + " " + (tmp / "w.zip"));
  ASSERT_EQ(r.rc, 0) << r.out;
  std::string want;
  for (const auto& [name, data] : files) {
    uint64_t sum = 0;
    for (uint8_t b : data) sum += b;
    want += name + " " + std::to_string(data.size()) + " " + std::to_string(sum % 65521) + "\n";
  }
  EXPECT_EQ(r.out, want);
  ZipReader z(tmp / "w.zip");
  ASSERT_EQ(z.names().size(), files.size());
  for (const auto& [name, data] : files) EXPECT_EQ(z.read(name), data) << name;
  // Same input, same bytes (fixed times).
  write_zip_stored(tmp / "w2.zip", files);
  EXPECT_EQ(file_bytes(tmp / "w.zip"), file_bytes(tmp / "w2.zip"));
  // No entries: a valid empty archive.
  write_zip_stored(tmp / "empty.zip", {});
  EXPECT_TRUE(ZipReader(tmp / "empty.zip").names().empty());
}

TEST(DataZip, UnsafeNamesDamageAndNonZipsAreOneLineErrors) {
  ScratchDir tmp("zip_bad");
  for (std::string evil : {"../x.png", "/abs/x.png", "a/../../x.png", "a\\..\\x.png", "C:/x.png"}) {
    write_zip_stored(tmp / "evil.zip", {{"ok.png", {1, 2, 3}}, {evil, {4}}});
    try {
      ZipReader z(tmp / "evil.zip");
      FAIL() << evil << " accepted";
    } catch (const FormatError& e) {
      EXPECT_NE(std::string(e.what()).find("'" + evil + "'"), std::string::npos) << e.what();
    }
  }
  // Names with dots that are not `..` components are fine.
  write_zip_stored(tmp / "dots.zip", {{"a..b/..c.png", {1}}, {"./d.png", {2}}});
  EXPECT_EQ(ZipReader(tmp / "dots.zip").names().size(), 2u);

  // A flipped data byte: libzip's CRC check.
  std::vector<uint8_t> payload(1000, 9);
  write_zip_stored(tmp / "crc.zip", {{"p.bin", payload}});
  auto b = file_bytes(tmp / "crc.zip");
  auto at = std::search(b.begin(), b.end(), payload.begin(), payload.begin() + 100);
  ASSERT_NE(at, b.end());
  at[500] ^= 0xFF;
  put_bytes(tmp / "crc.zip", b);
  std::vector<std::pair<std::string, std::string>> bad;  // path, what the error must name
  {
    ZipReader z(tmp / "crc.zip");
    try {
      z.read("p.bin");
      bad.emplace_back(tmp / "crc.zip", "read");
    } catch (const FormatError& e) {
      EXPECT_NE(std::string(e.what()).find("p.bin"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("CRC"), std::string::npos) << e.what();
    }
  }
  EXPECT_TRUE(bad.empty());
  // Not a zip, cut short, missing.
  put_bytes(tmp / "text.zip", std::vector<uint8_t>(300, 'x'));
  b.resize(b.size() - 30);
  put_bytes(tmp / "cut.zip", b);
  for (const std::string p : {tmp / "text.zip", tmp / "cut.zip", tmp / "missing.zip"}) {
    try {
      ZipReader z(p);
      FAIL() << p << " opened";
    } catch (const FormatError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(p), std::string::npos) << m;
      EXPECT_EQ(m.find('\n'), std::string::npos) << m;
    }
  }
}

TEST(DataZip, ConcurrentReadsGiveTheSameBytes) {
  ScratchDir tmp("zip_mt");
  std::vector<std::pair<std::string, std::vector<uint8_t>>> files;
  std::mt19937 rng(3);
  for (int i = 0; i < 40; ++i) {
    std::vector<uint8_t> d(1000 + 97 * i);
    for (auto& x : d) x = static_cast<uint8_t>(rng());
    files.emplace_back("f" + std::to_string(i) + ".png", d);
  }
  write_zip_stored(tmp / "mt.zip", files);
  ZipReader z(tmp / "mt.zip");
  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int round = 0; round < 5; ++round)
        for (size_t i = 0; i < files.size(); ++i) {
          const auto& f = files[(i + static_cast<size_t>(t) * 7) % files.size()];
          if (z.read(f.first) != f.second) ++mismatches[static_cast<size_t>(t)];
        }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches, (std::vector<int>{0, 0, 0, 0}));
}

}  // namespace
