// Prefetching batch loader over a dataset pack: a background thread reads uint8 image batches
// (and their labels) from the pack in the order given by an index source, typically a rank's
// sharding::InfiniteSampler, and keeps up to `prefetch` batches ready so that training never
// waits on disk.
//
// Indices in [N, 2N) stand for image idx-N mirrored left-right (the reference's x-flip). The
// index source is called on the loader thread only. BatchLoader owns its thread and its
// PackReader (its own HDF5 handle); next() must be called from one consumer thread. Reader errors
// are rethrown by next(). The destructor stops and joins the thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "data/pack.h"

namespace sf::data {

struct Batch {
  int64_t size = 0;
  int channels = 0, resolution = 0, label_dim = 0;
  std::vector<uint8_t> images;   // [size, C, R, R]
  std::vector<float> labels;     // [size, label_dim]: one-hot classes or stored vectors
  std::vector<int64_t> indices;  // the sampler indices of the batch (>= N: mirrored)
};

// Mirrors a [C, R, R] image left-right in place.
void xflip_image(uint8_t* chw, int channels, int resolution);

class BatchLoader {
 public:
  struct Options {
    int batch = 32;
    int prefetch = 2;  // batches kept ready
  };
  BatchLoader(const std::string& pack_path, std::function<int64_t()> next_index, Options opts);
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  const PackInfo& info() const { return info_; }
  Batch next();

 private:
  void run();
  std::unique_ptr<PackReader> reader_;
  PackInfo info_;
  std::function<int64_t()> next_index_;
  Options opts_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Batch> ready_;
  std::exception_ptr error_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace sf::data
