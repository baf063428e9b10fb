// TensorBoard event files (data/tb_events.h): the protobuf encoding against hand-encoded bytes
// from the wire-format rules, the TFRecord framing read back by our own TFRecord reader (both
// CRCs verified), file naming and errors. tests/e2e_tensorboard.sh reads real training output
// with TensorBoard's own EventAccumulator.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>

#include "data/image.h"
#include "data/tb_events.h"
#include "data/tfrecord.h"
#include "test_data_util.h"

namespace fs = std::filesystem;
using namespace sf;

namespace {

std::string bytes(std::initializer_list<int> v) {
  std::string s;
  for (int b : v) s.push_back(static_cast<char>(b));
  return s;
}

}  // namespace

TEST(DataTbEvents, ScalarEventWireFormat) {
  // Event{wall_time=2.0 (field 1, fixed64), step=5 (field 2, varint),
  //       summary (field 5) = Summary{value (field 1) = Value{tag="a" (1), simple_value=1.0f (2, fixed32)}}}
  const std::string want = bytes({0x09, 0, 0, 0, 0, 0, 0, 0, 0x40,  // wall_time 2.0
                                  0x10, 0x05,                      // step 5
                                  0x2a, 0x0a,                      // summary, 10 bytes
                                  0x0a, 0x08,                      // value, 8 bytes
                                  0x0a, 0x01, 'a',                 // tag
                                  0x15, 0x00, 0x00, 0x80, 0x3f});  // simple_value 1.0f
  EXPECT_EQ(data::tb_scalars_event({{"a", 1.0}}, 5, 2.0), want);
  // A step >= 128 takes a two-byte varint; values are rounded to float32.
  const std::string e = data::tb_scalars_event({{"b", 0.1}}, 300, 0.0);
  EXPECT_EQ(e.substr(9, 3), bytes({0x10, 0xac, 0x02}));
  float f = 0;
  std::memcpy(&f, e.data() + e.size() - 4, 4);
  EXPECT_EQ(f, 0.1f);
  // session_log (field 7) = SessionLog{status=START (1, varint 1), checkpoint_path="c" (2)}.
  EXPECT_EQ(data::tb_session_start_event(3, 0.0, "c").substr(9),
            bytes({0x10, 0x03, 0x3a, 0x05, 0x08, 0x01, 0x12, 0x01, 'c'}));
  // file_version (field 3) is "brain.Event:2".
  const std::string v = data::tb_file_version_event(0.0);
  EXPECT_EQ(v.substr(9), bytes({0x1a, 13}) + "brain.Event:2");
}

TEST(DataTbEvents, WriterFramesRecordsThatTheTfRecordReaderVerifies) {
  test::ScratchDir dir("tb_events");
  data::Image img;
  img.width = 5, img.height = 3, img.channels = 3;
  img.pixels.assign(5 * 3 * 3, 77);
  const std::vector<uint8_t> png_v = data::encode_png(img);
  const std::string png(png_v.begin(), png_v.end());
  const data::PngSize ps = data::png_size(png, "grid");
  EXPECT_EQ(ps.width, 5);
  EXPECT_EQ(ps.height, 3);
  EXPECT_EQ(ps.channels, 3);

  std::string path;
  {
    data::TbEventWriter w(dir.path.string());
    path = w.path();
    w.add_scalars({{"Loss/G/loss", 1.5}, {"Progress/kimg", 0.25}}, 0, 1.0);
    w.add_png("Images/fakes", png, 7, 2.0);
    w.flush();
    EXPECT_GT(fs::file_size(path), png.size());
  }
  const std::string name = fs::path(path).filename().string();
  EXPECT_TRUE(std::regex_match(name, std::regex(R"(events\.out\.tfevents\.\d{10}\..+\.)" +
                                                std::to_string(::getpid()) + R"(\.\d+)")))
      << name;
  // A second writer in the same second gets a file of its own.
  data::TbEventWriter w2(dir.path.string());
  EXPECT_NE(w2.path(), path);

  data::TfRecordReader r(path);
  std::vector<std::string> recs;
  std::string rec;
  while (r.next(rec)) recs.push_back(rec);
  ASSERT_EQ(recs.size(), 3u);
  EXPECT_NE(recs[0].find("brain.Event:2"), std::string::npos);
  EXPECT_EQ(recs[1], data::tb_scalars_event({{"Loss/G/loss", 1.5}, {"Progress/kimg", 0.25}}, 0, 1.0));
  EXPECT_EQ(recs[2], data::tb_image_event("Images/fakes", png, ps, 7, 2.0));
  EXPECT_NE(recs[2].find(png), std::string::npos);  // the PNG travels unchanged

  // A corrupted byte is caught by the record's CRC.
  std::string raw;
  {
    std::ifstream in(path, std::ios::binary);
    raw.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  raw[raw.size() - 10] ^= 1;
  const fs::path bad = dir.path / "bad.tfevents";
  std::ofstream(bad, std::ios::binary) << raw;
  data::TfRecordReader rb(bad.string());
  EXPECT_THROW(
      {
        while (rb.next(rec)) {
        }
      },
      data::FormatError);
}

TEST(DataTbEvents, ErrorsNameTheFile) {
  test::ScratchDir dir("tb_events_err");
  try {
    data::TbEventWriter w((dir.path / "missing").string());
    FAIL() << "no error for a missing directory";
  } catch (const data::TbEventError& e) {
    EXPECT_NE(std::string(e.what()).find("missing"), std::string::npos) << e.what();
  }
  data::TbEventWriter w(dir.path.string());
  try {
    w.add_png_file("Images/fakes", (dir.path / "nothing.png").string(), 0, 0);
    FAIL() << "no error for a missing image";
  } catch (const data::TbEventError& e) {
    EXPECT_NE(std::string(e.what()).find("nothing.png"), std::string::npos) << e.what();
  }
  EXPECT_THROW(data::png_size("GIF89a and some more bytes to fill 33", "x.gif"), data::TbEventError);
}
