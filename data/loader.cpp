#include "data/loader.h"

#include <algorithm>

namespace sf::data {

void xflip_image(uint8_t* chw, int channels, int resolution) {
  for (int c = 0; c < channels; ++c)
    for (int y = 0; y < resolution; ++y) {
      uint8_t* row = chw + (static_cast<size_t>(c) * resolution + y) * resolution;
      std::reverse(row, row + resolution);
    }
}

BatchLoader::BatchLoader(const std::string& pack_path, std::function<int64_t()> next_index, Options opts)
    : reader_(std::make_unique<PackReader>(pack_path)), info_(reader_->info()), next_index_(std::move(next_index)),
      opts_(opts) {
  if (opts_.batch <= 0) throw PackError(pack_path + ": batch size must be positive");
  opts_.prefetch = std::max(1, opts_.prefetch);
  thread_ = std::thread([this] { run(); });
}

BatchLoader::~BatchLoader() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void BatchLoader::run() {
  const int64_t n = info_.num_images;
  const size_t bytes = info_.image_bytes();
  try {
    while (true) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || static_cast<int>(ready_.size()) < opts_.prefetch; });
        if (stop_) return;
      }
      Batch b;
      b.size = opts_.batch;
      b.channels = info_.channels;
      b.resolution = info_.resolution;
      b.label_dim = info_.label_dim;
      b.images.resize(bytes * static_cast<size_t>(opts_.batch));
      b.labels.resize(static_cast<size_t>(info_.label_dim) * static_cast<size_t>(opts_.batch));
      b.indices.resize(static_cast<size_t>(opts_.batch));
      for (int k = 0; k < opts_.batch; ++k) {
        int64_t idx = next_index_();
        if (idx < 0 || idx >= 2 * n) throw PackError(info_.path + ": sampler index " + std::to_string(idx) + " out of range");
        b.indices[static_cast<size_t>(k)] = idx;
        int64_t img = idx % n;
        uint8_t* dst = b.images.data() + bytes * static_cast<size_t>(k);
        reader_->read_image(img, dst);
        if (idx >= n) xflip_image(dst, info_.channels, info_.resolution);
        if (info_.label_dim > 0) reader_->label_as_float(img, b.labels.data() + static_cast<size_t>(k) * info_.label_dim);
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        ready_.push_back(std::move(b));
      }
      cv_.notify_all();
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(mu_);
    error_ = std::current_exception();
    cv_.notify_all();
  }
}

Batch BatchLoader::next() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !ready_.empty() || error_; });
  if (ready_.empty() && error_) std::rethrow_exception(error_);
  Batch b = std::move(ready_.front());
  ready_.pop_front();
  lock.unlock();
  cv_.notify_all();
  return b;
}

}  // namespace sf::data
