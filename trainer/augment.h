// The adaptive discriminator augmentation (ADA) pipeline of StyleGAN2-ADA.
//
// AugmentPipe applies, to each image of a batch independently, the reference's 18 transforms in
// its fixed order: pixel blitting (x-flip, 90-degree rotations, integer translation) and general
// geometry (isotropic scaling, pre-rotation, anisotropic scaling, post-rotation, fractional
// translation) composed into one inverse affine transform and executed as a single resampling
// (reflect padding, 2x upsampling with the sym6 wavelet, bilinear sampling, 2x downsampling);
// colour (brightness, contrast, luma flip, hue rotation, saturation) composed into one 4x4
// matrix; image-space filtering with a 4-band filter bank; additive noise; cutout. Each transform
// is applied with probability multiplier * p, where p is the overall augmentation strength that
// ADA adjusts during training.
//
// Channels: any count C. For C = 1 and C = 3 the colour transforms are the reference's exactly.
// For other C they act on a (C+1) x (C+1) homogeneous matrix built from the same draws:
// brightness and contrast on every channel, luma flip and saturation about the axis
// v = ones(C) / sqrt(C) (the reference's RGB axis is [1,1,1] / sqrt(3)); hue rotation exists only
// for RGB and is skipped for other C (no draws), as the reference skips it for C = 1. Geometric
// transforms, filtering, noise and cutout act on each channel alike for any C.
//
// The result is differentiable with respect to the images to second order (R1 is taken through
// the pipe), using grid_sample_2d for the resampling. Transform parameters are drawn in float32 as
// the reference draws them, in the reference's order, from the generator passed to forward(), so
// a run resumed with the same generator state draws the same augmentations. With a
// debug_percentile q in [0, 1), every enabled transform is applied with its parameter at
// percentile q (the reference's debugging mode, used by the reference fixtures).
//
// Thread-safety: forward() is const and may be called concurrently (each call with its own
// generator); set_p() must not race with forward().
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <nlohmann/json.hpp>

#include <optional>
#include <mutex>
#include <string>
#include <vector>

namespace sf::trainer {

// Constructor settings of the reference's AugmentPipe, with its names and defaults. Multipliers
// are probabilities relative to p (0 disables a transform); the other values set ranges.
struct AugmentConfig {
  // Pixel blitting.
  double xflip = 0;        // probability multiplier for x-flip
  double rotate90 = 0;     // ... for 90-degree rotations
  double xint = 0;         // ... for integer translation
  double xint_max = 0.125; // range of integer translation, relative to the image size
  // General geometric transformations.
  double scale = 0;         // ... for isotropic scaling
  double rotate = 0;        // ... for arbitrary rotation
  double aniso = 0;         // ... for anisotropic scaling
  double xfrac = 0;         // ... for fractional translation
  double scale_std = 0.2;   // log2 standard deviation of isotropic scaling
  double rotate_max = 1;    // range of arbitrary rotation, 1 = full circle
  double aniso_std = 0.2;   // log2 standard deviation of anisotropic scaling
  double xfrac_std = 0.125; // standard deviation of fractional translation, relative to the image size
  // Colour transformations.
  double brightness = 0;
  double contrast = 0;
  double lumaflip = 0;
  double hue = 0;
  double saturation = 0;
  double brightness_std = 0.2;  // standard deviation of brightness
  double contrast_std = 0.5;    // log2 standard deviation of contrast
  double hue_max = 1;           // range of hue rotation, 1 = full circle
  double saturation_std = 1;    // log2 standard deviation of saturation
  // Image-space filtering.
  double imgfilter = 0;
  std::vector<double> imgfilter_bands = {1, 1, 1, 1};  // multipliers of the 4 frequency bands
  double imgfilter_std = 1;                            // log2 standard deviation of band amplification
  // Image-space corruptions.
  double noise = 0;
  double cutout = 0;
  double noise_std = 0.1;    // standard deviation of additive RGB noise
  double cutout_size = 0.5;  // size of the cutout rectangle, relative to the image size

  // The reference train.py's --augpipe presets: blit, geom, color, filter, noise, cutout, bg,
  // bgc, bgcf, bgcfn, bgcfnc. Throws std::invalid_argument (listing the valid names) otherwise.
  static AugmentConfig from_pipeline(const std::string& name);
  static std::vector<std::string> pipeline_names();
  // Keyword arguments of the reference constructor (missing keys keep their defaults; the key
  // "class_name" of the reference's augment_kwargs is ignored). Throws std::invalid_argument on
  // an unknown key or a bad value.
  static AugmentConfig from_json(const nlohmann::json& multipliers);
  nlohmann::json to_json() const;  // every setting, reference names
  void validate() const;           // throws std::invalid_argument
};

class AugmentPipe {
 public:
  explicit AugmentPipe(AugmentConfig config);

  const AugmentConfig& config() const { return config_; }
  // Overall augmentation strength (the reference's `p` buffer, used in float32). Starts at 1, as
  // in the reference; training sets it (ADA or a fixed --p).
  void set_p(double p);
  double p() const { return p_; }

  // images: [N, C, H, W] with any C (see above), float32 (float64 is
  // accepted: parameters are still drawn in float32). Random draws use `gen` (on its device; an
  // undefined generator means LibTorch's default one) and are moved to the images' device.
  at::Tensor forward(const at::Tensor& images, at::Generator gen,
                     std::optional<double> debug_percentile = std::nullopt) const;

 private:
  AugmentConfig config_;
  double p_ = 1;
  at::Tensor hz_geom_;   // [12] float32: sym6 low-pass, normalised (separable)
  at::Tensor hz_fbank_;  // [4, 43] float32: band-pass filter bank built from sym2
  mutable std::mutex cache_mu_;
  mutable at::Tensor hz_fbank_dev_;  // hz_fbank_ on the device of the last call (under cache_mu_)
};

}  // namespace sf::trainer
