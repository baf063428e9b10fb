// Visual Turing Test kit: a page that shows real and synthetic images one at a time to a reader
// (a physician) who calls each one real or synthetic with a confidence, and the scoring of the
// answers against the key. Torch-free; `styleforge vtt` and `styleforge vtt-score` (launcher/
// cmd_vtt.cpp) are the command lines.
//
// The kit: plan_kit() draws `count` pack images and `count` generator seeds from one seed, shuffles
// the 2*count images and gives each an opaque id (8 random hex digits). render_page() writes ONE
// self-contained HTML page (PNG data URIs, inline CSS and JS, a Content-Security-Policy that allows
// no network access) that holds only ids and pixels; render_key() writes the key (id -> real or
// synthetic, pack index and name or seed) as CSV, to be kept apart from the page.
//
// Answers: the page exports CSV with the header  reader,image_id,answer,confidence,position,answered_at
// (answer real|synthetic or empty when unanswered, confidence 1-5; only reader, image_id, answer and
// confidence are read). One file per reader. Positive class: synthetic. Sensitivity: synthetic
// images called synthetic; specificity: real images called real.
//
// Every read error throws VttError with one line that names the file (and line).
#pragma once

#include <cstdint>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace sf::metrics::vtt {

class VttError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

std::string base64_encode(const uint8_t* data, size_t n);

// A random stream whose draws are the same with every C++ library (std::mt19937_64 is specified,
// the standard distributions are not).
class Rng {
 public:
  explicit Rng(uint64_t seed) : mt_(seed) {}
  uint64_t below(uint64_t n);  // uniform in [0, n), n > 0
 private:
  std::mt19937_64 mt_;
};

// What a kit shows, in page order.
struct KitItem {
  std::string id;          // 8 lowercase hex digits
  bool synthetic = false;
  int64_t pack_index = -1; // real: index in the pack
  int64_t seed = -1;       // synthetic: generator seed (z = numpy RandomState(seed).randn)
};
struct KitPlan {
  std::string kit_id;                // 8 hex digits; names the page's saved answers in localStorage
  std::vector<int64_t> real_indices; // the drawn pack images, in draw order
  std::vector<int64_t> seeds;        // the drawn seeds, in draw order
  std::vector<KitItem> items;        // 2 * count, shuffled
};
// Draws `count` distinct indices from `candidates`, `count` distinct seeds in [0, 2^31) and the
// order, all from `seed`. Throws VttError when there are fewer candidates than `count`.
KitPlan plan_kit(uint64_t seed, const std::vector<int64_t>& candidates, size_t count);

struct PageOptions {
  std::string title = "Visual Turing Test";
  int display_size = 512;  // CSS pixels of the image's side (nearest-neighbour upscaling)
  std::string kit_id;
};
struct PageImage {
  std::string id;
  std::vector<uint8_t> png;
};
// The HTML page (images in the given order). Contains no key material.
std::string render_page(const std::vector<PageImage>& images, const PageOptions& opts);

// Key rows beside the plan: the source name of each real image (the pack's /names entry) and the
// class a synthetic image was generated with (-1: none).
struct KeyRow {
  KitItem item;
  std::string source_name;
  int class_idx = -1;
};
// CSV: id,truth,position,pack_index,source_name,seed,class (position 1-based in page order).
std::string render_key(const std::vector<KeyRow>& rows);

// RFC 4180 CSV (quoted fields, "" escapes, CRLF or LF). `name` appears in errors.
std::vector<std::vector<std::string>> parse_csv(const std::string& text, const std::string& name);
std::string csv_field(const std::string& s);

struct KeyEntry {
  std::string id;
  bool synthetic = false;
};
std::vector<KeyEntry> parse_key(const std::string& text, const std::string& name);
std::vector<KeyEntry> read_key(const std::string& path);

struct Answer {
  bool synthetic = false;
  int confidence = 0;  // 1..5
};
struct ReaderAnswers {
  std::string reader, file;
  std::map<std::string, Answer> answers;  // answered images only
  size_t blank_rows = 0;                  // rows with an empty answer
};
// Checks ids against the key: unknown or repeated ids, a bad answer or confidence, more than one
// reader name, a missing column are errors.
ReaderAnswers parse_answers(const std::string& text, const std::string& name, const std::vector<KeyEntry>& key);
ReaderAnswers read_answers(const std::string& path, const std::vector<KeyEntry>& key);

// Cohen's kappa of two raters' category calls (same length); NaN when chance agreement is 1.
double cohen_kappa(const std::vector<int>& a, const std::vector<int>& b);
// Fleiss' kappa from counts[item][category] (the same number of raters, >= 2, on every item);
// NaN when the expected agreement is 1.
double fleiss_kappa(const std::vector<std::vector<int>>& counts);
// One-sided exact binomial test against guessing: P(X >= k) for X ~ Binomial(n, 1/2).
double binomial_tail_half(int64_t k, int64_t n);

struct ReaderScore {
  std::string reader, file;
  int64_t answered = 0, unanswered = 0;
  int64_t tp = 0, fn = 0, tn = 0, fp = 0;  // positive: synthetic
  double accuracy = 0, sensitivity = 0, specificity = 0, mean_confidence = 0, p_guess = 1;
};
struct PairScore {
  std::string a, b;
  int64_t images = 0, agree = 0;
  double kappa = 0;
};
struct Score {
  std::string key_file;
  int64_t images = 0, reals = 0, synthetics = 0;
  std::vector<ReaderScore> readers;
  int64_t fleiss_images = 0;  // images answered by every reader
  double fleiss = 0;          // NaN with fewer than 2 readers
  std::vector<PairScore> pairs;
};
// Throws VttError naming the file of the first reader with unanswered images unless allow_missing,
// and for two files with the same reader name.
Score score(const std::vector<KeyEntry>& key, const std::string& key_file, const std::vector<ReaderAnswers>& readers,
            bool allow_missing);
std::string format_score(const Score& s);
nlohmann::json score_json(const Score& s);

}  // namespace sf::metrics::vtt
