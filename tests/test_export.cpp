// Reference-format export (`styleforge export`) and reference pickles where commands take a
// network: the pickle writer's opcodes read back, the exported pickle loads with the reference's
// own loader (a stylegan2-ada-pytorch checkout named by $STYLEFORGE_REFERENCE) with every tensor
// bitwise equal and the same images from the reference's generate.py as from `styleforge
// generate`; generate and metrics take a .pkl; a checkpoint's relative pack path is found again
// from another folder; train --data refuses folders and zips or packs them with --pack-if-needed.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/grad_mode.h>
#include <c10/core/GradMode.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "data/bench.h"
#include "data/hash.h"
#include "data/image.h"
#include "data/pack.h"
#include "data/pack_path.h"
#include "sharding/communicator.h"
#include "test_data_util.h"
#include "trainer/checkpoint.h"
#include "trainer/export.h"
#include "trainer/import.h"
#include "trainer/networks.h"
#include "trainer/pickle.h"
#include "trainer/pickle_write.h"
#include "trainer/training_loop.h"

namespace fs = std::filesystem;
using namespace sf;

namespace {

// A 16x16 RGB network-only checkpoint whose every tensor is random (w_avg, noise strengths,
// biases, constants too), so that every term of the generator shows in the images.
std::string random_checkpoint(const std::string& path) {
  trainer::GeneratorConfig g;
  g.z_dim = 16;
  g.w_dim = 24;
  g.img_resolution = 16;
  g.img_channels = 3;
  g.mapping_layers = 2;
  g.channel_base = 256;
  g.channel_max = 32;
  g.conv_clamp = 256;
  trainer::DiscriminatorConfig d;
  d.img_resolution = 16;
  d.img_channels = 3;
  d.channel_base = 256;
  d.channel_max = 32;
  d.mbstd_group_size = 2;
  at::Generator gen = at::detail::createCPUGenerator(11);
  trainer::Generator G(g, gen), G_ema(g, gen);
  trainer::Discriminator D(d, gen);
  at::NoGradGuard no_grad;
  for (trainer::ParamStore* s : {&G.state(), &G_ema.state(), &D.state()})
    for (const auto& e : s->entries())
      if (e.name.find("resample_filter") == std::string::npos)
        const_cast<at::Tensor&>(e.tensor).add_(at::randn(e.tensor.sizes(), gen) * 0.3);
  trainer::CheckpointWrite w;
  w.G = &G;
  w.D = &D;
  w.G_ema = &G_ema;
  trainer::write_checkpoint(path, w);
  return path;
}

int info_fp16(const std::string& ckpt) { return trainer::read_checkpoint_info(ckpt).G.num_fp16_res; }

std::string reference_dir() {
  const char* r = std::getenv("STYLEFORGE_REFERENCE");
  return r ? r : "";
}

// The torch environment's python (scripts/torch-env.sh), with click and Pillow installed by
// scripts/test-python-deps.sh.
std::string python() {
  static std::string py = [] {
    auto r = test::run_shell("bash " STYLEFORGE_SOURCE_DIR "/scripts/torch-env.sh");
    std::string p = r.out;
    while (!p.empty() && (p.back() == '\n' || p.back() == ' ')) p.pop_back();
    if (p.find('\n') != std::string::npos) p = p.substr(p.rfind('\n') + 1);
    return r.rc == 0 ? p : std::string();
  }();
  return py;
}

std::map<std::string, std::string> tensor_hashes(const trainer::ParamStore& s) {
  std::map<std::string, std::string> out;
  for (const auto& e : s.entries()) {
    at::Tensor c = e.tensor.detach().to(at::kFloat).contiguous();
    data::Sha256 h;
    h.update(c.data_ptr(), static_cast<size_t>(c.numel()) * sizeof(float));
    out[e.name] = h.hex_digest();
  }
  return out;
}

std::map<std::string, std::string> json_hashes(const nlohmann::json& j) {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : j.items()) out[k] = v.get<std::string>();
  return out;
}

struct ImageDiff {
  int max_diff = 0;
  int64_t values = 0, differing = 0;
};

ImageDiff compare_pngs(const std::string& a, const std::string& b) {
  data::Image x = data::read_image_file(a), y = data::read_image_file(b);
  EXPECT_EQ(x.size_str(), y.size_str()) << a << " vs " << b;
  ImageDiff d;
  if (x.pixels.size() != y.pixels.size()) return d;
  for (size_t i = 0; i < x.pixels.size(); ++i) {
    const int diff = std::abs(int(x.pixels[i]) - int(y.pixels[i]));
    d.max_diff = std::max(d.max_diff, diff);
    d.differing += diff != 0;
  }
  d.values = static_cast<int64_t>(x.pixels.size());
  return d;
}

}  // namespace

// ---- the writer ----

TEST(PickleWrite, ValuesReadBackThroughTheReader) {
  std::ostringstream out;
  pickle::Writer w(out, "test.pkl");
  const std::string long_text(300, 'x');
  const std::string blob = std::string("\0\1\2", 3) + std::string(1000, 'b');
  nlohmann::json j = {{"small", 7}, {"mid", 40000}, {"neg", -5}, {"big", int64_t(1) << 40}, {"negbig", -(int64_t(1) << 40)},
                      {"f", 0.1}, {"none", nullptr}, {"yes", true}, {"no", false}, {"s", long_text},
                      {"list", {1, "two", 3.5}}, {"nested", {{"a", {{"b", 2}}}}}};
  w.mark();
  w.str("json");
  w.json(j);
  w.str("bytes");
  w.bytes(blob.data(), blob.size());
  w.str("again");
  w.str("memo me");
  const uint32_t m = w.memoize();
  w.str("memo");
  w.get(m);
  w.dict_from_mark();
  w.stop();
  pickle::ValuePtr v = pickle::load(std::make_shared<const std::string>(out.str()), {"test.pkl"});
  ASSERT_TRUE(v->is(pickle::Kind::Dict));
  EXPECT_EQ(pickle::to_json(*v->get("json"), "json"), j);
  ASSERT_TRUE(v->get("bytes") && v->get("bytes")->is(pickle::Kind::Bytes));
  EXPECT_EQ(v->get("bytes")->bytes.str(), blob);
  EXPECT_EQ(v->get("memo")->as_str("memo"), "memo me");
  EXPECT_EQ(w.bytes_written(), out.str().size());
}

TEST(PickleWrite, AFailedStreamThrowsNamingTheFile) {
  std::ostringstream out;
  out.setstate(std::ios::badbit);
  try {
    pickle::Writer w(out, "dest.pkl");
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("dest.pkl"), std::string::npos) << e.what();
  }
}

TEST(Export, RefusesANetworkWithoutDAndLeavesNothing) {
  test::ScratchDir dir("export_noD");
  trainer::GeneratorConfig g;
  g.z_dim = g.w_dim = 8;
  g.img_resolution = 8;
  g.channel_base = 64;
  g.channel_max = 8;
  g.mapping_layers = 1;
  trainer::Generator G(g), G_ema(g);
  trainer::CheckpointWrite w;
  w.G = &G;
  w.G_ema = &G_ema;
  trainer::write_checkpoint(dir / "g.h5", w);
  try {
    trainer::export_network_pickle(dir / "g.h5", dir / "g.pkl");
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("no discriminator"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir / "g.pkl"));
  auto missing = test::run_styleforge("export " + (dir / "none.h5") + " --dest " + (dir / "none.pkl"));
  EXPECT_EQ(missing.rc, 1) << missing.out;
  EXPECT_EQ(std::count(missing.out.begin(), missing.out.end(), '\n'), 1) << missing.out;
  EXPECT_NE(missing.out.find("none.h5"), std::string::npos) << missing.out;
  EXPECT_FALSE(fs::exists(dir / "none.pkl"));
  for (const auto& e : fs::directory_iterator(dir.path)) EXPECT_EQ(e.path().extension(), ".h5") << e.path();
}

// ---- the reference's loader and generate.py on the export ----

TEST(Export, ReferenceLoadsTheExportAndDrawsTheSameImages) {
  const std::string ref = reference_dir();
  if (ref.empty() || !fs::exists(fs::path(ref) / "legacy.py")) {
    std::cerr << "[  SKIPPED ] Export.ReferenceLoadsTheExportAndDrawsTheSameImages: $STYLEFORGE_REFERENCE does not name "
                 "a stylegan2-ada-pytorch checkout\n";
    GTEST_SKIP() << "$STYLEFORGE_REFERENCE does not name a stylegan2-ada-pytorch checkout";
  }
  ASSERT_FALSE(python().empty()) << "scripts/torch-env.sh found no python";
  test::ScratchDir dir("export_ref");

  // 1. A network-only checkpoint of random tensors; 2. a short trained run with options
  // (dataset, augmentation at a fixed p) whose last snapshot is exported.
  const std::string rnd = random_checkpoint(dir / "random.h5");
  const std::string pack = dir / "rgb16.h5";
  data::make_synthetic_pack(pack, 16, 16, 3, 5, true);
  trainer::TrainOptions o;
  o.data = pack;
  o.outdir = dir / "runs";
  o.batch_override = 4;
  o.cbase_override = 256;
  o.cmax_override = 32;
  o.map_override = 2;
  o.threads = 1;
  o.kimg_override = 0.008;
  o.kimg_per_tick = 0.004;
  o.aug = "fixed";
  o.p_override = 0.25;
  o.mirror = true;
  o.cond = false;
  trainer::TrainRequest req;
  req.options = o;
  sharding::LocalCommunicator comm;
  ASSERT_EQ(trainer::run_training(req, comm), 0);
  const auto snaps = trainer::list_snapshots(trainer::last_run_dir());
  ASSERT_FALSE(snaps.empty());
  const std::string trained = snaps.back();

  // 3. The reference fixture snapshot imported: its training_set_kwargs and augment pipeline go
  // back out.
  const std::string imp = dir / "imported.h5";
  const trainer::ImportResult imported = trainer::import_network_pickle(test::fixture("snapshot_res32.pkl"), imp);
  auto ex = test::run_styleforge("export " + imp + " --dest " + (dir / "imported.pkl"));
  ASSERT_EQ(ex.rc, 0) << ex.out;
  ex = test::run_styleforge("export " + rnd + " --dest " + (dir / "random.pkl"));
  ASSERT_EQ(ex.rc, 0) << ex.out;
  ex = test::run_styleforge("export " + trained + " --dest " + (dir / "trained.pkl"));
  ASSERT_EQ(ex.rc, 0) << ex.out;
  // Our own reader does not run the reference's classes: it says where the networks are.
  auto back = test::run_styleforge("generate --network " + (dir / "trained.pkl") + " --seeds 0 --outdir " + (dir / "x"));
  EXPECT_EQ(back.rc, 1) << back.out;
  EXPECT_NE(back.out.find("written by `styleforge export`"), std::string::npos) << back.out;
  auto again = test::run_styleforge("export " + trained + " --dest " + (dir / "trained.pkl"));
  EXPECT_EQ(again.rc, 1) << again.out;  // no silent replacement
  EXPECT_NE(again.out.find("--force"), std::string::npos) << again.out;

  const std::string helper = STYLEFORGE_SOURCE_DIR "/tests/reference_pickle.py";
  auto desc = test::run_shell(python() + " " + helper + " " + ref + " describe " + (dir / "random.pkl") + " " +
                              (dir / "trained.pkl") + " " + (dir / "imported.pkl") + " 2>/dev/null");
  ASSERT_EQ(desc.rc, 0) << desc.out;
  std::vector<nlohmann::json> loaded;
  {
    std::istringstream in(desc.out);
    for (std::string line; std::getline(in, line);)
      if (!line.empty() && line[0] == '{') loaded.push_back(nlohmann::json::parse(line));
  }
  ASSERT_EQ(loaded.size(), 3u) << desc.out;

  // Every tensor of G, D and G_ema bitwise, the modules as the reference's snapshots hold them.
  const std::vector<std::string> ckpts = {rnd, trained, imp};
  for (size_t k = 0; k < 3; ++k) {
    const nlohmann::json& j = loaded[k];
    const auto info = trainer::read_checkpoint_info(ckpts[k]);
    trainer::Generator G(info.G), G_ema(info.G);
    trainer::Discriminator D(info.D);
    trainer::load_networks(ckpts[k], &G, &D, &G_ema);
    EXPECT_EQ(j["G"]["class"], "training.networks.Generator");
    EXPECT_EQ(j["D"]["class"], "training.networks.Discriminator");
    for (const char* n : {"G", "D", "G_ema"}) {
      EXPECT_EQ(j[n]["training"], false) << n;
      EXPECT_EQ(j[n]["requires_grad"], false) << n;
    }
    EXPECT_EQ(json_hashes(j["G"]["tensors"]), tensor_hashes(G.state())) << ckpts[k];
    EXPECT_EQ(json_hashes(j["G_ema"]["tensors"]), tensor_hashes(G_ema.state())) << ckpts[k];
    EXPECT_EQ(json_hashes(j["D"]["tensors"]), tensor_hashes(D.state())) << ckpts[k];
    EXPECT_EQ(j["G"]["init_kwargs"]["synthesis_kwargs"]["channel_base"], info.G.channel_base);
    EXPECT_EQ(j["D"]["init_kwargs"]["epilogue_kwargs"]["mbstd_group_size"], info.D.mbstd_group_size);
  }
  EXPECT_TRUE(loaded[0]["augment_pipe"].is_null());
  EXPECT_TRUE(loaded[0]["training_set_kwargs"].is_null());
  ASSERT_TRUE(loaded[1]["augment_pipe"].is_object());
  EXPECT_EQ(loaded[1]["augment_pipe"]["class"], "training.augment.AugmentPipe");
  EXPECT_FLOAT_EQ(loaded[1]["augment_pipe"]["p"].get<double>(), 0.25);
  EXPECT_EQ(loaded[1]["augment_pipe"]["init_kwargs"]["xflip"], 1);  // bgc
  EXPECT_EQ(loaded[1]["training_set_kwargs"]["path"], pack);
  EXPECT_EQ(loaded[1]["training_set_kwargs"]["xflip"], true);
  EXPECT_EQ(loaded[1]["training_set_kwargs"]["max_size"], 16);
  EXPECT_EQ(loaded[1]["training_set_kwargs"]["resolution"], 16);
  EXPECT_EQ(loaded[2]["training_set_kwargs"], imported.training_set_kwargs);
  ASSERT_TRUE(loaded[2]["augment_pipe"].is_object());
  EXPECT_FLOAT_EQ(loaded[2]["augment_pipe"]["p"].get<double>(), imported.augment_p);
  EXPECT_GT(imported.augment_p, 0);

  // Images: the reference's generate.py on the pickle against ours on the checkpoint, same seeds.
  // The random network (num_fp16_res 0) is float32 on both sides, with different operation
  // orders: a value may land on the other side of a rounding boundary (at most 1 of 255, in under
  // 1% of the values; measured: none). The trained run keeps the presets' num_fp16_res = 4 for GPU
  // runs: the reference computes those blocks in float16 even on the CPU (ours stays float32
  // there), which moves more values by 1 (measured 1.7-2.5%); still never by more.
  ASSERT_EQ(info_fp16(rnd), 0);
  ASSERT_GT(info_fp16(trained), 0);
  for (size_t k = 0; k < 2; ++k) {
    const std::string tag = k == 0 ? "random" : "trained";
    for (const char* trunc : {"1", "0.7"}) {
      const std::string refout = dir / ("ref_" + tag + "_" + trunc), ours = dir / ("ours_" + tag + "_" + trunc);
      auto r = test::run_shell(python() + " " + helper + " " + ref + " generate --network " + (dir / (tag + ".pkl")) +
                               " --seeds 0-3 --trunc " + trunc + " --noise-mode const --outdir " + refout);
      ASSERT_EQ(r.rc, 0) << r.out;
      auto s = test::run_styleforge("generate --network " + ckpts[k] + " --seeds 0-3 --trunc " + trunc +
                                    " --noise-mode const --threads 1 --device cpu --outdir " + ours);
      ASSERT_EQ(s.rc, 0) << s.out;
      ImageDiff total;
      for (int seed = 0; seed < 4; ++seed) {
        char name[32];
        std::snprintf(name, sizeof name, "seed%04d.png", seed);
        ImageDiff d = compare_pngs(refout + "/" + name, ours + "/" + name);
        total.max_diff = std::max(total.max_diff, d.max_diff);
        total.values += d.values;
        total.differing += d.differing;
      }
      std::printf("[ export ] %s network, trunc %s: %lld of %lld uint8 values differ, by at most %d\n", tag.c_str(),
                  trunc, static_cast<long long>(total.differing), static_cast<long long>(total.values), total.max_diff);
      EXPECT_GT(total.values, 0);
      EXPECT_LE(total.max_diff, 1) << tag << " trunc " << trunc;
      const int percent = k == 0 ? 1 : 5;
      EXPECT_LE(total.differing * 100, total.values * percent) << tag << " trunc " << trunc << ": over " << percent
                                                               << "% of values differ";
    }
  }
}

// ---- reference pickles where commands take a network ----

TEST(Export, GenerateAndMetricsTakeAReferencePickle) {
  test::ScratchDir dir("pkl_cli");
  const std::string pkl = test::fixture("snapshot_res32.pkl");
  ASSERT_TRUE(fs::exists(pkl)) << pkl;
  trainer::import_network_pickle(pkl, dir / "imported.h5");
  auto temporaries = [] {
    std::set<std::string> out;
    for (const auto& e : fs::directory_iterator(fs::temp_directory_path()))
      if (e.path().filename().string().rfind("styleforge-pkl-", 0) == 0) out.insert(e.path().string());
    return out;
  };
  const std::set<std::string> before = temporaries();
  auto a = test::run_styleforge("generate --network " + pkl + " --seeds 3,5 --threads 1 --device cpu --outdir " +
                                (dir / "from_pkl"));
  ASSERT_EQ(a.rc, 0) << a.out;
  EXPECT_NE(a.out.find("reference network pickle, imported"), std::string::npos) << a.out;
  auto b = test::run_styleforge("generate --network " + (dir / "imported.h5") +
                                " --seeds 3,5 --threads 1 --device cpu --outdir " + (dir / "from_h5"));
  ASSERT_EQ(b.rc, 0) << b.out;
  for (const char* n : {"seed0003.png", "seed0005.png"}) {
    ImageDiff d = compare_pngs(dir / ("from_pkl/" + std::string(n)), dir / ("from_h5/" + std::string(n)));
    EXPECT_EQ(d.differing, 0) << n;  // the same tensors: the same pixels
    EXPECT_GT(d.values, 0);
  }
  EXPECT_EQ(temporaries(), before);  // the temporary import is gone afterwards

  const auto info = trainer::read_checkpoint_info(dir / "imported.h5");
  const std::string reals = dir / "reals.h5";
  data::make_synthetic_pack(reals, 8, info.G.img_resolution, info.G.img_channels, 3, true);
  const std::string common = " --data " + reals + " --metrics fid50k_full --num-gen 8 --batch 8 --batch-gen 4 "
                             "--threads 1 --device cpu -q --no-cache --detector " + test::fixture("detector_standin.pt");
  auto m1 = test::run_styleforge("metrics --network " + pkl + common);
  ASSERT_EQ(m1.rc, 0) << m1.out;
  auto m2 = test::run_styleforge("metrics --network " + (dir / "imported.h5") + common);
  ASSERT_EQ(m2.rc, 0) << m2.out;
  auto fid = [](const std::string& out) {
    const size_t p = out.find("\"fid8_full@detector_standin\":");
    return p == std::string::npos ? std::string("(none)") : out.substr(p, out.find_first_of(",}", p) - p);
  };
  EXPECT_NE(fid(m1.out), "(none)") << m1.out;
  EXPECT_EQ(fid(m1.out), fid(m2.out));
}

// ---- pack paths ----

TEST(PackPath, StoredRelativePathIsFoundFromTheRunDirectory) {
  test::ScratchDir dir("packpath");
  const std::string project = dir / "project";
  fs::create_directories(project + "/runs");
  data::make_synthetic_pack(project + "/runs/phantoms.h5", 8, 8, 1, 1, true);
  // Training started in `project` with --data runs/phantoms.h5 --outdir runs.
  const std::string ckpt = project + "/runs/00000-x/network-snapshot-000000.h5";
  fs::create_directories(fs::path(ckpt).parent_path());
  const std::string hash = data::PackReader(project + "/runs/phantoms.h5").info().content_hash;
  const std::string found = data::resolve_stored_pack("runs/phantoms.h5", ckpt, hash);
  EXPECT_EQ(fs::weakly_canonical(found), fs::weakly_canonical(project + "/runs/phantoms.h5"));
  // Another pack of that name and path with other content is never taken.
  data::make_synthetic_pack(project + "/runs/00000-x/runs/phantoms.h5", 8, 8, 1, 2, true);
  EXPECT_EQ(fs::weakly_canonical(data::resolve_stored_pack("runs/phantoms.h5", ckpt, hash)),
            fs::weakly_canonical(project + "/runs/phantoms.h5"));
  try {
    data::resolve_stored_pack("runs/other.h5", ckpt, hash);
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("runs/other.h5"), std::string::npos) << m;
    EXPECT_NE(m.find("--data"), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
}

TEST(PackPath, MetricsAndResumeFindTheRunsPackFromElsewhere) {
  test::ScratchDir dir("packpath_cli");
  const std::string project = dir / "project";
  fs::create_directories(project + "/runs");
  data::make_synthetic_pack(project + "/runs/ph.h5", 16, 16, 1, 4, true);
  const std::string tiny = " --cbase 256 --cmax 32 --map 2 --batch 4 --threads 1 --metrics none --aug noaug --snap 1 --tick 0.004";
  auto t = test::run_shell("cd " + project + " && " STYLEFORGE_BINARY " train --data runs/ph.h5 --outdir runs --kimg 0.004" +
                           tiny);
  ASSERT_EQ(t.rc, 0) << t.out;
  std::string run_dir;
  for (const auto& e : fs::directory_iterator(project + "/runs"))
    if (e.is_directory()) run_dir = e.path().string();
  const auto snaps = trainer::list_snapshots(run_dir);
  ASSERT_FALSE(snaps.empty()) << t.out;
  const std::string ckpt = snaps.back();
  ASSERT_EQ(trainer::read_checkpoint_info(ckpt).options->data, "runs/ph.h5");
  // From another folder: metrics without --data, and a resumed run, find runs/ph.h5 of the project.
  const std::string elsewhere = dir / "elsewhere";
  fs::create_directories(elsewhere);
  auto m = test::run_shell("cd " + elsewhere + " && " STYLEFORGE_BINARY " metrics --network " + ckpt +
                           " --metrics fid50k_full --num-gen 8 --batch 8 --batch-gen 4 --threads 1 --device cpu -q "
                           "--no-cache --detector " + test::fixture("detector_standin.pt"));
  EXPECT_EQ(m.rc, 0) << m.out;
  EXPECT_NE(m.out.find("fid8_full@detector_standin"), std::string::npos) << m.out;
  auto r = test::run_shell("cd " + elsewhere + " && " STYLEFORGE_BINARY " train --resume " + ckpt +
                           " --kimg 0.008 --threads 1");
  EXPECT_EQ(r.rc, 0) << r.out;
}

TEST(PackPath, TrainRefusesAFolderOrZipOrPacksItWhenAsked) {
  test::ScratchDir dir("pack_if_needed");
  const std::string src = dir / "faces";
  fs::create_directories(src);
  data::Image img;
  img.width = img.height = 16;
  img.channels = 3;
  for (int i = 0; i < 6; ++i) {
    img.pixels.assign(16 * 16 * 3, static_cast<uint8_t>(40 * i));
    data::write_png_file(src + "/img" + std::to_string(i) + ".png", img);
  }
  const std::string tiny = " --cbase 256 --cmax 32 --map 2 --batch 2 --threads 1 --metrics none --aug noaug --kimg 0.002 --tick 0.002";
  auto refused = test::run_styleforge("train --data " + src + " --outdir " + (dir / "runs") + tiny);
  EXPECT_EQ(refused.rc, 2) << refused.out;
  EXPECT_NE(refused.out.find("styleforge pack --source " + src + " --dest " + src + ".h5"), std::string::npos)
      << refused.out;
  EXPECT_EQ(std::count(refused.out.begin(), refused.out.end(), '\n'), 1) << refused.out;
  EXPECT_FALSE(fs::exists(dir / "runs"));
  ASSERT_EQ(test::run_shell("cd " + dir.path.string() + " && /usr/bin/python3 -m zipfile -c faces.zip faces/").rc, 0);
  auto zip = test::run_styleforge("train --data " + (dir / "faces.zip") + " --outdir " + (dir / "runs") + tiny);
  EXPECT_EQ(zip.rc, 2) << zip.out;
  EXPECT_NE(zip.out.find("--dest " + (dir / "faces.h5")), std::string::npos) << zip.out;

  auto packed = test::run_styleforge("train --data " + src + " --outdir " + (dir / "runs") + " --pack-if-needed" + tiny);
  ASSERT_EQ(packed.rc, 0) << packed.out;
  EXPECT_NE(packed.out.find("packing " + src + " to " + (dir / "runs/faces.h5")), std::string::npos) << packed.out;
  EXPECT_EQ(data::PackReader(dir / "runs/faces.h5").info().num_images, 6);
  auto reused = test::run_styleforge("train --data " + src + " --outdir " + (dir / "runs") + " --pack-if-needed" + tiny);
  ASSERT_EQ(reused.rc, 0) << reused.out;
  EXPECT_NE(reused.out.find("is up to date"), std::string::npos) << reused.out;
}
