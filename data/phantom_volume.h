// BraTS-like phantom volumes: per patient a 3-D head in several MRI contrasts (T1, T1ce, T2,
// FLAIR) with a lesion mask, written as a BraTS-style folder of NIfTI files.
//
// A head is a stack of axial sections (data/phantom.h, render_phantom_section) of the 2-D phantom
// anatomy of the same (seed, index): the cross-section narrows towards the top and bottom of the
// head (an ellipsoid profile), the lateral ventricles and deep grey nuclei appear only in the
// middle sections, and a few sections above and below the head (always the first and the last)
// hold air (noise) only. A lesion (in patients with label 1, drawn as render_phantom draws it) is
// a set of concentric ellipsoids, enhancing rim, necrotic core and oedema, centred on one section
// and spanning a few sections.
//
// Canonical grid (orientation "RAS"): voxel i runs towards the patient's right, j anterior, k
// superior; voxels are 1 x 1 x 2.5 mm; the affine puts the grid's centre at world (0, 0, 0). So
// data::display_slice(v, Plane::Axial, k) shows section k as render_phantom_section rendered it
// (patient's right on the image's left, anterior at the top). Any other orientation stores the
// same voxels with the axes permuted and flipped and the affine to match, so data::to_canonical
// gives back exactly the canonical voxels; "oblique" is the LPS layout with the affine rotated by
// 12 degrees about the left-right axis (the canonical voxels are still the same, the affine is
// the rotated RAS one).
//
// Images hold integer values (float32 in memory, int16 on disk), about 0..1000 with Rician noise;
// the mask holds the BraTS labels 0 (none), 1 (necrotic core), 2 (oedema), 4 (enhancing rim);
// lesion-free patients have an all-zero mask, patients with a lesion always have lesion voxels.
// All modalities and the mask of one patient share the grid and affine.
//
// Each patient is a pure function of (options, index); one contrast renders the same whatever
// other modalities are asked for, and the orientation changes only the storage. Reentrant; errors
// throw PhantomError (data/phantom.h) with a one-line message.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "data/phantom.h"
#include "data/volume.h"

namespace sf::data {

struct PhantomVolumeOptions {
  int resolution = 64;           // in-plane voxels (square), 32..1024
  int slices = 0;                // sections per volume, 8..512; 0: drawn per patient in 24..32
  uint64_t seed = 0;
  double lesion_fraction = 0.5;  // probability of a lesion per patient, in [0, 1]
  double noise = 0.03;           // Rician noise sigma relative to full scale (1000)
  std::vector<Contrast> modalities{Contrast::T1, Contrast::T1ce, Contrast::T2, Contrast::Flair};
  std::string orientation = "RAS";  // axis codes (a permutation of one of L/R, A/P, S/I each) or "oblique"
  int force_lesion = -1;         // -1: drawn with lesion_fraction; 0: never; 1: always (same anatomy)
};

// "t1,t1ce,t2,flair" -> contrasts in that order (no repeats, at least one).
std::vector<Contrast> parse_modalities(const std::string& list);
// Upper-cased axis codes (e.g. "LPS") or "oblique"; throws PhantomError for anything else.
std::string parse_phantom_orientation(const std::string& s);

struct PhantomPatient {
  std::string name;          // "Phantom_000"
  int label = 0;             // 1: has a lesion
  std::vector<Volume> images;  // one per options.modalities, in that order
  Volume mask;               // BraTS labels
};

// Patient `index` of `count` (count sets the width of the number in the name, at least 3 digits).
PhantomPatient render_phantom_patient(const PhantomVolumeOptions& opts, int64_t index, int64_t count = 1000);

// The canonical (RAS) volume `v` stored in `orientation` (see above): voxels permuted and flipped,
// affine to match (and rotated for "oblique").
Volume store_oriented(const Volume& v, const std::string& orientation);

// Writes DIR/Phantom_000/Phantom_000_t1.nii.gz (one file per modality, int16) and
// Phantom_000_seg.nii.gz (uint8), ..., and DIR/labels.csv ("patient,label" then one row per
// patient: 1 has a lesion, 0 none). Refuses an existing non-empty `dir` (or a non-directory)
// unless `force`; everything is written to a sibling temporary folder renamed into place at the
// end, so an error never leaves a partial `dir`. `progress` (may be empty) is called on the
// calling thread with (patients written, count) while the workers render, and once at the end.
// count must be in [1, 99999].
PhantomFolderSummary write_phantom_volume_folder(const std::string& dir, int64_t count, const PhantomVolumeOptions& opts,
                                                 bool force = false,
                                                 const std::function<void(int64_t done, int64_t total)>& progress = {});

}  // namespace sf::data
