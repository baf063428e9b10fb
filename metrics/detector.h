// Feature detectors: TorchScript networks with the calling convention of the reference's FID
// detector, `forward(img_uint8_nchw, return_features=True) -> float32 [N, F]`.
//
// The standard detector is the reference's TorchScript Inception-v3, `inception-2015-12-05.pt`.
// locate_detector() finds a detector file: an explicit path when one is given, else
// $STYLEFORGE_DETECTOR, else `<cache dir>/inception-2015-12-05.pt`; when none exists it returns a
// one-paragraph message saying where to put the file (callers turn metrics off with it, they do
// not fail a training run).
//
// Thread-safety: a Detector serialises its own forward calls (one mutex), so sharing one is safe
// but not parallel; use one Detector per thread for parallel evaluation. It owns its module.
#pragma once

#include <c10/core/Device.h>

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>

namespace sf::metrics {

inline constexpr const char* kStandardDetectorFile = "inception-2015-12-05.pt";
inline constexpr const char* kStandardDetectorUrl =
    "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt";
inline constexpr const char* kDetectorEnv = "STYLEFORGE_DETECTOR";

struct DetectorLocation {
  bool found = false;
  std::string path;     // the file (when found)
  std::string source;   // "--detector", "$STYLEFORGE_DETECTOR" or "cache"
  std::string message;  // why nothing was found and where to put the file (when not found)
};
DetectorLocation locate_detector(const std::string& explicit_path, const std::string& cache_dir);

class Detector {
 public:
  // Loads the TorchScript file; throws std::runtime_error naming it when it cannot.
  // Loads the module onto `device` (features() takes host or device images, returns host features).
  explicit Detector(const std::string& path, c10::Device device = c10::Device(c10::kCPU));
  ~Detector();
  Detector(const Detector&) = delete;
  Detector& operator=(const Detector&) = delete;

  const std::string& path() const;
  // File stem, e.g. "inception-2015-12-05".
  const std::string& name() const;
  bool is_standard() const;
  // "sha256:<hex>" of the file (keys the real-statistics cache).
  const std::string& file_hash() const;
  // uint8 [N, C, H, W] with C = 1 (repeated to 3, as the reference does) or 3 -> float32 [N, F];
  // other C throw std::invalid_argument (MetricsEvaluator measures those per channel).
  at::Tensor features(const at::Tensor& images);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Generator output in [-1, 1] to uint8 images as the reference converts it:
// (img * 127.5 + 128).clamp(0, 255) cast to uint8 (truncation toward zero).
at::Tensor to_uint8_images(const at::Tensor& img);

}  // namespace sf::metrics
