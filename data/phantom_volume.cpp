#include "data/phantom_volume.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "data/nifti_write.h"

namespace fs = std::filesystem;

namespace sf::data {

namespace {

constexpr uint64_t kVolumeStream = 8;  // PhantomRng tag of the vertical layout
constexpr double kSpacing[3] = {1.0, 1.0, 2.5};  // mm
constexpr double kObliqueDegrees = 12.0;

void check_volume_options(const PhantomVolumeOptions& o) {
  if (o.resolution < 32 || o.resolution > 1024)
    throw PhantomError("phantom volume resolution must be in [32, 1024], got " + std::to_string(o.resolution));
  if (o.slices != 0 && (o.slices < 8 || o.slices > 512))
    throw PhantomError("phantom volume slices must be in [8, 512] (or 0 for 24..32), got " + std::to_string(o.slices));
  if (o.modalities.empty()) throw PhantomError("no phantom modality given");
  parse_phantom_orientation(o.orientation);
}

PhantomOptions section_options(const PhantomVolumeOptions& o) {
  PhantomOptions p;
  p.resolution = o.resolution;
  p.seed = o.seed;
  p.lesion_fraction = o.lesion_fraction;
  p.noise = o.noise;
  p.force_lesion = o.force_lesion;
  return p;
}

std::string patient_name(int64_t index, int64_t count) {
  size_t width = 3;
  for (int64_t c = 1000; c < count; c *= 10) ++width;
  std::string num = std::to_string(index);
  if (num.size() < width) num.insert(0, width - num.size(), '0');
  return "Phantom_" + num;
}

Affine canonical_affine(int64_t nx, int64_t ny, int64_t nz) {
  Affine a = identity_affine();
  const int64_t n[3] = {nx, ny, nz};
  for (int d = 0; d < 3; ++d) {
    a[d][d] = kSpacing[d];
    a[d][3] = -0.5 * static_cast<double>(n[d] - 1) * kSpacing[d];
  }
  return a;
}

}  // namespace

std::vector<Contrast> parse_modalities(const std::string& list) {
  std::vector<Contrast> out;
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find(',', start);
    if (end == std::string::npos) end = list.size();
    std::string item = list.substr(start, end - start);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (item.empty()) throw PhantomError("empty modality in '" + list + "' (t1, t1ce, t2, flair)");
    Contrast c = parse_contrast(item);
    if (std::find(out.begin(), out.end(), c) != out.end())
      throw PhantomError("modality '" + item + "' given twice in '" + list + "'");
    out.push_back(c);
    start = end + 1;
  }
  return out;
}

std::string parse_phantom_orientation(const std::string& s) {
  std::string u;
  for (char c : s) u += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (u == "OBLIQUE") return "oblique";
  bool seen[3] = {false, false, false};
  bool ok = u.size() == 3;
  for (char c : u) {
    const size_t p = std::string("RLAPSI").find(c);
    if (p == std::string::npos || seen[p / 2]) {
      ok = false;
      break;
    }
    seen[p / 2] = true;
  }
  if (!ok)
    throw PhantomError("orientation '" + s +
                       "': expected three axis codes, one of R/L, A/P and S/I each (e.g. RAS, LPS, LAS), or oblique");
  return u;
}

Volume store_oriented(const Volume& v, const std::string& orientation) {
  const std::string o = parse_phantom_orientation(orientation);
  const std::string codes = o == "oblique" ? "LPS" : o;
  if (codes == "RAS") return v;
  const int64_t dims[3] = {v.nx, v.ny, v.nz};
  int world[3], sign[3];
  for (int a = 0; a < 3; ++a) {
    const size_t p = std::string("RLAPSI").find(codes[static_cast<size_t>(a)]);
    world[a] = static_cast<int>(p / 2);
    sign[a] = p % 2 == 0 ? 1 : -1;
  }
  // Stored voxel (m0, m1, m2) -> canonical voxel: c[world[a]] = m[a] or dims - 1 - m[a].
  Affine t{};
  t[3][3] = 1;
  for (int a = 0; a < 3; ++a) {
    t[world[a]][a] = sign[a];
    t[world[a]][3] = sign[a] < 0 ? static_cast<double>(dims[world[a]] - 1) : 0.0;
  }
  Volume out = v;
  out.nx = dims[world[0]];
  out.ny = dims[world[1]];
  out.nz = dims[world[2]];
  Affine na{};
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 4; ++c)
      for (int k = 0; k < 4; ++k) na[r][c] += v.affine[r][k] * t[k][c];
  if (o == "oblique") {  // rotate the world coordinates about the left-right (x) axis
    const double th = kObliqueDegrees * 3.14159265358979323846 / 180.0;
    const double c = std::cos(th), s = std::sin(th);
    Affine rot = identity_affine();
    rot[1][1] = c, rot[1][2] = -s, rot[2][1] = s, rot[2][2] = c;
    Affine r{};
    for (int i = 0; i < 4; ++i)
      for (int j = 0; j < 4; ++j)
        for (int k = 0; k < 4; ++k) r[i][j] += rot[i][k] * na[k][j];
    na = r;
  }
  out.affine = na;
  const int64_t frame = v.nx * v.ny * v.nz;
  for (int64_t tt = 0; tt < v.nt; ++tt)
    for (int64_t m2 = 0; m2 < out.nz; ++m2)
      for (int64_t m1 = 0; m1 < out.ny; ++m1)
        for (int64_t m0 = 0; m0 < out.nx; ++m0) {
          const int64_t m[3] = {m0, m1, m2};
          int64_t c[3];
          for (int a = 0; a < 3; ++a) c[world[a]] = sign[a] > 0 ? m[a] : dims[world[a]] - 1 - m[a];
          out.data[static_cast<size_t>(tt * frame + m0 + out.nx * (m1 + out.ny * m2))] =
              v.data[static_cast<size_t>(tt * frame + c[0] + v.nx * (c[1] + v.ny * c[2]))];
        }
  return out;
}

PhantomPatient render_phantom_patient(const PhantomVolumeOptions& opts, int64_t index, int64_t count) {
  check_volume_options(opts);
  const PhantomOptions po = section_options(opts);
  PhantomPatient p;
  p.name = patient_name(index, count);
  p.label = phantom_label(po, index);

  // Vertical layout: the head's centre and half-height in sections, the bias field's and the
  // folding pattern's change with height, the lesion's centre section and vertical semi-axis.
  PhantomRng g(opts.seed, index, kVolumeStream);
  const int S = opts.slices > 0 ? opts.slices : 24 + static_cast<int>(g.uniform() * 9);
  const double zc = 0.5 * (S - 1) + g.uniform(-0.03, 0.03) * S;
  // The first and last sections are always air: |h| > 1 there.
  const double hz = std::min(g.uniform(0.36, 0.42) * S, std::min(zc, S - 1 - zc) - 0.25);
  const double bias_z = g.uniform(-0.12, 0.12);
  const double fold_k = g.uniform(2.0, 3.5);
  const double lesion_h = g.uniform(-0.4, 0.4);
  const double lesion_rz = std::max(1.0, hz * g.uniform(0.17, 0.27));
  const int lesion_k = static_cast<int>(std::lround(zc + lesion_h * hz));

  const int R = opts.resolution;
  const size_t plane = static_cast<size_t>(R) * R;
  p.images.resize(opts.modalities.size());
  for (size_t m = 0; m < opts.modalities.size(); ++m) {
    Volume& v = p.images[m];
    v.nx = v.ny = R;
    v.nz = S;
    v.data.assign(plane * S, 0.0f);
    v.affine = canonical_affine(R, R, S);
    v.description = std::string("phantom ") + contrast_name(opts.modalities[m]);
  }
  p.mask.nx = p.mask.ny = R;
  p.mask.nz = S;
  p.mask.data.assign(plane * S, 0.0f);
  p.mask.affine = canonical_affine(R, R, S);
  p.mask.description = "phantom seg";

  for (int k = 0; k < S; ++k) {
    const double h = (k - zc) / hz;
    PhantomSection sec;
    sec.empty = std::fabs(h) >= 1.0;
    sec.scale = sec.empty ? 1.0 : std::sqrt(1.0 - h * h);
    sec.level = std::min(1.0, 1.6 * std::fabs(h - 0.05));
    sec.fold_shift = fold_k * h;
    sec.bias_log = bias_z * h;
    sec.lesion_dz = (k - lesion_k) / lesion_rz;
    sec.noise_stream = k;
    PhantomSectionImages img = render_phantom_section(po, index, sec, opts.modalities);
    // Canonical voxel (i, j, k) is section pixel (row R-1-j, column R-1-i).
    for (int j = 0; j < R; ++j)
      for (int i = 0; i < R; ++i) {
        const size_t src = static_cast<size_t>(R - 1 - j) * R + (R - 1 - i);
        const size_t dst = static_cast<size_t>(k) * plane + static_cast<size_t>(j) * R + i;
        for (size_t m = 0; m < img.signal.size(); ++m)
          p.images[m].data[dst] = static_cast<float>(std::clamp(std::round(img.signal[m][src] * 1000.0), 0.0, 32767.0));
        p.mask.data[dst] = img.mask[src];
      }
  }
  for (auto& v : p.images) v = store_oriented(v, opts.orientation);
  p.mask = store_oriented(p.mask, opts.orientation);
  return p;
}

PhantomFolderSummary write_phantom_volume_folder(const std::string& dir, int64_t count, const PhantomVolumeOptions& opts,
                                                 bool force, const std::function<void(int64_t, int64_t)>& progress) {
  check_volume_options(opts);
  phantom_label(section_options(opts), 0);  // checks the remaining options
  if (count < 1 || count > 99999) throw PhantomError("phantom volume count must be in [1, 99999], got " + std::to_string(count));
  auto render = [&](int64_t i, const std::string& tmp) {
    PhantomPatient p = render_phantom_patient(opts, i, count);
    const fs::path folder = fs::path(tmp) / p.name;
    if (!fs::create_directory(folder)) throw PhantomError(folder.string() + ": cannot create folder");
    for (size_t m = 0; m < p.images.size(); ++m)
      write_nifti((folder / (p.name + "_" + contrast_name(opts.modalities[m]) + ".nii.gz")).string(), p.images[m],
                  NiftiStoreType::Int16);
    write_nifti((folder / (p.name + "_seg.nii.gz")).string(), p.mask, NiftiStoreType::UInt8);
    return p.label;
  };
  auto finish = [&](const std::string& tmp, const std::vector<int>& labels) {
    const std::string path = (fs::path(tmp) / "labels.csv").string();
    std::ofstream f(path);
    f << "patient,label\n";
    for (int64_t i = 0; i < count; ++i) f << patient_name(i, count) << "," << labels[static_cast<size_t>(i)] << "\n";
    f.close();
    if (!f) throw PhantomError(path + ": cannot write");
  };
  // Workers: up to 8, fewer for large volumes (each holds a patient's volumes twice while storing).
  const double patient_bytes = 2.0 * 4 * opts.resolution * opts.resolution * (opts.slices > 0 ? opts.slices : 32) *
                               static_cast<double>(opts.modalities.size() + 1);
  const int64_t by_memory = std::max<int64_t>(1, static_cast<int64_t>(2e9 / patient_bytes));
  return write_folder_atomically(dir, count, force, static_cast<int>(std::min<int64_t>(8, by_memory)), render, finish,
                                 progress);
}

}  // namespace sf::data
