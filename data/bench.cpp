#include "data/bench.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iterator>
#include <random>
#include <stdexcept>

#include "data/image.h"
#include "data/pack.h"

namespace fs = std::filesystem;

namespace sf::data {

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.empty() ? 0.0 : v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

using Clock = std::chrono::steady_clock;

// Runs `work(rank, world)` in `world` child processes; each returns its images/s through a pipe.
double run_ranks(int world, const std::function<double(int, int)>& work) {
  std::vector<int> fds;
  std::vector<pid_t> pids;
  for (int r = 0; r < world; ++r) {
    int p[2];
    if (pipe(p) != 0) throw std::runtime_error("bench-data: pipe failed");
    pid_t pid = fork();
    if (pid < 0) throw std::runtime_error("bench-data: fork failed");
    if (pid == 0) {
      close(p[0]);
      double rate = -1;
      try {
        rate = work(r, world);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "bench-data rank %d: %s\n", r, e.what());
      }
      ssize_t w = write(p[1], &rate, sizeof rate);
      (void)w;
      close(p[1]);
      _exit(rate >= 0 ? 0 : 1);
    }
    close(p[1]);
    fds.push_back(p[0]);
    pids.push_back(pid);
  }
  double total = 0;
  bool ok = true;
  for (int r = 0; r < world; ++r) {
    double rate = -1;
    if (read(fds[static_cast<size_t>(r)], &rate, sizeof rate) != sizeof rate) rate = -1;
    close(fds[static_cast<size_t>(r)]);
    int status = 0;
    waitpid(pids[static_cast<size_t>(r)], &status, 0);
    if (rate < 0) ok = false;
    total += rate;
  }
  if (!ok) throw std::runtime_error("bench-data: a reader rank failed");
  return total;
}

// Reads batches of this rank's shard (images r, r+W, ...) until `seconds` pass; returns images/s.
double read_loop(int64_t n, int rank, int world, int batch, double seconds,
                 const std::function<void(int64_t, int)>& read_one) {
  int64_t next = rank, done = 0;
  auto t0 = Clock::now();
  double elapsed = 0;
  while (elapsed < seconds) {
    for (int k = 0; k < batch; ++k) {
      read_one(next, k);
      next += world;
      if (next >= n) next = rank;
    }
    done += batch;
    elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  }
  return static_cast<double>(done) / elapsed;
}

}  // namespace

std::vector<BenchResult> bench_data(const BenchOptions& opts, std::ostream& log) {
  PackInfo info;
  int64_t n;
  std::string png_dir = opts.png_dir;
  bool made_png = false;
  {
    PackReader pack(opts.pack);
    info = pack.info();
    n = std::min<int64_t>(pack.size(), opts.max_images > 0 ? opts.max_images : pack.size());
    if (png_dir.empty()) {
      png_dir = (fs::temp_directory_path() / ("sf_bench_png_" + std::to_string(getpid()))).string();
      fs::create_directories(png_dir);
      made_png = true;
      std::vector<uint8_t> chw(info.image_bytes());
      uint64_t png_bytes = 0;
      for (int64_t i = 0; i < n; ++i) {
        pack.read_image(i, chw.data());
        Image img = chw_to_image(chw.data(), info.channels, info.resolution, info.resolution);
        auto bytes = encode_png(img, opts.png_compress_level);
        png_bytes += bytes.size();
        char name[32];
        std::snprintf(name, sizeof name, "img%08lld.png", static_cast<long long>(i));
        std::ofstream(fs::path(png_dir) / name, std::ios::binary)
            .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
      }
      log << "bench-data: " << n << " images " << info.resolution << "x" << info.resolution << "x" << info.channels
          << " from " << opts.pack << "; PNG copies (compress level " << opts.png_compress_level << ", "
          << std::fixed << std::setprecision(1) << png_bytes / double(n) / 1024 << " KiB each) in " << png_dir << "\n";
    }
  }
  std::vector<std::string> files;
  for (int64_t i = 0; i < n; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "img%08lld.png", static_cast<long long>(i));
    files.push_back((fs::path(png_dir) / name).string());
  }
  const size_t bytes = info.image_bytes();
  const int batch = opts.batch;
  bool verify = true, verify_every = false;
  auto hdf5 = [&](int rank, int world) {
    PackReader pack(opts.pack);
    pack.set_verify_checksums(verify, verify_every);
    std::vector<uint8_t> buf(bytes * static_cast<size_t>(batch));
    read_loop(n, rank, world, batch, 0.2, [&](int64_t i, int k) { pack.read_image(i, buf.data() + bytes * static_cast<size_t>(k)); });
    return read_loop(n, rank, world, batch, opts.seconds,
                     [&](int64_t i, int k) { pack.read_image(i, buf.data() + bytes * static_cast<size_t>(k)); });
  };
  auto png = [&](int rank, int world) {
    std::vector<uint8_t> buf(bytes * static_cast<size_t>(batch));
    auto one = [&](int64_t i, int k) {
      std::ifstream f(files[static_cast<size_t>(i)], std::ios::binary);
      std::vector<uint8_t> data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
      Image img = decode_image(data.data(), data.size(), files[static_cast<size_t>(i)]);
      hwc_to_chw(img, buf.data() + bytes * static_cast<size_t>(k));
    };
    read_loop(n, rank, world, batch, 0.2, one);
    return read_loop(n, rank, world, batch, opts.seconds, one);
  };
  std::vector<BenchResult> out;
  for (int world : opts.ranks) {
    BenchResult r;
    r.ranks = world;
    r.hdf5_images_per_s = run_ranks(world, hdf5);
    if (opts.checksum_cost) {
      // Side by side: verified (every read) and unverified alternated in pairs, median reported.
      std::vector<double> unverified;
      for (int p = 0; p < 5; ++p) {
        verify = verify_every = true;
        const double v = run_ranks(world, hdf5);
        verify = verify_every = false;
        const double u = run_ranks(world, hdf5);
        unverified.push_back(u);
        r.checksum_cost_pairs.push_back(1.0 - v / u);
      }
      verify = true;
      r.checksum_cost = median(r.checksum_cost_pairs);
      r.hdf5_unverified_images_per_s = median(unverified);
    }
    r.png_images_per_s = run_ranks(world, png);
    log << "bench-data: " << info.resolution << "x" << info.resolution << "x" << info.channels << " batch " << batch
        << ", " << world << " reader rank" << (world > 1 ? "s" : "") << ": HDF5 " << std::fixed << std::setprecision(0)
        << r.hdf5_images_per_s << " images/s, PNG " << r.png_images_per_s << " images/s, ratio " << std::setprecision(1)
        << r.hdf5_images_per_s / r.png_images_per_s << "x";
    if (r.hdf5_unverified_images_per_s > 0)
      log << "; without checksum verification " << std::setprecision(0) << r.hdf5_unverified_images_per_s
          << " images/s; verifying every read costs " << std::setprecision(1) << 100.0 * r.checksum_cost
          << " % (median of " << r.checksum_cost_pairs.size() << " alternated pairs:";
    for (double c : r.checksum_cost_pairs) log << " " << 100.0 * c;
    if (r.hdf5_unverified_images_per_s > 0) log << ")";
    log << "\n";
    out.push_back(r);
  }
  if (made_png) fs::remove_all(png_dir);
  return out;
}

void make_synthetic_pack(const std::string& dest, int64_t n, int res, int channels, uint32_t seed, bool force) {
  PackWriter::Options o;
  o.force = force;
  o.importer_json = "{\"source_kind\": \"synthetic\", \"seed\": " + std::to_string(seed) + "}";
  PackWriter w(dest, o);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<uint8_t> chw(static_cast<size_t>(channels) * res * res);
  for (int64_t i = 0; i < n; ++i) {
    for (int c = 0; c < channels; ++c) {
      // A few random plane waves plus mild noise: smooth like photographs or MRI slices.
      double fx[4], fy[4], ph[4], amp[4];
      for (int k = 0; k < 4; ++k) {
        fx[k] = (u(rng) - 0.5) * 0.2;
        fy[k] = (u(rng) - 0.5) * 0.2;
        ph[k] = u(rng) * 6.283;
        amp[k] = 20 + 20 * u(rng);
      }
      for (int y = 0; y < res; ++y)
        for (int x = 0; x < res; ++x) {
          double v = 128;
          for (int k = 0; k < 4; ++k) v += amp[k] * std::sin(fx[k] * x + fy[k] * y + ph[k]);
          v += (u(rng) - 0.5) * 8;
          chw[(static_cast<size_t>(c) * res + y) * res + x] = static_cast<uint8_t>(std::clamp(v, 0.0, 255.0));
        }
    }
    w.add(chw.data(), channels, res, "synthetic#" + std::to_string(i), Label{});
  }
  w.commit();
}

}  // namespace sf::data
