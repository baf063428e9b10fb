// `styleforge vtt` (a Visual Turing Test page of real and generated images, and its key) and
// `styleforge vtt-score` (readers' answers against the key). See metrics/vtt.h.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>

#include <nlohmann/json.hpp>

#include "data/atomic_file.h"
#include "data/image.h"
#include "data/pack.h"
#include "launcher/cli.h"
#include "metrics/vtt.h"
#include "trainer/class_images.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace sf::cli {

namespace {

void write_file_atomic(const std::string& dest, const std::string& text) {
  const std::string tmp = data::temp_name_for(dest);
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << text;
    f.close();
    if (!f) {
      std::error_code ec;
      fs::remove(tmp, ec);
      throw std::runtime_error(dest + ": cannot write");
    }
  }
  try {
    data::commit_file(tmp, dest);
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
}

}  // namespace

int cmd_vtt(const std::vector<std::string>& args) {
  std::string reals, network, dest, title, noise_mode, device;
  int count = 50, class_idx = -1, display = 512, threads = 0;
  double trunc = 1.0;
  uint64_t seed = 0;
  bool force = false;
  po::options_description desc("options");
  desc.add_options()
      ("reals", po::value(&reals)->required(), "dataset pack (.h5) the real images are drawn from")
      ("network", po::value(&network)->required(), "checkpoint (.h5) or reference network pickle (.pkl) of the generator")
      ("count", po::value(&count)->default_value(50), "real images, and as many generated ones")
      ("dest", po::value(&dest)->required(), "folder for vtt.html (for the readers) and vtt-key.csv (kept apart)")
      ("seed", po::value(&seed), "seed of the draw of reals, generator seeds, order and ids (default: a random one, printed)")
      ("trunc", po::value(&trunc)->default_value(1.0), "truncation psi of the generated images")
      ("class", po::value(&class_idx)->default_value(-1), "class of a conditional network; reals are drawn from that class of a labelled pack")
      ("noise-mode", po::value(&noise_mode)->default_value("const"), "const | random | none")
      ("display-size", po::value(&display)->default_value(512), "side of the shown image in CSS pixels (nearest-neighbour upscaling)")
      ("title", po::value(&title)->default_value("Visual Turing Test"), "heading and title of the page")
      ("force", po::bool_switch(&force), "replace vtt.html and vtt-key.csv in --dest")
      ("threads", po::value(&threads)->default_value(0), "LibTorch threads (0: all cores)")
      ("device", po::value(&device)->default_value("auto"), "auto | cpu | cuda | cuda:N");
  po::variables_map vm;
  if (int rc = parse_options("vtt", "--reals PACK --network CKPT --count 50 --dest DIR [--seed S --trunc T --class K]",
                             args, desc, vm);
      rc >= 0)
    return rc;
  auto usage = [](const std::string& msg) {
    std::cerr << "styleforge vtt: " << msg << "\n";
    return kUsage;
  };
  if (count < 1) return usage("--count " + std::to_string(count) + ": must be at least 1");
  if (display < 16 || display > 4096) return usage("--display-size " + std::to_string(display) + ": must be in [16, 4096]");
  if (!vm.count("seed")) seed = std::random_device{}() & 0x7fffffffu;
  const fs::path page_path = fs::path(dest) / "vtt.html", key_path = fs::path(dest) / "vtt-key.csv";
  if (!force)
    for (const auto& p : {page_path, key_path})
      if (fs::exists(p)) return usage("--dest: " + p.string() + " exists (--force replaces it)");
  if (!fs::is_regular_file(reals)) return usage("--reals " + reals + ": no such file");
  if (!fs::is_regular_file(network)) return usage("--network " + network + ": no such file");

  data::PackReader pack(reals);
  const data::PackInfo& info = pack.info();
  const trainer::GeneratorShape shape = trainer::read_generator_shape(network);
  if (shape.img_resolution != info.resolution || shape.img_channels != info.channels)
    return usage("--network " + network + " makes " + std::to_string(shape.img_resolution) + "x" +
                 std::to_string(shape.img_resolution) + " images with " + std::to_string(shape.img_channels) +
                 " channel(s), --reals " + reals + " holds " + std::to_string(info.resolution) + "x" +
                 std::to_string(info.resolution) + " with " + std::to_string(info.channels) +
                 ": readers would tell them apart by that");
  if (shape.c_dim > 0 && (class_idx < 0 || class_idx >= shape.c_dim))
    return usage("--class: the network is conditional; give a class in [0, " + std::to_string(shape.c_dim) + ")");
  if (shape.c_dim == 0 && class_idx >= 0)
    return usage("--class " + std::to_string(class_idx) + ": the network is unconditional");
  std::vector<int64_t> candidates;
  const bool by_class = class_idx >= 0 && info.label_kind == data::LabelKind::Class;
  for (int64_t i = 0; i < pack.size(); ++i)
    if (!by_class || pack.class_label(i) == class_idx) candidates.push_back(i);
  if (class_idx >= 0 && !by_class)
    std::cerr << "note: " << reals << " has no class labels: real images are drawn from all " << pack.size() << "\n";
  if (candidates.size() < static_cast<size_t>(count))
    return usage("--count " + std::to_string(count) + ": " + reals + " holds only " + std::to_string(candidates.size()) +
                 " images" + (by_class ? " of class " + std::to_string(class_idx) : std::string()));

  const metrics::vtt::KitPlan plan = metrics::vtt::plan_kit(seed, candidates, static_cast<size_t>(count));
  const std::vector<std::string> names = pack.names();
  std::map<int64_t, std::vector<uint8_t>> real_png;
  std::vector<uint8_t> chw(info.image_bytes());
  for (int64_t idx : plan.real_indices) {
    pack.read_image(idx, chw.data());
    real_png[idx] = data::encode_png(data::chw_to_image(chw.data(), info.channels, info.resolution, info.resolution));
  }
  std::cout << "vtt: " << count << " real images of " << reals << ", " << count << " generated by " << network
            << " (trunc " << trunc << (class_idx >= 0 ? ", class " + std::to_string(class_idx) : std::string())
            << "), seed " << seed << "\n";
  std::vector<data::Image> fakes;
  try {
    // The same generator path as `generate` and `classify` (trainer/class_images.h), in batches.
    trainer::ClassImages gen = trainer::generate_class_images(network, class_idx, plan.seeds, trunc, noise_mode, device, 16, threads);
    const size_t per = static_cast<size_t>(gen.channels) * gen.resolution * gen.resolution;
    for (size_t i = 0; i < plan.seeds.size(); ++i)
      fakes.push_back(data::chw_to_image(gen.pixels.data() + i * per, gen.channels, gen.resolution, gen.resolution));
    std::cerr << "generated " << fakes.size() << " images\n";
  } catch (const std::invalid_argument& e) {
    return usage(e.what());
  }
  std::map<int64_t, std::vector<uint8_t>> fake_png;
  for (size_t i = 0; i < plan.seeds.size(); ++i) fake_png[plan.seeds[i]] = data::encode_png(fakes[i]);

  std::vector<metrics::vtt::PageImage> page_images;
  std::vector<metrics::vtt::KeyRow> key_rows;
  for (const auto& item : plan.items) {
    page_images.push_back({item.id, item.synthetic ? fake_png.at(item.seed) : real_png.at(item.pack_index)});
    metrics::vtt::KeyRow row;
    row.item = item;
    if (item.synthetic) {
      char b[32];
      std::snprintf(b, sizeof b, "seed%04lld", static_cast<long long>(item.seed));
      row.source_name = b;
      row.class_idx = class_idx;
    } else {
      row.source_name = static_cast<size_t>(item.pack_index) < names.size() ? names[item.pack_index] : "";
      row.class_idx = info.label_kind == data::LabelKind::Class ? static_cast<int>(pack.class_label(item.pack_index)) : -1;
    }
    key_rows.push_back(row);
  }
  metrics::vtt::PageOptions opts;
  opts.title = title;
  opts.display_size = display;
  opts.kit_id = plan.kit_id;
  const std::string page = metrics::vtt::render_page(page_images, opts);
  fs::create_directories(dest);
  write_file_atomic(page_path.string(), page);
  write_file_atomic(key_path.string(), metrics::vtt::render_key(key_rows));
  std::printf("wrote %s (%zu images, %.1f %s, opens offline in any browser)\n", page_path.c_str(), page_images.size(),
              page.size() < 1000000 ? page.size() / 1e3 : page.size() / 1e6, page.size() < 1000000 ? "kB" : "MB");
  std::printf("wrote %s: the key; keep it away from the readers\n", key_path.c_str());
  std::printf("score the readers' CSV files with: styleforge vtt-score --key %s ANSWERS.csv...\n", key_path.c_str());
  return kOk;
}

int cmd_vtt_score(const std::vector<std::string>& args) {
  std::string key_path;
  std::vector<std::string> files;
  bool json = false, allow_missing = false;
  po::options_description desc("options");
  desc.add_options()
      ("key", po::value(&key_path)->required(), "vtt-key.csv written by styleforge vtt")
      ("answers", po::value(&files)->multitoken(), "answer CSV files exported by the page, one per reader (positional)")
      ("json", po::bool_switch(&json), "print the scores as JSON")
      ("allow-missing", po::bool_switch(&allow_missing), "score readers who left images unanswered on the answered ones");
  po::positional_options_description pos;
  pos.add("answers", -1);
  po::variables_map vm;
  if (int rc = parse_options("vtt-score", "--key vtt-key.csv ANSWERS.csv... [--json]", args, desc, vm, &pos); rc >= 0)
    return rc;
  if (files.empty()) {
    std::cerr << "styleforge vtt-score: no answer files (give one CSV per reader after the options)\n";
    return kUsage;
  }
  try {
    const auto key = metrics::vtt::read_key(key_path);
    std::vector<metrics::vtt::ReaderAnswers> readers;
    for (const auto& f : files) readers.push_back(metrics::vtt::read_answers(f, key));
    const auto s = metrics::vtt::score(key, key_path, readers, allow_missing);
    if (json)
      std::cout << metrics::vtt::score_json(s).dump(2) << "\n";
    else
      std::cout << metrics::vtt::format_score(s);
  } catch (const metrics::vtt::VttError& e) {
    std::cerr << "styleforge vtt-score: " << e.what() << "\n";
    return kFailure;
  }
  return kOk;
}

}  // namespace sf::cli
