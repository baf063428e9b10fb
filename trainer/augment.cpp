#include "trainer/augment.h"

#include <ATen/ATen.h>

#include <cmath>
#include <map>
#include <stdexcept>

#include "trainer/grid_sample.h"
#include "trainer/ops.h"

namespace sf::trainer {
namespace {

constexpr double kPi = 3.14159265358979323846;

// Low-pass decomposition filters of the Daubechies symlets with 2 and 6 vanishing moments.
const std::vector<double> kSym2 = {-0.12940952255092145, 0.22414386804185735, 0.836516303737469,
                                   0.48296291314469025};
const std::vector<double> kSym6 = {0.015404109327027373, 0.0034907120842174702, -0.11799011114819057,
                                   -0.048311742585633,   0.4910559419267466,    0.787641141030194,
                                   0.3379294217276218,   -0.07263752278646252,  -0.021060292512300564,
                                   0.04472490177066578,  0.0017677118642428036, -0.007800708325034148};

// Full 1-D convolution.
std::vector<double> convolve(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> out(a.size() + b.size() - 1, 0.0);
  for (size_t i = 0; i < a.size(); ++i)
    for (size_t j = 0; j < b.size(); ++j) out[i + j] += a[i] * b[j];
  return out;
}

// Band-pass filter bank for image-space filtering: row 0 is the lowest band, row b the band
// between 2^-b and 2^-(b-1) of the Nyquist frequency. Each step upsamples every row by 2 (zero
// insertion), filters it with H(z) H(z^-1) / 2 and adds the matching high-pass H(-z) H(-z^-1) / 2
// at the centre of row i, so that the rows sum to a unit impulse. [4, 43] in float32.
at::Tensor build_filter_bank() {
  const size_t bands = 4;
  std::vector<double> lo = kSym2, hi = kSym2;
  for (size_t k = 1; k < hi.size(); k += 2) hi[k] = -hi[k];
  std::vector<double> lo_rev(lo.rbegin(), lo.rend()), hi_rev(hi.rbegin(), hi.rend());
  std::vector<double> lo2 = convolve(lo, lo_rev), hi2 = convolve(hi, hi_rev);
  for (double& x : lo2) x /= 2;
  for (double& x : hi2) x /= 2;
  std::vector<std::vector<double>> bank(bands, std::vector<double>(1, 0.0));
  bank[0][0] = 1;
  for (size_t i = 1; i < bands; ++i) {
    for (auto& row : bank) {
      std::vector<double> up(2 * row.size() - 1, 0.0);
      for (size_t k = 0; k < row.size(); ++k) up[2 * k] = row[k];
      row = convolve(up, lo2);
    }
    const size_t len = bank[i].size(), start = (len - hi2.size()) / 2;
    for (size_t k = 0; k < hi2.size(); ++k) bank[i][start + k] += hi2[k];
  }
  std::vector<float> flat;
  for (const auto& row : bank)
    for (double x : row) flat.push_back(static_cast<float>(x));
  return at::tensor(flat, at::kFloat).reshape({static_cast<int64_t>(bands), -1});
}

// ---- transformation matrices (float32, batched like their tensor entries) ----

// A matrix entry: a tensor (all tensor entries share one shape) or a constant.
struct Entry {
  at::Tensor t;
  double c = 0;
  Entry(at::Tensor x) : t(std::move(x)) {}  // NOLINT(google-explicit-constructor)
  Entry(double x) : c(x) {}                 // NOLINT(google-explicit-constructor)
};
using Rows = std::vector<std::vector<Entry>>;

// [*shape, rows, cols] where shape is that of the tensor entries ([] when all are constants).
at::Tensor matrix(const Rows& rows, const at::TensorOptions& opt) {
  const int64_t nr = static_cast<int64_t>(rows.size()), nc = static_cast<int64_t>(rows[0].size());
  const at::Tensor* ref = nullptr;
  for (const auto& r : rows)
    for (const auto& e : r)
      if (!ref && e.t.defined()) ref = &e.t;
  if (!ref) {
    std::vector<float> v;
    for (const auto& r : rows)
      for (const auto& e : r) v.push_back(static_cast<float>(e.c));
    return at::tensor(v, opt).reshape({nr, nc});
  }
  std::vector<at::Tensor> elems;
  for (const auto& r : rows)
    for (const auto& e : r) elems.push_back(e.t.defined() ? e.t : at::full(ref->sizes(), e.c, opt));
  std::vector<int64_t> shape = ref->sizes().vec();
  shape.push_back(nr);
  shape.push_back(nc);
  return at::stack(elems, -1).reshape(shape);
}

at::Tensor translate2d(Entry tx, Entry ty, const at::TensorOptions& o) {
  return matrix({{1.0, 0.0, tx}, {0.0, 1.0, ty}, {0.0, 0.0, 1.0}}, o);
}
at::Tensor scale2d(Entry sx, Entry sy, const at::TensorOptions& o) {
  return matrix({{sx, 0.0, 0.0}, {0.0, sy, 0.0}, {0.0, 0.0, 1.0}}, o);
}
at::Tensor rotate2d(const at::Tensor& theta, const at::TensorOptions& o) {
  return matrix({{at::cos(theta), at::sin(-theta), 0.0}, {at::sin(theta), at::cos(theta), 0.0}, {0.0, 0.0, 1.0}}, o);
}
at::Tensor translate2d_inv(const at::Tensor& tx, const at::Tensor& ty, const at::TensorOptions& o) {
  return translate2d(-tx, -ty, o);
}
at::Tensor scale2d_inv(const at::Tensor& sx, const at::Tensor& sy, const at::TensorOptions& o) {
  return scale2d(at::reciprocal(sx), at::reciprocal(sy), o);
}
at::Tensor rotate2d_inv(const at::Tensor& theta, const at::TensorOptions& o) { return rotate2d(-theta, o); }

at::Tensor translate3d(Entry tx, Entry ty, Entry tz, const at::TensorOptions& o) {
  return matrix({{1.0, 0.0, 0.0, tx}, {0.0, 1.0, 0.0, ty}, {0.0, 0.0, 1.0, tz}, {0.0, 0.0, 0.0, 1.0}}, o);
}
at::Tensor scale3d(Entry sx, Entry sy, Entry sz, const at::TensorOptions& o) {
  return matrix({{sx, 0.0, 0.0, 0.0}, {0.0, sy, 0.0, 0.0}, {0.0, 0.0, sz, 0.0}, {0.0, 0.0, 0.0, 1.0}}, o);
}
// Rotation by theta around the unit axis v (the first three entries of v).
at::Tensor rotate3d(const at::Tensor& v, const at::Tensor& theta, const at::TensorOptions& o) {
  at::Tensor vx = v.select(-1, 0), vy = v.select(-1, 1), vz = v.select(-1, 2);
  at::Tensor s = at::sin(theta), c = at::cos(theta), cc = at::rsub(c, 1);
  return matrix({{vx * vx * cc + c, vx * vy * cc - vz * s, vx * vz * cc + vy * s, 0.0},
                 {vy * vx * cc + vz * s, vy * vy * cc + c, vy * vz * cc - vx * s, 0.0},
                 {vz * vx * cc - vy * s, vz * vy * cc + vx * s, vz * vz * cc + c, 0.0},
                 {0.0, 0.0, 0.0, 1.0}},
                o);
}

// ---- config -------------------------------------------------------------------------------

using Field = double AugmentConfig::*;
const std::vector<std::pair<const char*, Field>>& scalar_fields() {
  static const std::vector<std::pair<const char*, Field>> f = {
      {"xflip", &AugmentConfig::xflip},
      {"rotate90", &AugmentConfig::rotate90},
      {"xint", &AugmentConfig::xint},
      {"xint_max", &AugmentConfig::xint_max},
      {"scale", &AugmentConfig::scale},
      {"rotate", &AugmentConfig::rotate},
      {"aniso", &AugmentConfig::aniso},
      {"xfrac", &AugmentConfig::xfrac},
      {"scale_std", &AugmentConfig::scale_std},
      {"rotate_max", &AugmentConfig::rotate_max},
      {"aniso_std", &AugmentConfig::aniso_std},
      {"xfrac_std", &AugmentConfig::xfrac_std},
      {"brightness", &AugmentConfig::brightness},
      {"contrast", &AugmentConfig::contrast},
      {"lumaflip", &AugmentConfig::lumaflip},
      {"hue", &AugmentConfig::hue},
      {"saturation", &AugmentConfig::saturation},
      {"brightness_std", &AugmentConfig::brightness_std},
      {"contrast_std", &AugmentConfig::contrast_std},
      {"hue_max", &AugmentConfig::hue_max},
      {"saturation_std", &AugmentConfig::saturation_std},
      {"imgfilter", &AugmentConfig::imgfilter},
      {"imgfilter_std", &AugmentConfig::imgfilter_std},
      {"noise", &AugmentConfig::noise},
      {"cutout", &AugmentConfig::cutout},
      {"noise_std", &AugmentConfig::noise_std},
      {"cutout_size", &AugmentConfig::cutout_size},
  };
  return f;
}

const std::vector<std::pair<std::string, std::vector<Field>>>& pipelines() {
  using C = AugmentConfig;
  static const std::vector<Field> blit = {&C::xflip, &C::rotate90, &C::xint};
  static const std::vector<Field> geom = {&C::scale, &C::rotate, &C::aniso, &C::xfrac};
  static const std::vector<Field> color = {&C::brightness, &C::contrast, &C::lumaflip, &C::hue, &C::saturation};
  auto join = [](std::initializer_list<const std::vector<Field>*> parts) {
    std::vector<Field> out;
    for (const auto* p : parts) out.insert(out.end(), p->begin(), p->end());
    return out;
  };
  static const std::vector<Field> filter = {&C::imgfilter}, noise = {&C::noise}, cutout = {&C::cutout};
  static const std::vector<std::pair<std::string, std::vector<Field>>> p = {
      {"blit", blit},
      {"geom", geom},
      {"color", color},
      {"filter", filter},
      {"noise", noise},
      {"cutout", cutout},
      {"bg", join({&blit, &geom})},
      {"bgc", join({&blit, &geom, &color})},
      {"bgcf", join({&blit, &geom, &color, &filter})},
      {"bgcfn", join({&blit, &geom, &color, &filter, &noise})},
      {"bgcfnc", join({&blit, &geom, &color, &filter, &noise, &cutout})},
  };
  return p;
}

}  // namespace

std::vector<std::string> AugmentConfig::pipeline_names() {
  std::vector<std::string> names;
  for (const auto& [name, _] : pipelines()) names.push_back(name);
  return names;
}

AugmentConfig AugmentConfig::from_pipeline(const std::string& name) {
  for (const auto& [n, fields] : pipelines()) {
    if (n != name) continue;
    AugmentConfig c;
    for (Field f : fields) c.*f = 1;
    return c;
  }
  std::string list;
  for (const auto& n : pipeline_names()) list += (list.empty() ? "" : ", ") + n;
  throw std::invalid_argument("augment: unknown pipeline '" + name + "' (valid: " + list + ")");
}

AugmentConfig AugmentConfig::from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw std::invalid_argument("augment: settings must be a JSON object");
  AugmentConfig c;
  for (const auto& [key, value] : j.items()) {
    if (key == "class_name") continue;
    if (key == "imgfilter_bands") {
      if (!value.is_array()) throw std::invalid_argument("augment: imgfilter_bands must be a list of 4 numbers");
      c.imgfilter_bands.clear();
      for (const auto& x : value) {
        if (!x.is_number()) throw std::invalid_argument("augment: imgfilter_bands must be a list of 4 numbers");
        c.imgfilter_bands.push_back(x.get<double>());
      }
      continue;
    }
    Field field = nullptr;
    for (const auto& [n, f] : scalar_fields())
      if (key == n) field = f;
    if (!field) throw std::invalid_argument("augment: unknown setting '" + key + "'");
    if (!value.is_number() && !value.is_boolean())
      throw std::invalid_argument("augment: setting '" + key + "' must be a number");
    c.*field = value.is_boolean() ? (value.get<bool>() ? 1.0 : 0.0) : value.get<double>();
  }
  c.validate();
  return c;
}

nlohmann::json AugmentConfig::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [n, f] : scalar_fields()) j[n] = this->*f;
  j["imgfilter_bands"] = imgfilter_bands;
  return j;
}

void AugmentConfig::validate() const {
  for (const auto& [n, f] : scalar_fields())
    if (!std::isfinite(this->*f) || this->*f < 0)
      throw std::invalid_argument(std::string("augment: ") + n + " must be a finite number >= 0");
  if (imgfilter_bands.size() != 4) throw std::invalid_argument("augment: imgfilter_bands must have 4 entries");
  for (double b : imgfilter_bands)
    if (!std::isfinite(b) || b < 0) throw std::invalid_argument("augment: imgfilter_bands must be >= 0");
}

// ---- pipe ---------------------------------------------------------------------------------

AugmentPipe::AugmentPipe(AugmentConfig config) : config_(std::move(config)) {
  config_.validate();
  std::vector<float> taps(kSym6.begin(), kSym6.end());
  hz_geom_ = ops::setup_filter(taps);
  hz_fbank_ = build_filter_bank();
}

void AugmentPipe::set_p(double p) {
  if (!std::isfinite(p) || p < 0) throw std::invalid_argument("augment: p must be a finite number >= 0");
  p_ = p;
}

at::Tensor AugmentPipe::forward(const at::Tensor& images_in, at::Generator gen,
                                std::optional<double> debug_percentile) const {
  TORCH_CHECK(images_in.dim() == 4, "augment: images must be [N, C, H, W], got ", images_in.sizes());
  TORCH_CHECK(images_in.is_floating_point(), "augment: images must be floating point");
  const AugmentConfig& k = config_;
  const int64_t batch = images_in.size(0), channels = images_in.size(1);
  const int64_t height = images_in.size(2), width = images_in.size(3);
  at::Tensor images = images_in;
  const at::TensorOptions img_opt = images.options();

  // Parameters are float32 on the generator's device (the reference draws float32 parameters).
  c10::optional<at::Generator> g;
  at::Device pdev = images.device();
  if (gen.defined()) {
    g = gen;
    pdev = gen.device();
  }
  const at::TensorOptions o = at::TensorOptions().dtype(at::kFloat).device(pdev);
  auto rand = [&](at::IntArrayRef s) { return at::rand(s, g, o); };
  auto randn = [&](at::IntArrayRef s) { return at::randn(s, g, o); };
  const float p32 = static_cast<float>(p_);
  // Probability threshold multiplier * p, rounded as the reference's float32 buffer arithmetic.
  auto prob = [&](double mult) { return static_cast<double>(static_cast<float>(mult) * p32); };

  // The percentile as a float32 scalar, and values derived from it with float32 tensor ops.
  at::Tensor q;
  if (debug_percentile) q = at::scalar_tensor(*debug_percentile, at::kFloat);
  auto val = [](const at::Tensor& t) { return t.item<double>(); };
  auto q_normal = [&](double std) { return at::erfinv(q * 2 - 1) * std; };  // normal quantile * std

  // ---------------- geometric transformations ----------------
  // Inverse homogeneous 2-D transform: G_inv @ pixel_out = pixel_in.
  const at::Tensor eye3 = at::eye(3, o);
  at::Tensor G = eye3;
  bool geom = false;

  if (k.xflip > 0) {
    at::Tensor i = at::floor(rand({batch}) * 2);
    i = at::where(rand({batch}) < prob(k.xflip), i, at::zeros_like(i));
    if (q.defined()) i = at::full_like(i, val(at::floor(q * 2)));
    G = at::matmul(G, scale2d_inv(at::rsub(2 * i, 1), at::ones_like(i), o));
    geom = true;
  }
  if (k.rotate90 > 0) {
    at::Tensor i = at::floor(rand({batch}) * 4);
    i = at::where(rand({batch}) < prob(k.rotate90), i, at::zeros_like(i));
    if (q.defined()) i = at::full_like(i, val(at::floor(q * 4)));
    G = at::matmul(G, rotate2d_inv(i * (-kPi / 2), o));
    geom = true;
  }
  if (k.xint > 0) {
    at::Tensor t = (rand({batch, 2}) * 2 - 1) * k.xint_max;
    t = at::where(rand({batch, 1}) < prob(k.xint), t, at::zeros_like(t));
    if (q.defined()) t = at::full_like(t, val((q * 2 - 1) * k.xint_max));
    G = at::matmul(G, translate2d_inv(at::round(t.select(1, 0) * width), at::round(t.select(1, 1) * height), o));
    geom = true;
  }
  if (k.scale > 0) {
    at::Tensor s = at::exp2(randn({batch}) * k.scale_std);
    s = at::where(rand({batch}) < prob(k.scale), s, at::ones_like(s));
    if (q.defined()) s = at::full_like(s, val(at::exp2(q_normal(k.scale_std))));
    G = at::matmul(G, scale2d_inv(s, s, o));
    geom = true;
  }
  // Pre- and post-rotation each with probability p_rot, so that P(pre or post) = rotate * p.
  const float p_rot = 1.0f - std::sqrt(std::min(std::max(1.0f - static_cast<float>(k.rotate) * p32, 0.0f), 1.0f));
  if (k.rotate > 0) {
    at::Tensor theta = (rand({batch}) * 2 - 1) * kPi * k.rotate_max;
    theta = at::where(rand({batch}) < static_cast<double>(p_rot), theta, at::zeros_like(theta));
    if (q.defined()) theta = at::full_like(theta, val((q * 2 - 1) * kPi * k.rotate_max));
    G = at::matmul(G, rotate2d_inv(-theta, o));
    geom = true;
  }
  if (k.aniso > 0) {
    at::Tensor s = at::exp2(randn({batch}) * k.aniso_std);
    s = at::where(rand({batch}) < prob(k.aniso), s, at::ones_like(s));
    if (q.defined()) s = at::full_like(s, val(at::exp2(q_normal(k.aniso_std))));
    G = at::matmul(G, scale2d_inv(s, at::reciprocal(s), o));
    geom = true;
  }
  if (k.rotate > 0) {
    at::Tensor theta = (rand({batch}) * 2 - 1) * kPi * k.rotate_max;
    theta = at::where(rand({batch}) < static_cast<double>(p_rot), theta, at::zeros_like(theta));
    if (q.defined()) theta = at::zeros_like(theta);
    G = at::matmul(G, rotate2d_inv(-theta, o));
  }
  if (k.xfrac > 0) {
    at::Tensor t = randn({batch, 2}) * k.xfrac_std;
    t = at::where(rand({batch, 1}) < prob(k.xfrac), t, at::zeros_like(t));
    if (q.defined()) t = at::full_like(t, val(q_normal(k.xfrac_std)));
    G = at::matmul(G, translate2d_inv(t.select(1, 0) * width, t.select(1, 1) * height, o));
    geom = true;
  }

  if (geom) {
    // Reflect padding that covers the transformed image corners plus the filter support.
    const double cx = (width - 1) / 2.0, cy = (height - 1) / 2.0;
    at::Tensor cp = matrix({{-cx, -cy, 1.0}, {cx, -cy, 1.0}, {cx, cy, 1.0}, {-cx, cy, 1.0}}, o);  // [idx, xyz]
    cp = at::matmul(G, cp.t());                                                                // [batch, xyz, idx]
    const int64_t hz_pad = hz_geom_.size(0) / 4;
    at::Tensor margin = cp.slice(1, 0, 2).permute({1, 0, 2}).flatten(1);  // [xy, batch * idx]
    margin = std::get<0>(at::cat({-margin, margin}).max(1));              // [x0, y0, x1, y1]
    const double ex = hz_pad * 2 - cx, ey = hz_pad * 2 - cy;
    margin = margin + at::tensor(std::vector<float>{float(ex), float(ey), float(ex), float(ey)}, o);
    margin = at::maximum(margin, at::zeros({4}, o));
    margin = at::minimum(margin, at::tensor(std::vector<float>{float(width - 1), float(height - 1),
                                                               float(width - 1), float(height - 1)},
                                            o));
    at::Tensor m = margin.ceil().to(at::kInt).cpu();
    const int64_t mx0 = m[0].item<int>(), my0 = m[1].item<int>(), mx1 = m[2].item<int>(), my1 = m[3].item<int>();

    // Pad and move the origin accordingly.
    images = at::reflection_pad2d(images, {mx0, mx1, my0, my1});
    G = at::matmul(translate2d((mx0 - mx1) / 2.0, (my0 - my1) / 2.0, o), G);

    // Upsample 2x.
    // Host taps: the separable filter path reads them as scalars, so no copy to the device and no
    // device-to-host read per call.
    const at::Tensor& hz = hz_geom_;
    images = ops::upsample2d(images, hz, 2);
    G = at::matmul(at::matmul(scale2d(2.0, 2.0, o), G), scale2d(0.5, 0.5, o));
    G = at::matmul(at::matmul(translate2d(-0.5, -0.5, o), G), translate2d(0.5, 0.5, o));

    // Resample: the affine grid maps normalised output coordinates to normalised input ones.
    const std::vector<int64_t> shape = {batch, channels, (height + hz_pad * 2) * 2, (width + hz_pad * 2) * 2};
    const double in_x = 2.0 / images.size(3), in_y = 2.0 / images.size(2);
    const double out_x = 2.0 / shape[3], out_y = 2.0 / shape[2];
    G = at::matmul(at::matmul(scale2d(in_x, in_y, o), G), scale2d(1.0 / out_x, 1.0 / out_y, o));
    at::Tensor grid = at::affine_grid_generator(G.slice(1, 0, 2), shape, /*align_corners=*/false);
    images = grid_sample_2d(images, grid.to(img_opt));

    // Downsample 2x and crop the padding.
    images = ops::downsample2d(images, hz, 2, ops::Pad::all(static_cast<int>(-hz_pad * 2)), /*flip_filter=*/true);
  }

  // ---------------- colour transformations ----------------
  // The per-image draws of the colour transforms (same order and thresholds for every channel
  // count; with a debug percentile q, its fixed value).
  auto draw_brightness = [&] {
    at::Tensor b = randn({batch}) * k.brightness_std;
    b = at::where(rand({batch}) < prob(k.brightness), b, at::zeros_like(b));
    if (q.defined()) b = at::full_like(b, val(q_normal(k.brightness_std)));
    return b;
  };
  auto draw_contrast = [&] {
    at::Tensor c = at::exp2(randn({batch}) * k.contrast_std);
    c = at::where(rand({batch}) < prob(k.contrast), c, at::ones_like(c));
    if (q.defined()) c = at::full_like(c, val(at::exp2(q_normal(k.contrast_std))));
    return c;
  };
  auto draw_lumaflip = [&] {
    at::Tensor i = at::floor(rand({batch, 1, 1}) * 2);
    i = at::where(rand({batch, 1, 1}) < prob(k.lumaflip), i, at::zeros_like(i));
    if (q.defined()) i = at::full_like(i, val(at::floor(q * 2)));
    return i;
  };
  auto draw_saturation = [&] {
    at::Tensor s = at::exp2(randn({batch, 1, 1}) * k.saturation_std);
    s = at::where(rand({batch, 1, 1}) < prob(k.saturation), s, at::ones_like(s));
    if (q.defined()) s = at::full_like(s, val(at::exp2(q_normal(k.saturation_std))));
    return s;
  };
  if (channels == 1 || channels == 3) {
    // The reference: a 4x4 matrix on RGB (one channel: the mean of its colour rows).
    // Homogeneous 3-D transform: C @ color_in = color_out.
    const at::Tensor eye4 = at::eye(4, o);
    at::Tensor C = eye4;
    bool color = false;

    if (k.brightness > 0) {
      const at::Tensor b = draw_brightness();
      C = at::matmul(translate3d(b, b, b, o), C);
      color = true;
    }
    if (k.contrast > 0) {
      const at::Tensor c = draw_contrast();
      C = at::matmul(scale3d(c, c, c, o), C);
      color = true;
    }
    const double inv_sqrt3 = 1.0 / std::sqrt(3.0);
    const at::Tensor v = at::tensor(std::vector<float>{float(inv_sqrt3), float(inv_sqrt3), float(inv_sqrt3), 0.0f}, o);
    const at::Tensor vv = at::outer(v, v);  // projection onto the luma axis
    if (k.lumaflip > 0) {
      C = at::matmul(eye4 - 2 * vv * draw_lumaflip(), C);  // Householder reflection
      color = true;
    }
    if (k.hue > 0 && channels > 1) {
      at::Tensor theta = (rand({batch}) * 2 - 1) * kPi * k.hue_max;
      theta = at::where(rand({batch}) < prob(k.hue), theta, at::zeros_like(theta));
      if (q.defined()) theta = at::full_like(theta, val((q * 2 - 1) * kPi * k.hue_max));
      C = at::matmul(rotate3d(v, theta, o), C);  // rotation around the luma axis
      color = true;
    }
    if (k.saturation > 0 && channels > 1) {
      C = at::matmul(vv + (eye4 - vv) * draw_saturation(), C);
      color = true;
    }

    if (color) {
      C = C.to(img_opt);
      images = images.reshape({batch, channels, height * width});
      if (channels == 3) {
        images = at::matmul(C.slice(1, 0, 3).slice(2, 0, 3), images) + C.slice(1, 0, 3).slice(2, 3, 4);
      } else {
        // One channel: the mean of the three colour rows acts on the gray value.
        at::Tensor c1 = C.slice(1, 0, 3).mean(1, /*keepdim=*/true);  // [batch, 1, 4]
        images = images * c1.slice(2, 0, 3).sum(2, /*keepdim=*/true) + c1.slice(2, 3, 4);
      }
      images = images.reshape({batch, channels, height, width});
    }
  } else {
    // Any other channel count C: the same draws and thresholds on a (C+1) x (C+1) homogeneous
    // matrix. Brightness and contrast act on every channel; luma flip and saturation use the luma
    // axis v = ones(C) / sqrt(C); hue rotation has no analogue outside RGB and is skipped (no
    // draws), as the reference skips it for one channel.
    const int64_t D = channels + 1;
    const at::Tensor eyeD = at::eye(D, o);
    at::Tensor C = eyeD.unsqueeze(0).repeat({batch, 1, 1});
    bool color = false;
    at::Tensor last_col = at::zeros({D, D}, o), diag_c = at::zeros({D, D}, o);
    last_col.slice(0, 0, channels).select(1, channels).fill_(1);  // ones in the translation column
    diag_c.slice(0, 0, channels).slice(1, 0, channels).copy_(at::eye(channels, o));
    if (k.brightness > 0) {
      C = at::matmul(eyeD + last_col * draw_brightness().view({batch, 1, 1}), C);
      color = true;
    }
    if (k.contrast > 0) {
      C = at::matmul(eyeD + diag_c * (draw_contrast().view({batch, 1, 1}) - 1), C);
      color = true;
    }
    at::Tensor v = at::zeros({D}, o);
    v.slice(0, 0, channels).fill_(1.0 / std::sqrt(static_cast<double>(channels)));
    const at::Tensor vv = at::outer(v, v);
    if (k.lumaflip > 0) {
      C = at::matmul(eyeD - 2 * vv * draw_lumaflip(), C);
      color = true;
    }
    if (k.saturation > 0 && channels > 1) {
      C = at::matmul(vv + (eyeD - vv) * draw_saturation(), C);
      color = true;
    }
    if (color) {
      C = C.to(img_opt);
      images = images.reshape({batch, channels, height * width});
      images = at::matmul(C.slice(1, 0, channels).slice(2, 0, channels), images) +
               C.slice(1, 0, channels).slice(2, channels, D);
      images = images.reshape({batch, channels, height, width});
    }
  }

  // ---------------- image-space filtering ----------------
  if (k.imgfilter > 0) {
    const int64_t bands = hz_fbank_.size(0);
    const at::Tensor expected_power =
        at::tensor(std::vector<float>{float(10.0 / 13), float(1.0 / 13), float(1.0 / 13), float(1.0 / 13)}, o);
    at::Tensor gain = at::ones({batch, bands}, o);
    for (int64_t i = 0; i < bands; ++i) {
      const double band = k.imgfilter_bands[static_cast<size_t>(i)];
      at::Tensor t_i = at::exp2(randn({batch}) * k.imgfilter_std);
      const double thr = static_cast<double>(static_cast<float>(k.imgfilter) * p32 * static_cast<float>(band));
      t_i = at::where(rand({batch}) < thr, t_i, at::ones_like(t_i));
      if (q.defined())
        t_i = band > 0 ? at::full_like(t_i, val(at::exp2(q_normal(k.imgfilter_std)))) : at::ones_like(t_i);
      at::Tensor t = at::ones({batch, bands}, o);
      t.select(1, i).copy_(t_i);
      t = t / (expected_power * t.square()).sum(-1, /*keepdim=*/true).sqrt();  // normalise the power
      gain = gain * t;
    }
    at::Tensor bank;
    {
      std::lock_guard<std::mutex> lock(cache_mu_);
      if (!hz_fbank_dev_.defined() || hz_fbank_dev_.device() != pdev) hz_fbank_dev_ = hz_fbank_.to(pdev);  // once per device
      bank = hz_fbank_dev_;
    }
    at::Tensor hz = at::matmul(gain, bank);                                 // [batch, tap]
    hz = hz.unsqueeze(1).repeat({1, channels, 1}).reshape({batch * channels, 1, -1}).to(img_opt);  // [b*c, 1, tap]
    const int64_t pad = hz_fbank_.size(1) / 2;
    images = images.reshape({1, batch * channels, height, width});
    images = at::reflection_pad2d(images, {pad, pad, pad, pad});
    const int64_t one[2] = {1, 1}, zero[2] = {0, 0};
    images = at::conv2d(images, hz.unsqueeze(2), c10::nullopt, one, zero, one, batch * channels);
    images = at::conv2d(images, hz.unsqueeze(3), c10::nullopt, one, zero, one, batch * channels);
    images = images.reshape({batch, channels, height, width});
  }

  // ---------------- image-space corruptions ----------------
  if (k.noise > 0) {
    at::Tensor sigma = randn({batch, 1, 1, 1}).abs() * k.noise_std;
    sigma = at::where(rand({batch, 1, 1, 1}) < prob(k.noise), sigma, at::zeros_like(sigma));
    if (q.defined()) sigma = at::full_like(sigma, val(at::erfinv(q) * k.noise_std));
    images = images + (randn({batch, channels, height, width}) * sigma).to(img_opt);
  }
  if (k.cutout > 0) {
    at::Tensor size = at::full({batch, 2, 1, 1, 1}, k.cutout_size, o);
    size = at::where(rand({batch, 1, 1, 1, 1}) < prob(k.cutout), size, at::zeros_like(size));
    at::Tensor center = rand({batch, 2, 1, 1, 1});
    if (q.defined()) {
      size = at::full_like(size, k.cutout_size);
      center = at::full_like(center, val(q));
    }
    const at::TensorOptions lo = at::TensorOptions().dtype(at::kLong).device(pdev);
    at::Tensor coord_x = at::arange(width, lo).reshape({1, 1, 1, -1});
    at::Tensor coord_y = at::arange(height, lo).reshape({1, 1, -1, 1});
    at::Tensor mask_x = ((coord_x + 0.5) / width - center.select(1, 0)).abs() >= size.select(1, 0) / 2;
    at::Tensor mask_y = ((coord_y + 0.5) / height - center.select(1, 1)).abs() >= size.select(1, 1) / 2;
    images = images * at::logical_or(mask_x, mask_y).to(img_opt);
  }
  return images;
}

}  // namespace sf::trainer
