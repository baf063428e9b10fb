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
#pragma once

#include <cstdint>
#include <functional>
#include <ostream>
#include <stdexcept>
#include <string>

#include "data/image.h"

namespace sf::data {

class PhantomError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class Weighting { T1, T2 };
Weighting parse_weighting(const std::string& s);  // "t1" | "t2" (any case)

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
PhantomFolderSummary write_phantom_folder(const std::string& dir, int64_t count, const PhantomOptions& opts,
                                          bool force = false,
                                          const std::function<void(int64_t done, int64_t total)>& progress = {});

}  // namespace sf::data
