#include "data/phantom.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace fs = std::filesystem;

namespace sf::data {

namespace {

constexpr double kPi = 3.14159265358979323846;

// ---- random numbers: splitmix64 to seed, xoshiro256** to draw ----

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

using Rng = PhantomRng;

enum StreamTag : uint64_t { kAnatomy = 1, kLesion = 2, kNoise = 3 };
// Sections: contrast c draws its tissue values from tag kContrast + c and its noise from
// kSectionNoise + (c << 32) + noise_stream.
constexpr uint64_t kContrast = 16, kSectionNoise = 1ull << 40;

double smoothstep(double e0, double e1, double x) {
  double t = std::clamp((x - e0) / (e1 - e0), 0.0, 1.0);
  return t * t * (3 - 2 * t);
}

// ---- the head model ----

struct Tissue {
  double scalp, bone, diploe, csf, gm, wm, deep, lentiform;
  double oedema, rim, core;
};

// A smooth random field: a sum of plane waves with random directions, wave numbers and phases,
// normalised to about unit variance.
struct Field {
  static constexpr int kWaves = 6;
  double kx[kWaves], ky[kWaves], ph[kWaves];
  void draw(Rng& g, double kmin, double kmax) {
    for (int i = 0; i < kWaves; ++i) {
      double a = g.phase(), k = g.uniform(kmin, kmax);
      kx[i] = k * std::cos(a);
      ky[i] = k * std::sin(a);
      ph[i] = g.phase();
    }
  }
  double at(double x, double y) const {
    double s = 0;
    for (int i = 0; i < kWaves; ++i) s += std::cos(kx[i] * x + ky[i] * y + ph[i]);
    return s * 0.57735;  // sqrt(2 / kWaves)
  }
};

struct Anatomy {
  // Image frame [-1, 1]^2 -> head frame: translate, rotate, scale by the semi-axes, egg shape.
  double cx, cy, cos_t, sin_t, A, B, egg;
  double head_a3, head_p3, head_a4, head_p4;  // outline wobble
  double t_scalp, t_skull, sk_a2, sk_a3, sk_p3, t_csf, csf_a, csf_p;
  double Rb;  // nominal brain radius in head units (brain frame = head frame / Rb)
  double gm_t, gyr_k, gyr_warp;
  Field fold_warp, fold_depth, fold_width;
  double fis_w, fis_bend, fis_p;
  double level;  // 0: basal ganglia level .. 1: above the ventricles
  double vent_scale, vent_len, vent_asym;
  double deep_vis;
  double sylv_y, sylv_slope;
  Tissue t;
  double bias[5];
  double gain;
};

struct Lesion {
  bool present = false;
  double x, y, R;  // brain frame
  double core_k, oed_k;
  double ra2, rp2, ra3, rp3, rp5;
  double ca3, cp3;
  double oa3, op3, oa5, op5;
  double mass;
  // Cross-section of the rim, core and oedema relative to their largest (sections of a volume).
  double rim_s = 1, core_s = 1, oed_s = 1;
};

Tissue base_tissue(Weighting w) {
  if (w == Weighting::T2)
    return {0.58, 0.05, 0.36, 0.84, 0.56, 0.40, 0.47, 0.44, 0.76, 0.60, 0.90};
  return {0.74, 0.06, 0.54, 0.10, 0.44, 0.68, 0.53, 0.56, 0.50, 0.90, 0.22};
}

// Per-patient tissue values: grey/white contrast and a few percent of jitter on each tissue.
Tissue jitter_tissue(const Tissue& b, Rng& g) {
  double c = g.uniform(0.85, 1.15);  // grey/white contrast
  auto jit = [&](double v, double s) { return v * (1.0 + g.uniform(-s, s)); };
  double mid = 0.5 * (b.gm + b.wm);
  Tissue t = b;
  t.scalp = jit(b.scalp, 0.08);
  t.diploe = jit(b.diploe, 0.12);
  t.csf = jit(b.csf, 0.08);
  t.gm = jit(mid + (b.gm - mid) * c, 0.04);
  t.wm = jit(mid + (b.wm - mid) * c, 0.04);
  t.deep = jit(b.deep, 0.05);
  t.lentiform = jit(b.lentiform, 0.05);
  return t;
}

// Tissue values of the section contrasts (full scale 1):
//                   scalp bone diploe csf   gm    wm    deep  lentif oedema rim  core
Tissue contrast_tissue(Contrast c) {
  switch (c) {
    case Contrast::T1: return {0.74, 0.06, 0.54, 0.10, 0.44, 0.68, 0.53, 0.56, 0.50, 0.46, 0.22};
    case Contrast::T1ce: return {0.76, 0.06, 0.54, 0.12, 0.45, 0.68, 0.53, 0.56, 0.50, 0.92, 0.22};
    case Contrast::T2: return {0.58, 0.05, 0.36, 0.84, 0.56, 0.40, 0.47, 0.44, 0.76, 0.60, 0.90};
    case Contrast::Flair: return {0.52, 0.05, 0.40, 0.08, 0.56, 0.42, 0.50, 0.47, 0.88, 0.66, 0.36};
  }
  return {};
}

Anatomy draw_anatomy(const PhantomOptions& o, int64_t index) {
  Rng g(o.seed, index, kAnatomy);
  Anatomy a{};
  a.level = g.uniform(0.0, 0.9);
  double shrink = 1.0 - 0.10 * a.level * a.level;
  a.cx = g.uniform(-0.05, 0.05);
  a.cy = g.uniform(-0.05, 0.05);
  double th = g.uniform(-0.18, 0.18);
  a.cos_t = std::cos(th);
  a.sin_t = std::sin(th);
  a.B = g.uniform(0.85, 0.93) * shrink;
  a.A = a.B * g.uniform(0.76, 0.86);
  a.egg = g.uniform(0.03, 0.09);
  a.head_a3 = g.uniform(0.0, 0.015);
  a.head_p3 = g.phase();
  a.head_a4 = g.uniform(0.0, 0.012);
  a.head_p4 = g.phase();
  a.t_scalp = g.uniform(0.035, 0.055);
  a.t_skull = g.uniform(0.045, 0.070);
  a.sk_a2 = g.uniform(0.15, 0.35);
  a.sk_a3 = g.uniform(0.0, 0.12);
  a.sk_p3 = g.phase();
  a.t_csf = g.uniform(0.012, 0.035);
  a.csf_a = g.uniform(0.0, 0.4);
  a.csf_p = g.phase();
  a.Rb = 1.0 - a.t_scalp - a.t_skull - a.t_csf;
  a.gm_t = g.uniform(0.055, 0.075);
  a.gyr_k = std::floor(g.uniform(18, 26));
  a.gyr_warp = g.uniform(2.5, 4.0);
  a.fold_warp.draw(g, 2.0, 5.0);
  a.fold_depth.draw(g, 3.0, 7.0);
  a.fold_width.draw(g, 4.0, 8.0);
  a.fis_w = g.uniform(0.006, 0.012);
  a.fis_bend = g.uniform(-0.02, 0.02);
  a.fis_p = g.phase();
  a.vent_scale = g.uniform(0.8, 1.5);
  a.vent_len = 1.0 - 0.5 * a.level;
  a.vent_asym = g.uniform(-0.12, 0.12);
  a.deep_vis = 1.0 - smoothstep(0.35, 0.55, a.level);
  a.sylv_y = g.uniform(-0.12, 0.0);
  a.sylv_slope = g.uniform(-0.35, -0.1);
  a.t = jitter_tissue(base_tissue(o.weighting), g);
  a.bias[0] = g.uniform(-0.15, 0.15);
  a.bias[1] = g.uniform(-0.15, 0.15);
  a.bias[2] = g.uniform(-0.10, 0.10);
  a.bias[3] = g.uniform(-0.10, 0.10);
  a.bias[4] = g.uniform(-0.10, 0.10);
  a.gain = g.uniform(0.88, 1.0);
  return a;
}

Lesion draw_lesion(const PhantomOptions& o, int64_t index) {
  Rng g(o.seed, index, kLesion);
  Lesion l;
  double u = g.uniform();
  l.present = o.force_lesion < 0 ? u < o.lesion_fraction : o.force_lesion > 0;
  double al = g.phase();
  double rc = 0.18 + 0.40 * std::sqrt(g.uniform());
  l.x = 0.85 * rc * std::cos(al);
  l.y = rc * std::sin(al);
  l.R = g.uniform(0.10, 0.20);
  l.core_k = g.uniform(0.40, 0.62);
  l.oed_k = g.uniform(1.5, 2.1);
  l.ra2 = g.uniform(0.0, 0.15);
  l.rp2 = g.phase();
  l.ra3 = g.uniform(0.0, 0.08);
  l.rp3 = g.phase();
  l.rp5 = g.phase();
  l.ca3 = g.uniform(0.0, 0.2);
  l.cp3 = g.phase();
  l.oa3 = g.uniform(0.05, 0.22);
  l.op3 = g.phase();
  l.oa5 = g.uniform(0.03, 0.12);
  l.op5 = g.phase();
  l.mass = g.uniform(0.2, 0.5);
  return l;
}

// Lateral ventricle of one side, in the brain frame with ax the distance from the midline.
bool in_lateral_ventricle(const Anatomy& a, double ax, double y, double side) {
  double s = a.vent_scale * (1.0 + side * a.vent_asym);
  double y0 = -0.30 * a.vent_len, y1 = 0.30 * a.vent_len;
  double t = (y - y0) / (y1 - y0);
  if (t < -0.25 || t > 1.25) return false;
  double tc = std::clamp(t, 0.0, 1.0);
  double xc = 0.045 + 0.03 * (s - 1.0) + 0.11 * tc * tc + 0.02 * std::exp(-tc * tc / 0.02);
  double w = 0.03 * s * (1.0 + 0.5 * std::exp(-(tc - 0.08) * (tc - 0.08) / 0.01) +
                          1.0 * std::exp(-(tc - 0.92) * (tc - 0.92) / 0.012));
  double ex = (ax - xc) / w;
  double ey = t < 0 ? t / 0.12 : t > 1 ? (t - 1) / 0.15 : 0.0;
  return ex * ex + ey * ey < 1.0 && ax > 0.012;
}

bool in_ellipse(double x, double y, double cx, double cy, double sa, double sb, double ang) {
  double c = std::cos(ang), s = std::sin(ang);
  double dx = x - cx, dy = y - cy;
  double u = (c * dx + s * dy) / sa, v = (-s * dx + c * dy) / sb;
  return u * u + v * v < 1.0;
}

// What one supersample shows. The cortex is resolved after all samples are classified: white
// matter is an envelope with one finger per gyrus (`core`), grey matter is every brain sample within
// the cortical thickness of that envelope, and what is left inside the brain is CSF (sulci, the
// interhemispheric and Sylvian fissures). So the cortical ribbon has a constant thickness and
// follows the folds, as a real one does. The signal is a function of the class and the tissue
// values (sample_value), so one classification serves every contrast.
enum SampleClass : uint8_t { kAir, kScalp, kBone, kDiploe, kCsf, kCortex, kNecrotic, kRim, kDeep, kLentiform, kWm };

struct Sample {
  uint8_t cls = kAir;
  bool core = false;      // inside the white-matter envelope
  float oedema = 0;       // oedema weight in [0, 1] (applies to white matter only)
  double scalp_f = 0;     // scalp signal relative to the tissue value (kScalp)
};

// The signal of a sample; `gm`: a kCortex sample lies within the cortical thickness.
float sample_value(const Sample& s, const Tissue& T, bool gm) {
  switch (s.cls) {
    case kAir: return 0.0f;
    case kScalp: return static_cast<float>(T.scalp * s.scalp_f);
    case kBone: return static_cast<float>(T.bone);
    case kDiploe: return static_cast<float>(T.diploe);
    case kCsf: return static_cast<float>(T.csf);
    case kCortex: return static_cast<float>(gm ? T.gm : T.csf);
    case kNecrotic: return static_cast<float>(T.core);
    case kRim: return static_cast<float>(T.rim);
    case kDeep: return static_cast<float>(T.deep);
    case kLentiform: return static_cast<float>(T.lentiform);
    case kWm: return static_cast<float>(T.wm + (T.oedema - T.wm) * s.oedema);
  }
  return 0.0f;
}

// Classifies the image-frame point (X, Y) in [-1, 1]^2.
Sample classify(const Anatomy& a, const Lesion& l, double X, double Y) {
  Sample out;
  double dx = X - a.cx, dy = Y - a.cy;
  double hx = a.cos_t * dx + a.sin_t * dy, hy = -a.sin_t * dx + a.cos_t * dy;
  double v = hy / a.B;
  double u = hx / (a.A * (1.0 + a.egg * v));
  double r = std::sqrt(u * u + v * v);
  if (r > 1.05) return out;
  double phi = std::atan2(v, u);
  double r_head = 1.0 + a.head_a3 * std::cos(3 * phi + a.head_p3) + a.head_a4 * std::cos(4 * phi + a.head_p4);
  if (r > r_head) return out;
  double r_so = r_head - a.t_scalp;
  if (r > r_so) {
    out.cls = kScalp;
    out.scalp_f = 0.8 + 0.2 * (r - r_so) / a.t_scalp;
    return out;
  }
  double t_sk = a.t_skull * (1.0 - a.sk_a2 * std::cos(2 * phi) + a.sk_a3 * std::cos(3 * phi + a.sk_p3));
  double r_si = r_so - t_sk;
  if (r > r_si) {
    double f = (r_so - r) / t_sk;
    out.cls = (f < 0.25 || f > 0.78) ? kBone : kDiploe;
    return out;
  }
  double r_b = r_si - a.t_csf * (1.0 + a.csf_a * std::cos(2 * phi + a.csf_p));
  out.cls = kCsf;
  if (r > r_b) return out;

  // Inside the brain. Brain-frame coordinates, then the lesion's mass effect.
  double bx = u / a.Rb, by = v / a.Rb;
  double wx = bx, wy = by;
  double ld = 0, lpsi = 0;
  if (l.present) {
    double ex = bx - l.x, ey = by - l.y;
    ld = std::sqrt(ex * ex + ey * ey);
    lpsi = std::atan2(ey, ex);
    double Rr = l.R * (1.0 + l.ra2 * std::cos(2 * lpsi + l.rp2) + l.ra3 * std::cos(3 * lpsi + l.rp3) +
                       0.04 * std::cos(5 * lpsi + l.rp5)) * l.rim_s;
    if (ld < Rr) {
      double rcore = l.core_k * l.R * (1.0 + l.ca3 * std::cos(3 * lpsi + l.cp3)) * l.core_s;
      out.cls = ld < rcore ? kNecrotic : kRim;
      out.core = true;
      return out;
    }
    double Ro = l.oed_k * l.R * (1.0 + l.oa3 * std::cos(3 * lpsi + l.op3) + l.oa5 * std::cos(5 * lpsi + l.op5)) * l.oed_s;
    if (ld < Ro) out.oedema = static_cast<float>(1.0 - std::pow(ld / Ro, 4.0));
    if (l.rim_s > 0) {
      double s = 2.5 * l.R * l.rim_s;
      double dw = ld - l.mass * l.R * l.rim_s * std::exp(-(ld * ld) / (s * s));
      double k = dw > 0 ? dw / ld : 0.0;
      wx = l.x + ex * k;
      wy = l.y + ey * k;
    }
  }
  double ax = std::fabs(wx);
  double side = wx < 0 ? -1.0 : 1.0;

  // The white-matter envelope: gyral fingers along stripes whose phase wanders with a smooth
  // random field (so sulci bend and vary in depth), cut by the fissures.
  double wu = wx * a.Rb, wv = wy * a.Rb;
  double rho = std::sqrt(wu * wu + wv * wv) / r_b;
  double env = 1.0 - 2.0 * a.gm_t;
  if (rho > 0.5) {
    double wphi = std::atan2(wv, wu);
    double gyr = 0.5 + 0.5 * std::cos(a.gyr_k * wphi + a.gyr_warp * a.fold_warp.at(wx, wy));
    double depth = std::clamp(0.14 + 0.07 * a.fold_depth.at(wx, wy), 0.03, 0.24);
    double w0 = 0.35 + 0.15 * std::clamp(a.fold_width.at(wx, wy), -1.5, 1.5);
    env = 1.0 - a.gm_t - depth * smoothstep(w0 - 0.2, w0 + 0.2, gyr);
  }
  bool core = rho < env;
  double fx = std::fabs(wx - a.fis_bend * std::sin(3.0 * wy + a.fis_p));
  double front = -0.30 * a.vent_len - 0.10, back = 0.36 * a.vent_len + 0.08;
  if ((a.level >= 0.85 || wy < front || wy > back) && fx < a.fis_w + a.gm_t) core = false;
  if (a.deep_vis > 0.5) {  // Sylvian fissure, with the insula deep to it
    double sy = a.sylv_y + a.sylv_slope * (ax - 0.55);
    if (ax > 0.48 && std::fabs(wy - sy) < a.gm_t + 0.012 * smoothstep(0.5, 0.8, ax)) core = false;
  }
  out.core = core;
  if (!core) {
    out.cls = kCortex;
    return out;
  }

  // Ventricles (CSF).
  if (a.level < 0.85 && in_lateral_ventricle(a, ax, wy, side)) return out;
  if (a.level < 0.3 && ax < 0.012 && wy > -0.02 && wy < 0.14) return out;
  // Deep grey nuclei: caudate heads, thalami, lentiform nuclei.
  if (a.deep_vis > 0.0) {
    double dv = a.deep_vis;
    out.cls = kDeep;
    if (in_ellipse(ax, wy, 0.10 + 0.02 * a.vent_scale, -0.17 * a.vent_len, 0.045 * dv, 0.075 * dv, -0.3)) return out;
    if (in_ellipse(ax, wy, 0.085, 0.07, 0.065 * dv, 0.10 * dv, 0.15)) return out;
    out.cls = kLentiform;
    if (in_ellipse(ax, wy, 0.24, -0.02, 0.05 * dv, 0.14 * dv, -0.25)) return out;
  }
  out.cls = kWm;
  return out;
}

// Exact squared Euclidean distance transform of a binary mask (Felzenszwalb and Huttenlocher):
// d[i] = squared distance in samples from i to the nearest `true` sample (large where none).
void squared_distance_1d(const float* f, int n, float* d, std::vector<int>& v, std::vector<float>& z) {
  int k = 0;
  v[0] = 0;
  z[0] = -1e30f;
  z[1] = 1e30f;
  for (int q = 1; q < n; ++q) {
    float s;
    for (;;) {
      int p = v[k];
      s = ((f[q] + float(q) * q) - (f[p] + float(p) * p)) / (2.0f * (q - p));
      if (s <= z[k] && k > 0) {
        --k;
        continue;
      }
      break;
    }
    if (s <= z[k]) {  // k == 0 and the new parabola dominates everywhere
      v[0] = q;
      z[0] = -1e30f;
      z[1] = 1e30f;
      continue;
    }
    ++k;
    v[k] = q;
    z[k] = s;
    z[k + 1] = 1e30f;
  }
  k = 0;
  for (int q = 0; q < n; ++q) {
    while (z[k + 1] < q) ++k;
    float dq = float(q - v[k]);
    d[q] = dq * dq + f[v[k]];
  }
}

std::vector<float> squared_distance(const std::vector<uint8_t>& mask, int n) {
  const float inf = 1e20f;
  std::vector<float> d(static_cast<size_t>(n) * n), f(n), out(n), z(n + 1);
  std::vector<int> v(n);
  for (size_t i = 0; i < d.size(); ++i) d[i] = mask[i] ? 0.0f : inf;
  for (int x = 0; x < n; ++x) {  // columns
    for (int y = 0; y < n; ++y) f[y] = d[static_cast<size_t>(y) * n + x];
    squared_distance_1d(f.data(), n, out.data(), v, z);
    for (int y = 0; y < n; ++y) d[static_cast<size_t>(y) * n + x] = out[y];
  }
  for (int y = 0; y < n; ++y) {  // rows
    float* row = d.data() + static_cast<size_t>(y) * n;
    std::copy(row, row + n, f.begin());
    squared_distance_1d(f.data(), n, row, v, z);
  }
  return d;
}

// The n x n supersamples of one section, each classified once; the squared distance (in
// samples) of each to the nearest core sample; and the squared cortical thickness in samples
// (brain frame -> image frame -> samples), against which that distance is compared.
struct SampleGrid {
  std::vector<Sample> samples;
  std::vector<float> dist2;
  double gm2 = 0;
};

SampleGrid classify_grid(const Anatomy& a, const Lesion& l, int n) {
  SampleGrid g;
  const double inv = 1.0 / n;
  g.samples.resize(static_cast<size_t>(n) * n);
  std::vector<uint8_t> core(g.samples.size());
  for (int y = 0; y < n; ++y) {
    double Y = (2.0 * y + 1.0) * inv - 1.0;
    for (int x = 0; x < n; ++x) {
      size_t i = static_cast<size_t>(y) * n + x;
      g.samples[i] = classify(a, l, (2.0 * x + 1.0) * inv - 1.0, Y);
      core[i] = g.samples[i].core;
    }
  }
  const double gm_px = a.gm_t * a.Rb * 0.5 * (a.A + a.B) * 0.5 * n;
  g.gm2 = gm_px * gm_px;
  g.dist2 = squared_distance(core, n);
  return g;
}

void head_to_pixel(const Anatomy& a, double u, double v, int res, double& px, double& py) {
  double hy = v * a.B;
  double hx = u * a.A * (1.0 + a.egg * v);
  double dx = a.cos_t * hx - a.sin_t * hy, dy = a.sin_t * hx + a.cos_t * hy;
  px = (a.cx + dx + 1.0) * 0.5 * res;
  py = (a.cy + dy + 1.0) * 0.5 * res;
}

void check_options(const PhantomOptions& o) {
  if (o.resolution < 8 || o.resolution > 4096)
    throw PhantomError("phantom resolution must be in [8, 4096], got " + std::to_string(o.resolution));
  if (!(o.lesion_fraction >= 0 && o.lesion_fraction <= 1))
    throw PhantomError("phantom lesion fraction must be in [0, 1], got " + nlohmann::json(o.lesion_fraction).dump());
  if (!(o.noise >= 0 && o.noise <= 1)) throw PhantomError("phantom noise must be in [0, 1], got " + nlohmann::json(o.noise).dump());
}

}  // namespace

Weighting parse_weighting(const std::string& s) {
  std::string l = s;
  for (auto& c : l) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (l == "t1") return Weighting::T1;
  if (l == "t2") return Weighting::T2;
  throw PhantomError("unknown weighting '" + s + "' (t1, t2)");
}

PhantomRng::PhantomRng(uint64_t seed, int64_t index, uint64_t tag) {
  uint64_t x = seed;
  uint64_t h = splitmix64(x);
  x = h ^ static_cast<uint64_t>(index);
  h = splitmix64(x);
  x = h ^ (tag * 0xD1B54A32D192ED03ull);
  for (auto& s : s_) s = splitmix64(x);
}

uint64_t PhantomRng::next() {
  uint64_t r = rotl(s_[1] * 5, 7) * 9;
  uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return r;
}

double PhantomRng::phase() { return uniform(0, 2 * kPi); }

void PhantomRng::normal2(double& a, double& b) {
  double u1 = 1.0 - uniform();  // (0, 1]
  double u2 = uniform();
  double m = std::sqrt(-2.0 * std::log(u1));
  a = m * std::cos(2 * kPi * u2);
  b = m * std::sin(2 * kPi * u2);
}

int phantom_label(const PhantomOptions& opts, int64_t index) {
  check_options(opts);
  return draw_lesion(opts, index).present ? 1 : 0;
}

Contrast parse_contrast(const std::string& s) {
  std::string l = s;
  for (auto& c : l) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (Contrast c : {Contrast::T1, Contrast::T1ce, Contrast::T2, Contrast::Flair})
    if (l == contrast_name(c)) return c;
  throw PhantomError("unknown modality '" + s + "' (t1, t1ce, t2, flair)");
}

const char* contrast_name(Contrast c) {
  switch (c) {
    case Contrast::T1: return "t1";
    case Contrast::T1ce: return "t1ce";
    case Contrast::T2: return "t2";
    case Contrast::Flair: return "flair";
  }
  return "?";
}

PhantomSectionImages render_phantom_section(const PhantomOptions& opts, int64_t index, const PhantomSection& sec,
                                            const std::vector<Contrast>& contrasts) {
  check_options(opts);
  const int res = opts.resolution;
  const size_t npix = static_cast<size_t>(res) * res;
  PhantomSectionImages out;
  out.mask.assign(npix, 0);
  out.signal.assign(contrasts.size(), std::vector<float>(npix, 0.0f));
  if (contrasts.empty()) return out;
  if (!sec.empty && !(sec.scale > 0 && sec.scale <= 1))
    throw PhantomError("phantom section scale must be in (0, 1], got " + nlohmann::json(sec.scale).dump());

  // The patient's anatomy and lesion, adjusted to this height.
  Anatomy a = draw_anatomy(opts, index);
  Lesion l = draw_lesion(opts, index);
  const double shrink = 1.0 - 0.10 * a.level * a.level;  // as draw_anatomy applied it
  const double level = std::clamp(sec.level, 0.0, 1.0);
  a.level = level;
  a.vent_len = 1.0 - 0.5 * level;
  a.deep_vis = 1.0 - smoothstep(0.35, 0.55, level);
  a.A *= sec.scale / shrink;
  a.B *= sec.scale / shrink;
  // Scalp, skull and CSF keep their thickness in millimetres while the cross-section narrows.
  const double thick = 1.0 / std::max(sec.scale, 0.3);
  a.t_scalp *= thick;
  a.t_skull *= thick;
  a.t_csf *= thick;
  a.Rb = 1.0 - a.t_scalp - a.t_skull - a.t_csf;
  for (int i = 0; i < Field::kWaves; ++i) {
    a.fold_warp.ph[i] += sec.fold_shift * (1.0 + 0.37 * i);
    a.fold_depth.ph[i] += sec.fold_shift * (0.8 - 0.11 * i);
    a.fold_width.ph[i] += sec.fold_shift * (0.6 + 0.23 * i);
  }
  a.fis_p += 0.5 * sec.fold_shift;
  if (l.present) {
    const double dz = std::fabs(sec.lesion_dz);
    auto cut = [dz](double semi) { return dz < semi ? std::sqrt(1.0 - (dz / semi) * (dz / semi)) : 0.0; };
    l.rim_s = cut(1.0);
    l.core_s = cut(l.core_k);
    l.oed_s = cut(l.oed_k);
    l.present = l.oed_s > 0;
  }

  std::vector<Tissue> tissues;
  std::vector<double> gains;
  for (Contrast c : contrasts) {
    Rng g(opts.seed, index, kContrast + static_cast<uint64_t>(c));
    tissues.push_back(jitter_tissue(contrast_tissue(c), g));
    gains.push_back(g.uniform(0.88, 1.0));
  }

  const int ss = res <= 64 ? 4 : res <= 256 ? 3 : 2;  // supersampling per axis
  const int n = res * ss;
  SampleGrid grid;
  if (!sec.empty) grid = classify_grid(a, l, n);  // (a.Rb > 0: the thickness factor is at most 1 / 0.3)
  const std::vector<Sample>& samples = grid.samples;
  const std::vector<float>& dist2 = grid.dist2;
  const double gm2 = grid.gm2;

  std::vector<double> sum(contrasts.size());
  for (int py = 0; py < res; ++py) {
    for (int px = 0; px < res; ++px) {
      const size_t p = static_cast<size_t>(py) * res + px;
      if (samples.empty()) continue;
      std::fill(sum.begin(), sum.end(), 0.0);
      int n_core = 0, n_rim = 0, n_oed = 0;
      for (int sy = 0; sy < ss; ++sy)
        for (int sx = 0; sx < ss; ++sx) {
          const size_t i = static_cast<size_t>(py * ss + sy) * n + px * ss + sx;
          const Sample& smp = samples[i];
          const bool gm = dist2[i] <= gm2;
          for (size_t c = 0; c < contrasts.size(); ++c) sum[c] += sample_value(smp, tissues[c], gm);
          n_core += smp.cls == kNecrotic;
          n_rim += smp.cls == kRim;
          n_oed += smp.cls == kWm && smp.oedema >= 0.25f;
        }
      if (2 * (n_core + n_rim + n_oed) >= ss * ss)
        out.mask[p] = n_rim >= n_core && n_rim >= n_oed ? 4 : n_core >= n_oed ? 1 : 2;
      const double X = (2.0 * px + 1.0) / res - 1.0, Y = (2.0 * py + 1.0) / res - 1.0;
      const double bias = std::exp(a.bias[0] * X + a.bias[1] * Y + a.bias[2] * X * Y + a.bias[3] * (X * X - 0.33) +
                                   a.bias[4] * (Y * Y - 0.33) + sec.bias_log);
      for (size_t c = 0; c < contrasts.size(); ++c)
        out.signal[c][p] = static_cast<float>(sum[c] / (ss * ss) * gains[c] * bias);
    }
  }
  // Rician magnitude noise, one stream per contrast and section.
  const double sigma = opts.noise;
  for (size_t c = 0; c < contrasts.size(); ++c) {
    Rng noise(opts.seed, index, kSectionNoise + (static_cast<uint64_t>(contrasts[c]) << 32) + static_cast<uint64_t>(sec.noise_stream));
    for (float& v : out.signal[c]) {
      double n1, n2;
      noise.normal2(n1, n2);
      v = static_cast<float>(std::sqrt((v + sigma * n1) * (v + sigma * n1) + (sigma * n2) * (sigma * n2)));
    }
  }
  return out;
}

Image render_phantom(const PhantomOptions& opts, int64_t index, int* label_out, PhantomInfo* info) {
  check_options(opts);
  const int res = opts.resolution;
  const Anatomy a = draw_anatomy(opts, index);
  const Lesion l = draw_lesion(opts, index);
  Rng noise(opts.seed, index, kNoise);
  const int ss = res <= 64 ? 4 : res <= 256 ? 3 : 2;  // supersampling per axis
  Image img;
  img.width = img.height = res;
  img.channels = 1;
  img.pixels.resize(static_cast<size_t>(res) * res);
  const int n = res * ss;
  const double sigma = opts.noise;
  const SampleGrid grid = classify_grid(a, l, n);
  const std::vector<Sample>& samples = grid.samples;
  const std::vector<float>& dist2 = grid.dist2;
  const float gm2 = static_cast<float>(grid.gm2);
  for (int py = 0; py < res; ++py) {
    for (int px = 0; px < res; ++px) {
      double sum = 0;
      for (int sy = 0; sy < ss; ++sy)
        for (int sx = 0; sx < ss; ++sx) {
          const size_t i = static_cast<size_t>(py * ss + sy) * n + px * ss + sx;
          sum += sample_value(samples[i], a.t, dist2[i] <= gm2);
        }
      double s = sum / (ss * ss);
      double X = (2.0 * px + 1.0) / res - 1.0, Y = (2.0 * py + 1.0) / res - 1.0;
      double bias = std::exp(a.bias[0] * X + a.bias[1] * Y + a.bias[2] * X * Y + a.bias[3] * (X * X - 0.33) +
                             a.bias[4] * (Y * Y - 0.33));
      s *= a.gain * bias;
      double n1, n2;
      noise.normal2(n1, n2);
      double m = std::sqrt((s + sigma * n1) * (s + sigma * n1) + (sigma * n2) * (sigma * n2));  // Rician magnitude
      double q = std::floor(m * 255.0 + 0.5);
      img.pixels[static_cast<size_t>(py) * res + px] = static_cast<uint8_t>(std::clamp(q, 0.0, 255.0));
    }
  }
  if (label_out) *label_out = l.present ? 1 : 0;
  if (info) {
    *info = PhantomInfo{};
    info->label = l.present ? 1 : 0;
    if (l.present) {
      head_to_pixel(a, l.x * a.Rb, l.y * a.Rb, res, info->lesion_x, info->lesion_y);
      double scale = a.Rb * 0.5 * (a.A + a.B) * 0.5 * res;
      info->radius = l.R * scale;
      info->oedema_radius = l.oed_k * l.R * scale;
    }
  }
  return img;
}

PhantomFolderSummary write_folder_atomically(
    const std::string& dir, int64_t count, bool force, int max_workers,
    const std::function<int(int64_t, const std::string&)>& render,
    const std::function<void(const std::string&, const std::vector<int>&)>& finish,
    const std::function<void(int64_t, int64_t)>& progress) {
  auto t0 = std::chrono::steady_clock::now();
  if (dir.empty()) throw PhantomError("no destination folder given");
  fs::path dest = fs::path(dir).lexically_normal();
  if (dest.filename().empty()) dest = dest.parent_path();  // "out/" -> "out"
  std::error_code ec;
  if (fs::exists(fs::symlink_status(dest, ec))) {
    if (!fs::is_directory(dest)) {
      if (!force) throw PhantomError(dest.string() + ": exists and is not a folder (use --force to replace it)");
    } else if (!fs::is_empty(dest) && !force) {
      throw PhantomError(dest.string() + ": folder is not empty (use --force to replace it)");
    }
  }
  fs::path parent = dest.has_parent_path() ? dest.parent_path() : fs::path(".");
  fs::create_directories(parent, ec);
  if (ec) throw PhantomError(parent.string() + ": cannot create folder (" + ec.message() + ")");
  fs::path tmp = parent / (dest.filename().string() + ".tmp-" + std::to_string(::getpid()));
  fs::remove_all(tmp, ec);
  if (!fs::create_directory(tmp, ec)) throw PhantomError(tmp.string() + ": cannot create folder (" + ec.message() + ")");

  std::vector<int> labels(static_cast<size_t>(count));
  try {
    std::atomic<int64_t> next{0}, done{0};
    std::mutex err_mu;
    std::string err;
    auto work = [&]() {
      try {
        for (int64_t i; (i = next.fetch_add(1)) < count;) {
          {
            std::lock_guard<std::mutex> lk(err_mu);
            if (!err.empty()) return;
          }
          labels[static_cast<size_t>(i)] = render(i, tmp.string());
          done.fetch_add(1);
        }
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lk(err_mu);
        if (err.empty()) err = e.what();
      }
    };
    unsigned hw = std::max(1u, std::thread::hardware_concurrency());
    int nthreads = static_cast<int>(std::min<int64_t>({static_cast<int64_t>(hw), std::max(1, max_workers), count}));
    std::vector<std::thread> pool;
    for (int t = 1; t < nthreads; ++t) pool.emplace_back(work);
    if (progress) {
      // The calling thread reports progress while the workers render.
      std::thread main_worker(work);
      int64_t last = -1;
      while (done.load() < count) {
        {
          std::lock_guard<std::mutex> lk(err_mu);
          if (!err.empty()) break;
        }
        const int64_t d = done.load();
        if (d != last) progress(last = d, count);
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      main_worker.join();
    } else {
      work();
    }
    for (auto& t : pool) t.join();
    if (!err.empty()) throw PhantomError(err);
    if (progress) progress(count, count);
    finish(tmp.string(), labels);
    if (fs::exists(fs::symlink_status(dest))) {
      if (fs::is_directory(fs::symlink_status(dest)) && fs::is_empty(dest)) {
        fs::remove(dest);
      } else {
        fs::remove_all(dest);  // only reached with force (checked above)
      }
    }
    fs::rename(tmp, dest, ec);
    if (ec) throw PhantomError(dest.string() + ": cannot move the finished folder into place (" + ec.message() + ")");
  } catch (const fs::filesystem_error& e) {
    fs::remove_all(tmp, ec);
    throw PhantomError(e.what());
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  PhantomFolderSummary s;
  s.count = count;
  for (int v : labels) s.lesions += v;
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return s;
}

PhantomFolderSummary write_phantom_folder(const std::string& dir, int64_t count, const PhantomOptions& opts, bool force,
                                          const std::function<void(int64_t, int64_t)>& progress) {
  check_options(opts);
  if (count < 1 || count >= 100000000) throw PhantomError("phantom count must be in [1, 99999999], got " + std::to_string(count));
  auto name_of = [](int64_t i) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "img%08lld.png", static_cast<long long>(i));
    return std::string(buf);
  };
  auto render = [&](int64_t i, const std::string& folder) {
    int label = 0;
    Image img = render_phantom(opts, i, &label);
    write_png_file((fs::path(folder) / name_of(i)).string(), img);
    return label;
  };
  auto finish = [&](const std::string& folder, const std::vector<int>& labels) {
    nlohmann::json j;
    j["labels"] = nlohmann::json::array();
    for (int64_t i = 0; i < count; ++i) j["labels"].push_back({name_of(i), labels[static_cast<size_t>(i)]});
    const std::string path = (fs::path(folder) / "dataset.json").string();
    std::ofstream f(path);
    f << j.dump() << "\n";
    f.close();
    if (!f) throw PhantomError(path + ": cannot write");
  };
  return write_folder_atomically(dir, count, force, 8, render, finish, progress);
}

}  // namespace sf::data
