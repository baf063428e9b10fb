// The one translation unit that includes <torch/script.h> (TorchScript loading is expensive to compile).
#include "metrics/detector.h"

#include <c10/core/GradMode.h>
#include <torch/script.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <stdexcept>

#include "data/hash.h"

namespace fs = std::filesystem;

namespace sf::metrics {

DetectorLocation locate_detector(const std::string& explicit_path, const std::string& cache_dir) {
  DetectorLocation loc;
  auto found = [&](const std::string& p, const char* source) {
    loc.found = true;
    loc.path = p;
    loc.source = source;
    return loc;
  };
  const std::string cached = (fs::path(cache_dir) / kStandardDetectorFile).string();
  const std::string where = "put " + std::string(kStandardDetectorFile) + " (" + kStandardDetectorUrl + ") at " +
                            cached + ", or name a detector file with --detector PATH or $" + kDetectorEnv;
  if (!explicit_path.empty()) {
    if (fs::is_regular_file(explicit_path)) return found(explicit_path, "--detector");
    loc.message = "metrics off: detector " + explicit_path + " does not exist; " + where;
    return loc;
  }
  if (const char* env = std::getenv(kDetectorEnv); env && *env) {
    if (fs::is_regular_file(env)) return found(env, "$STYLEFORGE_DETECTOR");
    loc.message = "metrics off: $" + std::string(kDetectorEnv) + "=" + env + " does not exist; " + where;
    return loc;
  }
  if (fs::is_regular_file(cached)) return found(cached, "cache");
  loc.message = "metrics off: no feature detector found; " + where;
  return loc;
}

struct Detector::Impl {
  std::string path, name, hash;
  c10::Device device = c10::Device(c10::kCPU);
  torch::jit::Module module;
  std::mutex mu;
};

Detector::Detector(const std::string& path, c10::Device device) : impl_(std::make_unique<Impl>()) {
  impl_->path = path;
  impl_->device = device;
  impl_->name = fs::path(path).stem().string();
  try {
    impl_->module = torch::jit::load(path, device);
  } catch (const std::exception& e) {
    std::string what = e.what();
    if (size_t nl = what.find('\n'); nl != std::string::npos) what = what.substr(0, nl);
    throw std::runtime_error("detector " + path + ": cannot load it as TorchScript: " + what);
  }
  impl_->module.eval();
}

Detector::~Detector() = default;

const std::string& Detector::path() const { return impl_->path; }
const std::string& Detector::name() const { return impl_->name; }
bool Detector::is_standard() const { return fs::path(impl_->path).filename() == kStandardDetectorFile; }

const std::string& Detector::file_hash() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  if (impl_->hash.empty()) {
    std::ifstream in(impl_->path, std::ios::binary);
    if (!in) throw std::runtime_error("detector " + impl_->path + ": cannot read it");
    data::Sha256 h;
    std::vector<char> buf(1 << 20);
    while (in) {
      in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      h.update(buf.data(), static_cast<size_t>(in.gcount()));
    }
    impl_->hash = "sha256:" + h.hex_digest();
  }
  return impl_->hash;
}

at::Tensor Detector::features(const at::Tensor& images) {
  if (images.dim() != 4 || images.scalar_type() != at::kByte)
    throw std::invalid_argument("detector: images must be uint8 [N, C, H, W]");
  if (images.size(1) != 1 && images.size(1) != 3)
    throw std::invalid_argument("detector: images must have 1 or 3 channels, got " + std::to_string(images.size(1)) +
                                " (other counts go per channel, see metrics/metrics.h)");
  at::Tensor x = images.size(1) == 1 ? images.repeat({1, 3, 1, 1}) : images;
  std::lock_guard<std::mutex> lock(impl_->mu);
  c10::NoGradGuard no_grad;
  torch::jit::Kwargs kw{{"return_features", true}};
  c10::IValue out = impl_->module.forward({x.to(impl_->device).contiguous()}, kw);
  if (!out.isTensor()) throw std::runtime_error("detector " + impl_->path + ": forward did not return a tensor");
  at::Tensor f = out.toTensor();
  if (f.dim() != 2 || f.size(0) != images.size(0))
    throw std::runtime_error("detector " + impl_->path + ": features of shape " + c10::str(f.sizes()) +
                             ", expected [" + std::to_string(images.size(0)) + ", F]");
  return f.to(at::kFloat).cpu().clone();
}

at::Tensor to_uint8_images(const at::Tensor& img) {
  return (img.detach() * 127.5 + 128).clamp(0, 255).to(at::kByte);
}

}  // namespace sf::metrics
