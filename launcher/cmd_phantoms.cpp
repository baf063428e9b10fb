// `styleforge phantoms`: the CLI wrapper of data::write_phantom_folder (data/phantom.h), a folder
// of MRI-like head phantoms with dataset.json labels that `styleforge pack` turns into a pack, and
// with --volumes of data::write_phantom_volume_folder (data/phantom_volume.h), a BraTS-style folder
// of multi-modal NIfTI volumes with lesion masks and per-patient labels.
#include <cstdio>
#include <iostream>

#include "data/phantom.h"
#include "data/phantom_volume.h"
#include "launcher/cli.h"
#include "launcher/progress.h"

namespace po = boost::program_options;

namespace sf::cli {

int cmd_phantoms(const std::vector<std::string>& args) {
  data::PhantomOptions o;
  std::string dest, out, weighting, modalities, orientation;
  int64_t count = 1000;
  int slices = 0;
  bool force = false, quiet = false, volumes = false;
  po::options_description desc("options");
  desc.add_options()
      ("dest", po::value(&dest), "the folder to write (img00000000.png ... and dataset.json; with --volumes the patient folders and labels.csv)")
      ("out", po::value(&out), "same as --dest")
      ("count", po::value(&count)->default_value(1000), "number of images (with --volumes: patients, default 20)")
      ("resolution", po::value(&o.resolution)->default_value(64), "image size in pixels, a power of two (8..4096); with --volumes any size in 32..1024")
      ("seed", po::value(&o.seed)->default_value(0), "random seed; image (patient) i depends only on (seed, i) and the options")
      ("lesion-fraction", po::value(&o.lesion_fraction)->default_value(0.5, "0.5"), "probability of a lesion (label 1) per image or patient")
      ("noise", po::value(&o.noise)->default_value(0.03, "0.03"), "Rician noise sigma relative to full scale")
      ("weighting", po::value(&weighting)->default_value("t1"), "t1 | t2: tissue contrast (images)")
      ("volumes", po::bool_switch(&volumes),
       "write BraTS-style volumes instead of images: DIR/Phantom_000/Phantom_000_{t1,t1ce,t2,flair,seg}.nii.gz "
       "(int16 images about 0..1000, seg labels 0 none, 1 necrotic core, 2 oedema, 4 enhancing rim; voxels "
       "1 x 1 x 2.5 mm) and DIR/labels.csv (patient,label: 1 has a lesion)")
      ("slices", po::value(&slices)->default_value(0), "--volumes: axial sections per volume (8..512; 0: 24..32, drawn per patient); the first and last are air")
      ("modalities", po::value(&modalities)->default_value("t1,t1ce,t2,flair"), "--volumes: modalities to write, from t1, t1ce, t2, flair")
      ("orientation", po::value(&orientation)->default_value("RAS"),
       "--volumes: storage order as axis codes (RAS, LPS, LAS, PSR, ...; the affine matches, so reorienting to RAS "
       "gives the same voxels) or oblique (LPS with the affine rotated 12 degrees about left-right)")
      ("force", po::bool_switch(&force), "replace an existing non-empty folder")
      ("quiet", po::bool_switch(&quiet), "no progress bar");
  po::variables_map vm;
  if (int rc = parse_options("phantoms",
                             "--dest DIR [--count 1000] [--resolution 64] [--seed 0] [options]\n"
                             "       styleforge phantoms --volumes --out DIR [--count 20] [--resolution 64] [--slices S] "
                             "[--modalities t1,t1ce,t2,flair] [--orientation RAS|LPS|...|oblique] [options]",
                             args, desc, vm);
      rc >= 0)
    return rc;
  auto usage = [](const std::string& msg) {
    std::cerr << "styleforge phantoms: " << msg << " (see styleforge phantoms --help)\n";
    return kUsage;
  };
  if (!dest.empty() && !out.empty() && dest != out) return usage("--dest and --out name different folders");
  if (dest.empty()) dest = out;
  if (dest.empty()) return usage("the option '--dest' (or '--out') is required but missing");
  if (!(o.lesion_fraction >= 0 && o.lesion_fraction <= 1)) return usage("--lesion-fraction must be in [0, 1]");
  if (!(o.noise >= 0 && o.noise <= 1)) return usage("--noise must be in [0, 1]");

  if (volumes) {
    data::PhantomVolumeOptions v;
    if (vm["count"].defaulted()) count = 20;
    if (o.resolution < 32 || o.resolution > 1024) return usage("--resolution must be in [32, 1024] with --volumes");
    if (count < 1 || count > 99999) return usage("--count must be in [1, 99999] with --volumes");
    if (slices != 0 && (slices < 8 || slices > 512)) return usage("--slices must be in [8, 512] (or 0: 24..32)");
    if (!vm["weighting"].defaulted()) return usage("--weighting applies to images; volumes take --modalities");
    v.resolution = o.resolution;
    v.slices = slices;
    v.seed = o.seed;
    v.lesion_fraction = o.lesion_fraction;
    v.noise = o.noise;
    try {
      v.modalities = data::parse_modalities(modalities);
    } catch (const data::PhantomError& e) {
      return usage(std::string("--modalities: ") + e.what());
    }
    try {
      v.orientation = data::parse_phantom_orientation(orientation);
    } catch (const data::PhantomError& e) {
      return usage(std::string("--orientation: ") + e.what());
    }
    Progress bar("phantoms", count, "patients", Progress::enabled_if(!quiet));
    data::PhantomFolderSummary s = data::write_phantom_volume_folder(
        dest, count, v, force, [&bar](int64_t done, int64_t total) { bar.update(done); });
    std::string mods;
    for (data::Contrast c : v.modalities) mods += std::string(mods.empty() ? "" : ",") + data::contrast_name(c);
    const std::string depth = slices > 0 ? std::to_string(slices) : std::string("24..32");
    std::printf("wrote %lld phantom patients %dx%dx%s (%s + seg, %s; %lld with a lesion, label 1) to %s in %.2f s\n",
                static_cast<long long>(s.count), v.resolution, v.resolution, depth.c_str(), mods.c_str(),
                v.orientation.c_str(), static_cast<long long>(s.lesions), dest.c_str(), s.seconds);
    return kOk;
  }

  if (vm.count("slices") && !vm["slices"].defaulted()) return usage("--slices applies to --volumes only");
  if (!vm["modalities"].defaulted()) return usage("--modalities applies to --volumes only");
  if (!vm["orientation"].defaulted()) return usage("--orientation applies to --volumes only");
  if (o.resolution < 8 || o.resolution > 4096 || (o.resolution & (o.resolution - 1)))
    return usage("--resolution must be a power of two in [8, 4096]");
  if (count < 1 || count > 99999999) return usage("--count must be in [1, 99999999]");
  try {
    o.weighting = data::parse_weighting(weighting);
  } catch (const data::PhantomError& e) {
    return usage(std::string("--weighting: ") + e.what());
  }
  Progress bar("phantoms", count, "images", Progress::enabled_if(!quiet));
  data::PhantomFolderSummary s =
      data::write_phantom_folder(dest, count, o, force, [&bar](int64_t done, int64_t total) { bar.update(done); });
  std::printf("wrote %lld phantoms %dx%d (%lld with a lesion, label 1) to %s in %.2f s\n", static_cast<long long>(s.count),
              o.resolution, o.resolution, static_cast<long long>(s.lesions), dest.c_str(), s.seconds);
  return kOk;
}

}  // namespace sf::cli
