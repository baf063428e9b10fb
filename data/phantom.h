// Synthetic MRI-like axial head slices ("phantoms") for demos and tests: 8-bit grayscale images
// of a head seen from above (anterior at the top, as radiological displays show it) with scalp,
// a skull ring (bright diploe between dark tables, thickness varying around the head), CSF,
// a folded cortex, white matter, the interhemispheric fissure, lateral and third ventricles and
// deep grey nuclei, optionally a tumour-like lesion (bright enhancing rim, dark necrotic core,
// oedema spreading into white matter, a little mass effect). Every sample gets its own size,
// aspect, rotation, position, slice level, tissue contrast, smooth multiplicative bias field and
// Rician noise. Edges are anti-aliased by supersampling.
//
// Each image is a pure function of (options, index): randomness comes from a small counter-based
// generator (splitmix64 seeding xoshiro256**) with separate streams for anatomy, lesion and noise,
// so the same index rendered with and without a lesion shows the same head. Only std::exp/log/
// sin/cos/atan2/sqrt are used for floating point, so images are reproducible on any platform whose
// libm rounds those the same way (glibc does across versions, up to rare last-bit differences).
//
// Label 0 = no lesion, 1 = lesion. Everything here is reentrant; write_phantom_folder uses a few
// worker threads internally. Errors throw PhantomError with a one-line message.
//
// render_phantom_section() renders one axial section of a 3-D head from the same anatomy, in
// several MRI contrasts at once with a BraTS-style lesion mask; data/phantom_volume.h stacks
// sections into volumes.
#pragma once

#include <cstdint>
#include <functional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "data/image.h"

namespace sf::data {

class PhantomError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class Weighting { T1, T2 };
Weighting parse_weighting(const std::string& s);  // "t1" | "t2" (any case)

// The counter-based generator behind every phantom: one independent stream per (seed, index,
// tag), splitmix64 seeding xoshiro256**. Integer arithmetic only, so streams are the same on every
// platform.
class PhantomRng {
 public:
  PhantomRng(uint64_t seed, int64_t index, uint64_t tag);
  uint64_t next();
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double uniform(double a, double b) { return a + (b - a) * uniform(); }
  double phase();                       // uniform in [0, 2 pi)
  void normal2(double& a, double& b);   // two independent standard normals (Box-Muller)

 private:
  uint64_t s_[4];
};

struct PhantomOptions {
  int resolution = 64;           // square images, 8..4096
  uint64_t seed = 0;
  double lesion_fraction = 0.5;  // probability that an index gets a lesion, in [0, 1]
  double noise = 0.03;           // sigma of the Gaussian noise in each quadrature channel (1 = full scale)
  Weighting weighting = Weighting::T1;
  int force_lesion = -1;         // -1: drawn with lesion_fraction; 0: never; 1: always (same anatomy)
};

// Where the lesion is, in pixel coordinates of the output image (x right, y down, pixel centres
// at integer + 0.5). Radii: enhancing rim (`radius`) and oedema (`oedema_radius`), both averaged
// over angle and measured along the image axes' mean scale.
struct PhantomInfo {
  int label = 0;
  double lesion_x = 0, lesion_y = 0, radius = 0, oedema_radius = 0;
};

// One gray image (channels 1) of opts.resolution squared. `label_out` / `info` may be null.
Image render_phantom(const PhantomOptions& opts, int64_t index, int* label_out = nullptr, PhantomInfo* info = nullptr);

// The label render_phantom gives index `index` (cheap: no rendering).
int phantom_label(const PhantomOptions& opts, int64_t index);

// MRI contrasts of the sections: T1 (lesion rim iso-intense), T1ce (T1 with the enhancing rim
// bright), T2 (CSF and oedema bright), FLAIR (T2-like with CSF dark, oedema brightest).
enum class Contrast { T1 = 0, T1ce = 1, T2 = 2, Flair = 3 };
Contrast parse_contrast(const std::string& s);  // "t1" | "t1ce" | "t2" | "flair" (any case)
const char* contrast_name(Contrast c);          // "t1", "t1ce", "t2", "flair"

// Where an axial section cuts the 3-D head of one patient. The head and brain outlines, cortex,
// tissue contrasts and lesion position in the plane are those of render_phantom for the same
// (seed, index); the section only changes what varies with height.
struct PhantomSection {
  bool empty = false;       // above or below the head: air (noise) only
  double scale = 1;         // head cross-section relative to the largest one, in (0, 1]
  double level = 0;         // 0: basal ganglia (ventricles, deep nuclei) .. 0.85+: no ventricles
  double fold_shift = 0;    // phase shift of the cortical folding pattern (varies with height)
  double bias_log = 0;      // added to the log of the bias field (its variation with height)
  // Distance from the lesion's centre section in units of the vertical semi-axis of its enhancing
  // rim: the rim, the necrotic core and the oedema are concentric ellipsoids (core and oedema
  // scaled by the patient's in-plane ratios), so |lesion_dz| >= 1 shows no rim and far sections
  // no lesion at all.
  double lesion_dz = 1e9;
  int64_t noise_stream = 0; // sections with different values get independent noise
};

// One section in each of `contrasts`: `signal[c]` holds resolution^2 values, row-major, rows from
// the image top (anterior) and columns from the image left (the patient's right), about 0..1 (full
// scale), Rician noise of sigma opts.noise included. `mask` holds the BraTS label of each pixel:
// 0 none, 1 necrotic core, 2 oedema, 4 enhancing rim; the label of the tissue covering most of the
// pixel, 0 unless lesion tissue covers at least half of it. opts.weighting is ignored; the lesion
// is present as phantom_label(opts, index) says. Contrast intensities, gains and noise are drawn per
// (seed, index, contrast), so one contrast renders the same whatever else is asked for.
struct PhantomSectionImages {
  std::vector<std::vector<float>> signal;
  std::vector<uint8_t> mask;
};
PhantomSectionImages render_phantom_section(const PhantomOptions& opts, int64_t index, const PhantomSection& section,
                                            const std::vector<Contrast>& contrasts);

struct PhantomFolderSummary {
  int64_t count = 0, lesions = 0;
  double seconds = 0;
};

// Writes img00000000.png .. (flat, 8 digits) and dataset.json ({"labels": [["img00000000.png", 1],
// ...]}, the reference's format; `styleforge pack` turns it into a `class` pack) into `dir`.
// Refuses an existing non-empty `dir` (or a non-directory) unless `force`, which replaces it.
// Everything is written to a sibling temporary folder that is renamed into place at the end, so
// an error or interruption never leaves a partial `dir`. `progress` (may be empty) is called on
// the calling thread with (images written, count) about 20 times a second while the workers
// render, and once at the end. count must be in [1, 1e8).
// The folder writer both phantom commands share: checks `dir` (refused when it exists and is not
// an empty folder, unless `force`), renders items 0..count-1 on up to `max_workers` threads into a
// sibling temporary folder (`render(i, folder)` writes item i there and returns its label), then
// `finish(folder, labels)` writes the index file, and the folder is renamed into place. An error
// removes the temporary and leaves `dir` as it was. `progress` as for write_phantom_folder.
PhantomFolderSummary write_folder_atomically(
    const std::string& dir, int64_t count, bool force, int max_workers,
    const std::function<int(int64_t i, const std::string& folder)>& render,
    const std::function<void(const std::string& folder, const std::vector<int>& labels)>& finish,
    const std::function<void(int64_t done, int64_t total)>& progress);

PhantomFolderSummary write_phantom_folder(const std::string& dir, int64_t count, const PhantomOptions& opts,
                                          bool force = false,
                                          const std::function<void(int64_t done, int64_t total)>& progress = {});

}  // namespace sf::data
