// Visual Turing Test kit (metrics/vtt.h): base64, the kit draw, the page (no key material, no
// network), CSV reading, the scoring arithmetic on hand-computed examples, and one-line errors
// for bad answer files through `styleforge vtt-score`.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <regex>
#include <set>

#include <nlohmann/json.hpp>

#include "metrics/vtt.h"
#include "tests/test_data_util.h"

namespace vtt = sf::metrics::vtt;

namespace {

std::string b64(const std::string& s) { return vtt::base64_encode(reinterpret_cast<const uint8_t*>(s.data()), s.size()); }

// The error message of f(), or "" when it does not throw VttError.
template <typename F>
std::string error_of(F f) {
  try {
    f();
  } catch (const vtt::VttError& e) {
    return e.what();
  }
  return "";
}

// Key: a, b real; c, d synthetic.
std::vector<vtt::KeyEntry> small_key() { return {{"a", false}, {"b", false}, {"c", true}, {"d", true}}; }

const char* kHeader = "reader,image_id,answer,confidence,position,answered_at\n";

}  // namespace

TEST(Vtt, Base64MatchesRfc4648) {
  EXPECT_EQ(b64(""), "");
  EXPECT_EQ(b64("f"), "Zg==");
  EXPECT_EQ(b64("fo"), "Zm8=");
  EXPECT_EQ(b64("foo"), "Zm9v");
  EXPECT_EQ(b64("foob"), "Zm9vYg==");
  EXPECT_EQ(b64("fooba"), "Zm9vYmE=");
  EXPECT_EQ(b64("foobar"), "Zm9vYmFy");
  const uint8_t hi[3] = {0xff, 0xfe, 0xfd};
  EXPECT_EQ(vtt::base64_encode(hi, 3), "//79");
}

TEST(Vtt, CohenKappaHandExamples) {
  // 50 items: both yes 20, A yes/B no 5, A no/B yes 10, both no 15: p_o = 0.7, p_e = 0.5*0.6 + 0.5*0.4 = 0.5.
  std::vector<int> a, b;
  auto add = [&](int x, int y, int n) {
    for (int i = 0; i < n; ++i) a.push_back(x), b.push_back(y);
  };
  add(1, 1, 20);
  add(1, 0, 5);
  add(0, 1, 10);
  add(0, 0, 15);
  EXPECT_NEAR(vtt::cohen_kappa(a, b), 0.4, 1e-12);
  // p_o = 3/4, p_e = 1/2 * 1/4 + 1/2 * 3/4 = 1/2: kappa = 1/2.
  EXPECT_NEAR(vtt::cohen_kappa({1, 1, 0, 0}, {1, 0, 0, 0}), 0.5, 1e-12);
  EXPECT_NEAR(vtt::cohen_kappa({1, 0, 1, 0}, {1, 0, 1, 0}), 1.0, 1e-12);
  EXPECT_NEAR(vtt::cohen_kappa({1, 0, 1, 0}, {0, 1, 0, 1}), -1.0, 1e-12);
  EXPECT_TRUE(std::isnan(vtt::cohen_kappa({1, 1, 1}, {1, 1, 1})));  // chance agreement 1: undefined
}

TEST(Vtt, FleissKappaHandExamples) {
  // Fleiss (1971)'s worked example as usually quoted: 10 subjects, 14 raters, 5 categories;
  // P-bar = 0.37802, P_e = 0.21276, kappa = 0.20993.
  const std::vector<std::vector<int>> counts = {{0, 0, 0, 0, 14}, {0, 2, 6, 4, 2}, {0, 0, 3, 5, 6}, {0, 3, 9, 2, 0},
                                                {2, 2, 8, 1, 1},  {7, 7, 0, 0, 0}, {3, 2, 6, 3, 0}, {2, 5, 3, 2, 2},
                                                {6, 5, 2, 1, 0},  {0, 2, 2, 3, 7}};
  EXPECT_NEAR(vtt::fleiss_kappa(counts), 0.20993, 5e-6);
  // Two raters, calls {1,1,0,0} and {1,0,0,0}: P_i = 1, 0, 1, 1 -> P-bar 3/4; p = 3/8, 5/8 -> P_e = 34/64;
  // kappa = (3/4 - 34/64) / (1 - 34/64) = 7/15.
  EXPECT_NEAR(vtt::fleiss_kappa({{0, 2}, {1, 1}, {2, 0}, {2, 0}}), 7.0 / 15, 1e-12);
  EXPECT_TRUE(std::isnan(vtt::fleiss_kappa({{0, 3}, {0, 3}})));
  EXPECT_THROW(vtt::fleiss_kappa({{1, 1}, {1, 2}}), std::invalid_argument);
}

TEST(Vtt, BinomialTailAgainstGuessing) {
  EXPECT_NEAR(vtt::binomial_tail_half(8, 10), 56.0 / 1024, 1e-12);  // C(10,8)+C(10,9)+C(10,10) = 56
  EXPECT_NEAR(vtt::binomial_tail_half(10, 10), 1.0 / 1024, 1e-15);
  EXPECT_NEAR(vtt::binomial_tail_half(2, 4), 11.0 / 16, 1e-12);
  EXPECT_EQ(vtt::binomial_tail_half(0, 7), 1.0);
  EXPECT_EQ(vtt::binomial_tail_half(8, 7), 0.0);
}

TEST(Vtt, ScoreHandExample) {
  // X: a real, b synthetic, c synthetic, d synthetic -> TP 2, FN 0, TN 1, FP 1.
  // Y: a real, b real, c real, d synthetic         -> TP 1, FN 1, TN 2, FP 0.
  const auto key = small_key();
  vtt::ReaderAnswers x{"X", "x.csv", {{"a", {false, 5}}, {"b", {true, 4}}, {"c", {true, 3}}, {"d", {true, 2}}}, 0};
  vtt::ReaderAnswers y{"Y", "y.csv", {{"a", {false, 1}}, {"b", {false, 1}}, {"c", {false, 2}}, {"d", {true, 5}}}, 0};
  const vtt::Score s = vtt::score(key, "key.csv", {x, y}, false);
  ASSERT_EQ(s.readers.size(), 2u);
  const auto& rx = s.readers[0];
  EXPECT_EQ(rx.tp, 2);
  EXPECT_EQ(rx.fn, 0);
  EXPECT_EQ(rx.tn, 1);
  EXPECT_EQ(rx.fp, 1);
  EXPECT_DOUBLE_EQ(rx.accuracy, 0.75);
  EXPECT_DOUBLE_EQ(rx.sensitivity, 1.0);
  EXPECT_DOUBLE_EQ(rx.specificity, 0.5);
  EXPECT_DOUBLE_EQ(rx.mean_confidence, 3.5);
  EXPECT_NEAR(rx.p_guess, 5.0 / 16, 1e-12);  // P(X >= 3), X ~ B(4, 1/2)
  const auto& ry = s.readers[1];
  EXPECT_EQ(ry.tp, 1);
  EXPECT_EQ(ry.fn, 1);
  EXPECT_EQ(ry.tn, 2);
  EXPECT_EQ(ry.fp, 0);
  EXPECT_DOUBLE_EQ(ry.sensitivity, 0.5);
  EXPECT_DOUBLE_EQ(ry.specificity, 1.0);
  // Calls X = 0111, Y = 0001: agree on 2 of 4; p_e = 3/4*1/4 + 1/4*3/4 = 3/8: kappa = (1/2-3/8)/(5/8) = 1/5.
  ASSERT_EQ(s.pairs.size(), 1u);
  EXPECT_EQ(s.pairs[0].agree, 2);
  EXPECT_NEAR(s.pairs[0].kappa, 0.2, 1e-12);
  // Counts per image [real, synthetic]: [2,0] [1,1] [1,1] [0,2]: P-bar 1/2, P_e 1/2: kappa 0.
  EXPECT_EQ(s.fleiss_images, 4);
  EXPECT_NEAR(s.fleiss, 0.0, 1e-12);

  const std::string text = vtt::format_score(s);
  EXPECT_NE(text.find("positive class: synthetic"), std::string::npos) << text;
  EXPECT_NE(text.find("Fleiss' kappa (2 readers, 4 images): 0.0000"), std::string::npos) << text;
  EXPECT_NE(text.find("Cohen's kappa X / Y: 0.2000 (agree on 2 of 4 images)"), std::string::npos) << text;
  const auto j = vtt::score_json(s);
  EXPECT_EQ(j["readers"][0]["tp"], 2);
  EXPECT_DOUBLE_EQ(j["cohen_kappa"][0]["kappa"].get<double>(), s.pairs[0].kappa);

  // One reader: no agreement statistics.
  const vtt::Score one = vtt::score(key, "key.csv", {x}, false);
  EXPECT_TRUE(std::isnan(one.fleiss));
  EXPECT_TRUE(one.pairs.empty());
  EXPECT_TRUE(vtt::score_json(one)["fleiss_kappa"].is_null());
}

TEST(Vtt, MissingAnswersAreCountedOrRefused) {
  const auto key = small_key();
  vtt::ReaderAnswers x{"X", "x.csv", {{"a", {false, 5}}, {"b", {true, 4}}, {"c", {true, 3}}, {"d", {true, 2}}}, 0};
  vtt::ReaderAnswers z{"Z", "z.csv", {{"a", {false, 3}}, {"c", {true, 3}}}, 2};
  const std::string msg = error_of([&] { vtt::score(key, "key.csv", {x, z}, false); });
  EXPECT_NE(msg.find("z.csv"), std::string::npos) << msg;
  EXPECT_NE(msg.find("left 2 of 4 images unanswered"), std::string::npos) << msg;
  const vtt::Score s = vtt::score(key, "key.csv", {x, z}, true);
  EXPECT_EQ(s.readers[1].answered, 2);
  EXPECT_EQ(s.readers[1].unanswered, 2);
  EXPECT_DOUBLE_EQ(s.readers[1].accuracy, 1.0);
  EXPECT_EQ(s.fleiss_images, 2);  // only a and c were answered by both
  EXPECT_EQ(s.pairs[0].images, 2);
  // The same reader name in two files.
  vtt::ReaderAnswers x2 = x;
  x2.file = "x2.csv";
  const std::string dup = error_of([&] { vtt::score(key, "key.csv", {x, x2}, false); });
  EXPECT_NE(dup.find("x2.csv: reader 'X' also answered in x.csv"), std::string::npos) << dup;
}

TEST(Vtt, PlanKitIsSeededAndBalanced) {
  std::vector<int64_t> candidates;
  for (int64_t i = 0; i < 40; ++i) candidates.push_back(100 + i);
  const auto p = vtt::plan_kit(7, candidates, 10);
  const auto q = vtt::plan_kit(7, candidates, 10);
  const auto r = vtt::plan_kit(8, candidates, 10);
  ASSERT_EQ(p.items.size(), 20u);
  std::set<std::string> ids;
  std::set<int64_t> reals, seeds;
  int n_syn = 0;
  for (size_t i = 0; i < p.items.size(); ++i) {
    const auto& it = p.items[i];
    EXPECT_TRUE(std::regex_match(it.id, std::regex("[0-9a-f]{8}"))) << it.id;
    ids.insert(it.id);
    EXPECT_EQ(it.id, q.items[i].id);
    EXPECT_EQ(it.synthetic, q.items[i].synthetic);
    if (it.synthetic) {
      ++n_syn;
      EXPECT_GE(it.seed, 0);
      EXPECT_LT(it.seed, int64_t(1) << 31);
      seeds.insert(it.seed);
    } else {
      EXPECT_GE(it.pack_index, 100);
      EXPECT_LT(it.pack_index, 140);
      reals.insert(it.pack_index);
    }
  }
  EXPECT_EQ(ids.size(), 20u);
  EXPECT_EQ(n_syn, 10);
  EXPECT_EQ(reals.size(), 10u);
  EXPECT_EQ(seeds.size(), 10u);
  EXPECT_NE(p.kit_id, r.kit_id);
  EXPECT_NE(p.real_indices, r.real_indices);
  // Not all of one kind first: the order is shuffled.
  bool mixed = false;
  for (size_t i = 0; i < 10; ++i) mixed |= p.items[i].synthetic;
  EXPECT_TRUE(mixed);
  const std::string msg = error_of([&] { vtt::plan_kit(1, candidates, 41); });
  EXPECT_NE(msg.find("only 40 real images"), std::string::npos) << msg;
}

TEST(Vtt, PageHoldsIdsAndPixelsOnly) {
  std::vector<vtt::PageImage> images = {{"0a1b2c3d", {1, 2, 3}}, {"deadbeef", {4, 5, 6, 7}}};
  vtt::PageOptions opts;
  opts.title = "MRI <study> & co";
  opts.display_size = 300;
  opts.kit_id = "12345678";
  const std::string page = vtt::render_page(images, opts);
  EXPECT_EQ(page.find("http://"), std::string::npos);
  EXPECT_EQ(page.find("https://"), std::string::npos);
  EXPECT_NE(page.find("<title>MRI &lt;study&gt; &amp; co</title>"), std::string::npos);
  EXPECT_NE(page.find("min(300px"), std::string::npos);
  EXPECT_NE(page.find("image-rendering: pixelated"), std::string::npos);
  EXPECT_NE(page.find("default-src 'none'"), std::string::npos);
  // The data block: exactly {id, src} per image, in the given order.
  const std::string open = "<script id=\"vtt-data\" type=\"application/json\">";
  const size_t a = page.find(open), b = page.find("</script>", a);
  ASSERT_NE(a, std::string::npos);
  const auto data = nlohmann::json::parse(page.substr(a + open.size(), b - a - open.size()));
  EXPECT_EQ(data["kit"], "12345678");
  ASSERT_EQ(data["images"].size(), 2u);
  EXPECT_EQ(data["images"][1]["id"], "deadbeef");
  EXPECT_EQ(data["images"][1]["src"], "data:image/png;base64,BAUGBw==");
  for (const auto& im : data["images"]) EXPECT_EQ(im.size(), 2u) << im.dump();
  opts.display_size = 8;
  EXPECT_NE(error_of([&] { vtt::render_page(images, opts); }).find("--display-size 8"), std::string::npos);
}

TEST(Vtt, KeyRoundTrip) {
  std::vector<vtt::KeyRow> rows(2);
  rows[0].item = {"0000beef", false, 12, -1};
  rows[0].source_name = "img,with \"comma\".png";
  rows[1].item = {"0000cafe", true, -1, 77};
  rows[1].source_name = "seed0077";
  rows[1].class_idx = 1;
  const std::string text = vtt::render_key(rows);
  EXPECT_NE(text.find("0000cafe,synthetic,2,,seed0077,77,1\n"), std::string::npos) << text;
  const auto key = vtt::parse_key(text, "k.csv");
  ASSERT_EQ(key.size(), 2u);
  EXPECT_EQ(key[0].id, "0000beef");
  EXPECT_FALSE(key[0].synthetic);
  EXPECT_TRUE(key[1].synthetic);
  EXPECT_NE(error_of([] { vtt::parse_key("id,truth\nx,real\nx,synthetic\n", "k.csv"); }).find("k.csv: line 3: id x appears twice"),
            std::string::npos);
  EXPECT_NE(error_of([] { vtt::parse_key("id,truth\nx,fake\n", "k.csv"); }).find("k.csv: line 2: truth 'fake'"),
            std::string::npos);
  EXPECT_NE(error_of([] { vtt::parse_key("id,label\nx,real\n", "k.csv"); }).find("no 'truth' column"), std::string::npos);
}

TEST(Vtt, CsvQuotingAndErrors) {
  const auto rows = vtt::parse_csv("\xEF\xBB\xBF" "a,b\r\n\"x, \"\"y\"\"\",\"two\nlines\"\r\n\n,\n", "f.csv");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0], (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(rows[1], (std::vector<std::string>{"x, \"y\"", "two\nlines"}));
  EXPECT_EQ(rows[2], (std::vector<std::string>{"", ""}));
  EXPECT_EQ(vtt::csv_field("plain"), "plain");
  EXPECT_EQ(vtt::csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
  EXPECT_NE(error_of([] { vtt::parse_csv("a,b\n\"open,c\n", "f.csv"); }).find("f.csv: line 2: malformed CSV (unterminated quote)"),
            std::string::npos);
  EXPECT_NE(error_of([] { vtt::parse_csv("a,b\nx\"y,c\n", "f.csv"); }).find("f.csv: line 2: malformed CSV"),
            std::string::npos);
}

TEST(Vtt, AnswerFileErrorsNameFileAndLine) {
  const auto key = small_key();
  auto err = [&](const std::string& body) { return error_of([&] { vtt::parse_answers(kHeader + body, "ans.csv", key); }); };
  const auto ok = vtt::parse_answers(std::string(kHeader) + "dr a,a,real,5,1,t\ndr a,b,,,2,\ndr a,c,Synthetic,1,3,t\n",
                                     "ans.csv", key);
  EXPECT_EQ(ok.reader, "dr a");
  EXPECT_EQ(ok.answers.size(), 2u);
  EXPECT_EQ(ok.blank_rows, 1u);
  EXPECT_TRUE(ok.answers.at("c").synthetic);
  EXPECT_EQ(ok.answers.at("a").confidence, 5);

  EXPECT_NE(err("r,zz,real,3,1,t\n").find("ans.csv: line 2: image id 'zz' is not in the key"), std::string::npos);
  EXPECT_NE(err("r,a,real,3,1,t\nr,a,synthetic,3,2,t\n").find("ans.csv: line 3: image id a is answered twice"),
            std::string::npos);
  EXPECT_NE(err("r,a,maybe,3,1,t\n").find("line 2: answer 'maybe'"), std::string::npos);
  EXPECT_NE(err("r,a,real,7,1,t\n").find("line 2: confidence '7'"), std::string::npos);
  EXPECT_NE(err("r,a,real,,1,t\n").find("line 2: confidence ''"), std::string::npos);
  EXPECT_NE(err("r,a,real,3\n").find("line 2: malformed CSV (4 fields, the header has 6)"), std::string::npos);
  EXPECT_NE(err("r,a,real,3,1,t\ns,b,real,3,2,t\n").find("line 3: reader 's' differs from 'r' of line 2"),
            std::string::npos);
  EXPECT_NE(err(",a,real,3,1,t\n").find("line 2: no reader name"), std::string::npos);
  EXPECT_NE(err("").find("ans.csv: no answers (only a header)"), std::string::npos);
  EXPECT_NE(error_of([&] { vtt::parse_answers("reader,id,answer,confidence\n", "ans.csv", key); })
                .find("ans.csv: line 1: no 'image_id' column"),
            std::string::npos);
  EXPECT_NE(error_of([&] { vtt::parse_answers("", "ans.csv", key); }).find("ans.csv: empty answers file"), std::string::npos);
}

#ifdef STYLEFORGE_BINARY
TEST(Vtt, ScoreCommandLine) {
  sf::test::ScratchDir tmp("vtt");
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(tmp / name) << text;
    return tmp / name;
  };
  const std::string key = write("key.csv", "id,truth\na,real\nb,real\nc,synthetic\nd,synthetic\n");
  const std::string x = write("x.csv", std::string(kHeader) + "X,a,real,5,1,t\nX,b,synthetic,4,2,t\nX,c,synthetic,3,3,t\nX,d,synthetic,2,4,t\n");
  const std::string y = write("y.csv", std::string(kHeader) + "Y,a,real,1,1,t\nY,b,real,1,2,t\nY,c,real,2,3,t\nY,d,synthetic,5,4,t\n");
  const std::string part = write("part.csv", std::string(kHeader) + "Z,a,real,5,1,t\nZ,b,,,2,\n");
  const std::string bad = write("bad.csv", std::string(kHeader) + "X,a,real,5,1,t\nX,a,real,5,1,t\n");

  auto ok = sf::test::run_styleforge("vtt-score --key " + key + " " + x + " " + y);
  EXPECT_EQ(ok.rc, 0) << ok.out;
  EXPECT_NE(ok.out.find("Cohen's kappa X / Y: 0.2000"), std::string::npos) << ok.out;
  EXPECT_TRUE(std::regex_search(ok.out, std::regex("\nX +4/4 +0\\.7500 +1\\.0000 +0\\.5000 +2 +0 +1 +1 +3\\.50 +0\\.3125\n")))
      << ok.out;
  auto js = sf::test::run_styleforge("vtt-score --json --key " + key + " " + x + " " + y);
  ASSERT_EQ(js.rc, 0) << js.out;
  const auto j = nlohmann::json::parse(js.out);
  EXPECT_DOUBLE_EQ(j["readers"][1]["sensitivity"].get<double>(), 0.5);
  EXPECT_NEAR(j["fleiss_kappa"].get<double>(), 0.0, 1e-12);

  auto one_line = [](const sf::test::CliResult& r) { return std::count(r.out.begin(), r.out.end(), '\n') == 1; };
  auto missing = sf::test::run_styleforge("vtt-score --key " + key + " " + part);
  EXPECT_EQ(missing.rc, 1);
  EXPECT_NE(missing.out.find("left 3 of 4 images unanswered"), std::string::npos) << missing.out;
  EXPECT_TRUE(one_line(missing)) << missing.out;
  auto dup = sf::test::run_styleforge("vtt-score --key " + key + " " + bad);
  EXPECT_EQ(dup.rc, 1);
  EXPECT_NE(dup.out.find(bad + ": line 3: image id a is answered twice"), std::string::npos) << dup.out;
  EXPECT_TRUE(one_line(dup)) << dup.out;
  auto nokey = sf::test::run_styleforge("vtt-score --key " + (tmp / "none.csv") + " " + x);
  EXPECT_EQ(nokey.rc, 1);
  EXPECT_NE(nokey.out.find("none.csv: cannot read the key"), std::string::npos) << nokey.out;
  auto nofiles = sf::test::run_styleforge("vtt-score --key " + key);
  EXPECT_EQ(nofiles.rc, 2);
  EXPECT_TRUE(one_line(nofiles)) << nofiles.out;
  auto count = sf::test::run_styleforge("vtt --reals a.h5 --network b.h5 --dest " + (tmp / "d") + " --count 0");
  EXPECT_EQ(count.rc, 2);
  EXPECT_NE(count.out.find("--count 0"), std::string::npos) << count.out;
  auto nopack = sf::test::run_styleforge("vtt --reals " + (tmp / "none.h5") + " --network " + key + " --dest " + (tmp / "d"));
  EXPECT_EQ(nopack.rc, 2);
  EXPECT_NE(nopack.out.find("--reals"), std::string::npos) << nopack.out;
  EXPECT_TRUE(one_line(nopack)) << nopack.out;
}
#endif
