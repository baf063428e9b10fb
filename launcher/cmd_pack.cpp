// `styleforge pack`: the CLI wrapper of data::pack_dataset (data/import.h).
#include <iostream>
#include <memory>

#include "data/import.h"
#include "launcher/cli.h"
#include "launcher/progress.h"

namespace po = boost::program_options;

namespace sf::cli {

int cmd_pack(const std::vector<std::string>& args) {
  data::ImportOptions o;
  std::string slices;
  bool quiet = false;
  po::options_description desc("options");
  desc.add_options()
      ("source", po::value(&o.source)->required(), "folder of PNG/JPEG, .zip, TF dataset folder or .tfrecords, .nii/.nii.gz (or folder), DICOM file or folder (one series per SeriesInstanceUID)")
      ("dest", po::value(&o.dest)->required(), "the pack to write (must end in .h5)")
      ("force", po::bool_switch(&o.force), "replace an existing pack")
      ("resolution", po::value(&o.resolution)->default_value(0), "output resolution, a power of two (0: keep the source's)")
      ("channels", po::value(&o.channels)->default_value(0), "1 (gray) or 3 (RGB); 0 keeps the source's")
      ("resize-filter", po::value(&o.resize_filter)->default_value("lanczos"), "box | lanczos")
      ("transform", po::value(&o.transform)->default_value(""), "center-crop | pad: how non-square images become square")
      ("max-images", po::value(&o.max_images)->default_value(-1), "pack at most this many images (-1: all)")
      ("labels", po::value(&o.labels)->default_value("auto"), "auto | none | json | folders | csv | mask; volumes: none (auto), csv, mask or folders (the first folder under --source is the class)")
      ("labels-file", po::value(&o.labels_file)->default_value(""), "CSV (name,label or name,v1,v2,...) or JSON labels file; volumes: KEY,LABEL rows (an integer class, a class name or numbers), KEY matched against each volume's relative path, file name, name without .nii/.nii.gz and patient (parent) folder; every volume must match exactly one row")
      ("gzip", po::value(&o.gzip_level)->default_value(0), "gzip level 1..9 for the image chunks (0: none)")
      ("source-kind", po::value(&o.source_kind)->default_value(""),
       "image-folder | nifti | dicom | zip | tfrecords: which files to pack from a folder holding several kinds (the others are listed as skipped); without it such a folder is refused")
      ("dry-run", po::bool_switch(&o.dry_run), "read and slice everything, print what would be packed (files, per-volume orientation and shape, slices kept/dropped, classes, channels, resolution, intensity) and write nothing")
      ("axis", po::value(&o.axis)->default_value("axial"),
       "volumes: slicing plane axial | coronal | sagittal on the canonical RAS grid, radiological display (0 | 1 | 2: the canonical axes, sagittal | coronal | axial)")
      ("slices", po::value(&slices)->default_value(""), "volumes: A:B, the slices [A, B) along the plane")
      ("intensity", po::value(&o.intensity)->default_value("percentile"),
       "volumes, per volume and modality: percentile[:LO:HI] (default 0.5:99.5) | window:CENTER:WIDTH (DICOM: plain `window` uses the file's) | minmax")
      ("min-foreground", po::value(&o.min_foreground)->default_value(0),
       "volumes: drop slices whose foreground fraction is below F (0..1); foreground: pixels whose windowed value is above the volume's Otsu threshold (per modality) in any channel")
      ("mask-glob", po::value(&o.mask_glob)->default_value(""), "volumes, --labels mask: the patient's mask beside each volume, e.g. '*_seg.nii.gz' (never packed as an image)")
      ("mask-values", po::value(&o.mask_values)->default_value(""), "mask values that are lesion, e.g. 1,2,4 (default: any non-zero)")
      ("mask-min-voxels", po::value(&o.mask_min_voxels)->default_value(1),
       "a slice is 'lesion' (1) with at least N lesion voxels, 'no-lesion' (0) with none; slices with 0 < count < N are ambiguous and dropped")
      ("keep-classes", po::value(&o.keep_classes)->default_value(""), "keep only slices of these classes, e.g. 0,1")
      ("channels-from", po::value(&o.channels_from)->default_value(""),
       "NIfTI modalities as channels: NAME:GLOB,... e.g. 't1:*_t1.nii.gz,flair:*_flair.nii.gz'; one file per modality in each patient folder, same canonical grid")
      ("quiet", po::bool_switch(&quiet), "no progress bar");
  po::variables_map vm;
  if (int rc = parse_options("pack", "--source PATH --dest FILE.h5 [options]", args, desc, vm); rc >= 0) return rc;
  if (!slices.empty()) {
    auto colon = slices.find(':');
    try {
      if (colon == std::string::npos) throw std::invalid_argument("no colon");
      std::string a = slices.substr(0, colon), b = slices.substr(colon + 1);
      o.slice_begin = a.empty() ? 0 : std::stoll(a);
      o.slice_end = b.empty() ? -1 : std::stoll(b);
    } catch (const std::exception&) {
      std::cerr << "styleforge pack: --slices must be A:B (see styleforge pack --help)\n";
      return kUsage;
    }
  }
  std::unique_ptr<Progress> bar;
  if (!quiet && !o.dry_run) o.progress = pack_progress(bar);
  o.notice = [](const std::string& line) { std::cerr << line << "\n"; };  // before packing starts
  data::ImportSummary s = data::pack_dataset(o);
  if (bar) bar->finish();
  for (const auto& l : s.report_lines) std::cout << l << "\n";
  std::cout << s.line() << "\n";
  return kOk;
}

}  // namespace sf::cli
