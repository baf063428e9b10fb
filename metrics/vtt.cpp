// See vtt.h. The page template is in vtt_page.cpp.
#include "metrics/vtt.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

namespace sf::metrics::vtt {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

std::string hex8(uint64_t v) {
  char b[16];
  std::snprintf(b, sizeof b, "%08x", static_cast<unsigned>(v & 0xffffffffu));
  return b;
}

std::string read_text(const std::string& path, const char* what) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw VttError(path + ": cannot read the " + std::string(what));
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t"), b = s.find_last_not_of(" \t");
  return a == std::string::npos ? std::string() : s.substr(a, b - a + 1);
}

// Column positions of a header row; throws naming the file when one of `required` is missing.
std::map<std::string, size_t> header_columns(const std::vector<std::string>& header, const std::string& name,
                                             const std::vector<std::string>& required) {
  std::map<std::string, size_t> cols;
  for (size_t i = 0; i < header.size(); ++i) cols.emplace(lower(trim(header[i])), i);
  for (const auto& r : required)
    if (!cols.count(r)) throw VttError(name + ": line 1: no '" + r + "' column (header: " + [&] {
      std::string h;
      for (size_t i = 0; i < header.size(); ++i) h += (i ? "," : "") + header[i];
      return h;
    }() + ")");
  return cols;
}

}  // namespace

std::string base64_encode(const uint8_t* data, size_t n) {
  static const char* tab = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((n + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < n; i += 3) {
    const uint32_t v = (uint32_t(data[i]) << 16) | (uint32_t(data[i + 1]) << 8) | data[i + 2];
    out += tab[v >> 18];
    out += tab[(v >> 12) & 63];
    out += tab[(v >> 6) & 63];
    out += tab[v & 63];
  }
  if (i < n) {
    const uint32_t v = (uint32_t(data[i]) << 16) | (i + 1 < n ? uint32_t(data[i + 1]) << 8 : 0);
    out += tab[v >> 18];
    out += tab[(v >> 12) & 63];
    out += i + 1 < n ? tab[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

uint64_t Rng::below(uint64_t n) {
  if (n == 0) throw std::invalid_argument("Rng::below(0)");
  const uint64_t limit = std::numeric_limits<uint64_t>::max() - std::numeric_limits<uint64_t>::max() % n;
  uint64_t v;
  do v = mt_();
  while (v >= limit);
  return v % n;
}

KitPlan plan_kit(uint64_t seed, const std::vector<int64_t>& candidates, size_t count) {
  if (count == 0) throw VttError("--count: must be at least 1");
  if (candidates.size() < count)
    throw VttError("--count " + std::to_string(count) + ": only " + std::to_string(candidates.size()) +
                   " real images to draw from");
  Rng rng(seed);
  KitPlan plan;
  // Partial Fisher-Yates over the candidates: the first `count` are the draw.
  std::vector<int64_t> pool = candidates;
  for (size_t i = 0; i < count; ++i) std::swap(pool[i], pool[i + rng.below(pool.size() - i)]);
  plan.real_indices.assign(pool.begin(), pool.begin() + static_cast<std::ptrdiff_t>(count));
  std::set<int64_t> seen;
  while (plan.seeds.size() < count) {
    const auto s = static_cast<int64_t>(rng.below(uint64_t(1) << 31));
    if (seen.insert(s).second) plan.seeds.push_back(s);
  }
  for (size_t i = 0; i < count; ++i) plan.items.push_back({"", false, plan.real_indices[i], -1});
  for (size_t i = 0; i < count; ++i) plan.items.push_back({"", true, -1, plan.seeds[i]});
  for (size_t i = plan.items.size(); i > 1; --i) std::swap(plan.items[i - 1], plan.items[rng.below(i)]);
  std::set<std::string> ids;
  for (auto& it : plan.items) {
    do it.id = hex8(rng.below(uint64_t(1) << 32));
    while (!ids.insert(it.id).second);
  }
  plan.kit_id = hex8(rng.below(uint64_t(1) << 32));
  return plan;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\r\n") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

std::string render_key(const std::vector<KeyRow>& rows) {
  std::string out = "id,truth,position,pack_index,source_name,seed,class\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    const KeyRow& r = rows[i];
    out += r.item.id + "," + (r.item.synthetic ? "synthetic" : "real") + "," + std::to_string(i + 1) + ",";
    out += (r.item.synthetic ? "" : std::to_string(r.item.pack_index)) + ",";
    out += csv_field(r.source_name) + ",";
    out += (r.item.synthetic ? std::to_string(r.item.seed) : "") + ",";
    out += (r.class_idx >= 0 ? std::to_string(r.class_idx) : "") + "\n";
  }
  return out;
}

std::vector<std::vector<std::string>> parse_csv(const std::string& text, const std::string& name) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false, field_started = false, after_quote = false;
  size_t line = 1, quote_line = 0;
  size_t i = 0;
  if (text.compare(0, 3, "\xEF\xBB\xBF") == 0) i = 3;  // a UTF-8 byte order mark (spreadsheets write one)
  auto end_row = [&] {
    row.push_back(field);
    // A blank line is no row.
    if (!(row.size() == 1 && row[0].empty() && !field_started)) rows.push_back(row);
    row.clear();
    field.clear();
    field_started = after_quote = false;
  };
  for (; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') {
          field += '"';
          ++i;
        } else {
          quoted = false;
          after_quote = true;
        }
      } else {
        if (c == '\n') ++line;
        field += c;
      }
      continue;
    }
    if (c == ',') {
      row.push_back(field);
      field.clear();
      field_started = true;
      after_quote = false;
    } else if (c == '\r' || c == '\n') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      end_row();
      ++line;
    } else if (c == '"') {
      if (!field.empty() || after_quote)
        throw VttError(name + ": line " + std::to_string(line) + ": malformed CSV (a quote inside an unquoted field)");
      quoted = true;
      field_started = true;
      quote_line = line;
    } else {
      if (after_quote)
        throw VttError(name + ": line " + std::to_string(line) + ": malformed CSV (text after a closing quote)");
      field += c;
      field_started = true;
    }
  }
  if (quoted) throw VttError(name + ": line " + std::to_string(quote_line) + ": malformed CSV (unterminated quote)");
  if (field_started || !field.empty() || !row.empty()) end_row();
  return rows;
}

std::vector<KeyEntry> parse_key(const std::string& text, const std::string& name) {
  const auto rows = parse_csv(text, name);
  if (rows.empty()) throw VttError(name + ": empty key file");
  const auto cols = header_columns(rows[0], name, {"id", "truth"});
  const size_t ci = cols.at("id"), ct = cols.at("truth");
  std::vector<KeyEntry> key;
  std::set<std::string> ids;
  for (size_t r = 1; r < rows.size(); ++r) {
    const std::string where = name + ": line " + std::to_string(r + 1) + ": ";
    if (rows[r].size() != rows[0].size())
      throw VttError(where + "malformed CSV (" + std::to_string(rows[r].size()) + " fields, the header has " +
                     std::to_string(rows[0].size()) + ")");
    KeyEntry e;
    e.id = trim(rows[r][ci]);
    const std::string t = lower(trim(rows[r][ct]));
    if (e.id.empty()) throw VttError(where + "empty id");
    if (t != "real" && t != "synthetic") throw VttError(where + "truth '" + rows[r][ct] + "' is neither real nor synthetic");
    e.synthetic = t == "synthetic";
    if (!ids.insert(e.id).second) throw VttError(where + "id " + e.id + " appears twice in the key");
    key.push_back(e);
  }
  if (key.empty()) throw VttError(name + ": the key lists no images");
  return key;
}

std::vector<KeyEntry> read_key(const std::string& path) { return parse_key(read_text(path, "key"), path); }

ReaderAnswers parse_answers(const std::string& text, const std::string& name, const std::vector<KeyEntry>& key) {
  const auto rows = parse_csv(text, name);
  if (rows.empty()) throw VttError(name + ": empty answers file");
  const auto cols = header_columns(rows[0], name, {"reader", "image_id", "answer", "confidence"});
  const size_t cr = cols.at("reader"), ci = cols.at("image_id"), ca = cols.at("answer"), cc = cols.at("confidence");
  std::set<std::string> known;
  for (const auto& k : key) known.insert(k.id);
  ReaderAnswers out;
  out.file = name;
  std::set<std::string> seen;
  size_t reader_line = 0;
  for (size_t r = 1; r < rows.size(); ++r) {
    const auto& row = rows[r];
    const std::string where = name + ": line " + std::to_string(r + 1) + ": ";
    if (row.size() != rows[0].size())
      throw VttError(where + "malformed CSV (" + std::to_string(row.size()) + " fields, the header has " +
                     std::to_string(rows[0].size()) + ")");
    const std::string reader = trim(row[cr]), id = trim(row[ci]), ans = lower(trim(row[ca])), conf = trim(row[cc]);
    if (reader.empty()) throw VttError(where + "no reader name");
    if (!reader_line) {
      out.reader = reader;
      reader_line = r + 1;
    } else if (reader != out.reader) {
      throw VttError(where + "reader '" + reader + "' differs from '" + out.reader + "' of line " +
                     std::to_string(reader_line) + " (one reader per file)");
    }
    if (!known.count(id)) throw VttError(where + "image id '" + id + "' is not in the key");
    if (!seen.insert(id).second) throw VttError(where + "image id " + id + " is answered twice");
    if (ans.empty()) {
      if (!conf.empty()) throw VttError(where + "a confidence without an answer for image " + id);
      ++out.blank_rows;
      continue;
    }
    if (ans != "real" && ans != "synthetic")
      throw VttError(where + "answer '" + row[ca] + "' for image " + id + " is neither real nor synthetic");
    if (conf.size() != 1 || conf[0] < '1' || conf[0] > '5')
      throw VttError(where + "confidence '" + row[cc] + "' for image " + id + " is not 1, 2, 3, 4 or 5");
    out.answers[id] = {ans == "synthetic", conf[0] - '0'};
  }
  if (!reader_line) throw VttError(name + ": no answers (only a header)");
  return out;
}

ReaderAnswers read_answers(const std::string& path, const std::vector<KeyEntry>& key) {
  return parse_answers(read_text(path, "answers"), path, key);
}

double cohen_kappa(const std::vector<int>& a, const std::vector<int>& b) {
  if (a.size() != b.size() || a.empty()) throw std::invalid_argument("cohen_kappa: two equal, non-empty lists");
  std::map<int, double> pa, pb;
  double agree = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    pa[a[i]] += 1;
    pb[b[i]] += 1;
    agree += a[i] == b[i];
  }
  const double n = static_cast<double>(a.size());
  const double po = agree / n;
  double pe = 0;
  for (const auto& [cat, na] : pa)
    if (auto it = pb.find(cat); it != pb.end()) pe += (na / n) * (it->second / n);
  if (pe >= 1) return kNaN;
  return (po - pe) / (1 - pe);
}

double fleiss_kappa(const std::vector<std::vector<int>>& counts) {
  if (counts.empty()) throw std::invalid_argument("fleiss_kappa: no items");
  const size_t k = counts[0].size();
  int raters = 0;
  for (int c : counts[0]) raters += c;
  if (raters < 2) throw std::invalid_argument("fleiss_kappa: at least 2 raters per item");
  std::vector<double> pj(k, 0);
  double pbar = 0;
  for (const auto& row : counts) {
    if (row.size() != k) throw std::invalid_argument("fleiss_kappa: ragged counts");
    int n = 0;
    double sq = 0;
    for (size_t j = 0; j < k; ++j) {
      n += row[j];
      sq += double(row[j]) * row[j];
      pj[j] += row[j];
    }
    if (n != raters) throw std::invalid_argument("fleiss_kappa: every item needs the same number of raters");
    pbar += (sq - raters) / (double(raters) * (raters - 1));
  }
  const double N = static_cast<double>(counts.size());
  pbar /= N;
  double pe = 0;
  for (double v : pj) pe += (v / (N * raters)) * (v / (N * raters));
  if (pe >= 1) return kNaN;
  return (pbar - pe) / (1 - pe);
}

double binomial_tail_half(int64_t k, int64_t n) {
  if (k <= 0) return 1;
  if (k > n) return 0;
  double sum = 0;
  for (int64_t i = k; i <= n; ++i)
    sum += std::exp(std::lgamma(n + 1.0) - std::lgamma(i + 1.0) - std::lgamma(n - i + 1.0) - n * std::log(2.0));
  return std::min(1.0, sum);
}

Score score(const std::vector<KeyEntry>& key, const std::string& key_file, const std::vector<ReaderAnswers>& readers,
            bool allow_missing) {
  Score s;
  s.key_file = key_file;
  s.images = static_cast<int64_t>(key.size());
  for (const auto& k : key) (k.synthetic ? s.synthetics : s.reals) += 1;
  std::map<std::string, std::string> names;  // reader -> file
  for (const auto& r : readers) {
    auto [it, fresh] = names.emplace(r.reader, r.file);
    if (!fresh) throw VttError(r.file + ": reader '" + r.reader + "' also answered in " + it->second);
    const int64_t missing = s.images - static_cast<int64_t>(r.answers.size());
    if (missing > 0 && !allow_missing)
      throw VttError(r.file + ": reader '" + r.reader + "' left " + std::to_string(missing) + " of " +
                     std::to_string(s.images) + " images unanswered (--allow-missing scores the answered ones)");
    if (r.answers.empty()) throw VttError(r.file + ": reader '" + r.reader + "' answered no image");
    ReaderScore rs;
    rs.reader = r.reader;
    rs.file = r.file;
    rs.answered = static_cast<int64_t>(r.answers.size());
    rs.unanswered = missing;
    double conf = 0;
    for (const auto& k : key) {
      auto a = r.answers.find(k.id);
      if (a == r.answers.end()) continue;
      conf += a->second.confidence;
      if (k.synthetic) (a->second.synthetic ? rs.tp : rs.fn) += 1;
      else (a->second.synthetic ? rs.fp : rs.tn) += 1;
    }
    const int64_t correct = rs.tp + rs.tn;
    rs.accuracy = double(correct) / rs.answered;
    rs.sensitivity = rs.tp + rs.fn ? double(rs.tp) / (rs.tp + rs.fn) : kNaN;
    rs.specificity = rs.tn + rs.fp ? double(rs.tn) / (rs.tn + rs.fp) : kNaN;
    rs.mean_confidence = conf / rs.answered;
    rs.p_guess = binomial_tail_half(correct, rs.answered);
    s.readers.push_back(rs);
  }
  s.fleiss = kNaN;
  if (readers.size() >= 2) {
    std::vector<std::vector<int>> counts;
    for (const auto& k : key) {
      std::vector<int> row(2, 0);
      bool all = true;
      for (const auto& r : readers) {
        auto a = r.answers.find(k.id);
        if (a == r.answers.end()) {
          all = false;
          break;
        }
        row[a->second.synthetic] += 1;
      }
      if (all) counts.push_back(row);
    }
    s.fleiss_images = static_cast<int64_t>(counts.size());
    if (!counts.empty()) s.fleiss = fleiss_kappa(counts);
    for (size_t i = 0; i < readers.size(); ++i)
      for (size_t j = i + 1; j < readers.size(); ++j) {
        PairScore p;
        p.a = readers[i].reader;
        p.b = readers[j].reader;
        std::vector<int> ca, cb;
        for (const auto& k : key) {
          auto x = readers[i].answers.find(k.id), y = readers[j].answers.find(k.id);
          if (x == readers[i].answers.end() || y == readers[j].answers.end()) continue;
          ca.push_back(x->second.synthetic);
          cb.push_back(y->second.synthetic);
          p.agree += x->second.synthetic == y->second.synthetic;
        }
        p.images = static_cast<int64_t>(ca.size());
        p.kappa = ca.empty() ? kNaN : cohen_kappa(ca, cb);
        s.pairs.push_back(p);
      }
  }
  return s;
}

namespace {

std::string num(double v, int decimals = 4) {
  if (std::isnan(v)) return "n/a";
  char b[32];
  std::snprintf(b, sizeof b, "%.*f", decimals, v);
  return b;
}

std::string pad(const std::string& s, size_t w, bool right = false) {
  if (s.size() >= w) return s;
  return right ? std::string(w - s.size(), ' ') + s : s + std::string(w - s.size(), ' ');
}

nlohmann::json jnum(double v) { return std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(v); }

}  // namespace

std::string format_score(const Score& s) {
  std::ostringstream o;
  o << "key " << s.key_file << ": " << s.images << " images (" << s.reals << " real, " << s.synthetics
    << " synthetic); positive class: synthetic\n"
    << "  sensitivity = synthetic images called synthetic, specificity = real images called real,\n"
    << "  p(guess) = one-sided binomial test of the accuracy against guessing (1/2)\n";
  size_t w = 6;
  for (const auto& r : s.readers) w = std::max(w, r.reader.size());
  const std::vector<std::pair<std::string, size_t>> cols = {
      {"answered", 9}, {"accuracy", 9}, {"sensitivity", 12}, {"specificity", 12}, {"TP", 5}, {"FN", 5},
      {"TN", 5},       {"FP", 5},       {"confidence", 11},  {"p(guess)", 9}};
  o << pad("reader", w);
  for (const auto& [name, cw] : cols) o << "  " << pad(name, cw, true);
  o << "\n";
  for (const auto& r : s.readers) {
    const std::vector<std::string> v = {std::to_string(r.answered) + "/" + std::to_string(s.images),
                                        num(r.accuracy),
                                        num(r.sensitivity),
                                        num(r.specificity),
                                        std::to_string(r.tp),
                                        std::to_string(r.fn),
                                        std::to_string(r.tn),
                                        std::to_string(r.fp),
                                        num(r.mean_confidence, 2),
                                        num(r.p_guess)};
    o << pad(r.reader, w);
    for (size_t i = 0; i < v.size(); ++i) o << "  " << pad(v[i], cols[i].second, true);
    o << "\n";
  }
  if (s.readers.size() < 2) {
    o << "agreement between readers: needs at least 2 answer files\n";
    return o.str();
  }
  o << "Fleiss' kappa (" << s.readers.size() << " readers, " << s.fleiss_images << " images): " << num(s.fleiss) << "\n";
  for (const auto& p : s.pairs)
    o << "Cohen's kappa " << p.a << " / " << p.b << ": " << num(p.kappa) << " (agree on " << p.agree << " of "
      << p.images << " images)\n";
  return o.str();
}

nlohmann::json score_json(const Score& s) {
  nlohmann::json j;
  j["key"] = s.key_file;
  j["images"] = s.images;
  j["real"] = s.reals;
  j["synthetic"] = s.synthetics;
  j["positive_class"] = "synthetic";
  j["readers"] = nlohmann::json::array();
  for (const auto& r : s.readers)
    j["readers"].push_back({{"reader", r.reader},
                            {"file", r.file},
                            {"answered", r.answered},
                            {"unanswered", r.unanswered},
                            {"tp", r.tp},
                            {"fn", r.fn},
                            {"tn", r.tn},
                            {"fp", r.fp},
                            {"accuracy", jnum(r.accuracy)},
                            {"sensitivity", jnum(r.sensitivity)},
                            {"specificity", jnum(r.specificity)},
                            {"mean_confidence", jnum(r.mean_confidence)},
                            {"p_guess", jnum(r.p_guess)}});
  j["fleiss_kappa"] = s.readers.size() >= 2 ? jnum(s.fleiss) : nlohmann::json(nullptr);
  j["fleiss_images"] = s.fleiss_images;
  j["cohen_kappa"] = nlohmann::json::array();
  for (const auto& p : s.pairs)
    j["cohen_kappa"].push_back({{"a", p.a}, {"b", p.b}, {"kappa", jnum(p.kappa)}, {"agree", p.agree}, {"images", p.images}});
  return j;
}

}  // namespace sf::metrics::vtt
