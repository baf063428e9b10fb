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
      ("source", po::value(&o.source)->required(), "folder of PNG/JPEG, .zip, TF dataset folder or .tfrecords, .nii/.nii.gz (or folder), DICOM file or folder")
      ("dest", po::value(&o.dest)->required(), "the pack to write (FILE.h5)")
      ("force", po::bool_switch(&o.force), "replace an existing pack")
      ("resolution", po::value(&o.resolution)->default_value(0), "output resolution, a power of two (0: keep the source's)")
      ("channels", po::value(&o.channels)->default_value(0), "1 (gray) or 3 (RGB); 0 keeps the source's")
      ("resize-filter", po::value(&o.resize_filter)->default_value("lanczos"), "box | lanczos")
      ("transform", po::value(&o.transform)->default_value(""), "center-crop | pad: how non-square images become square")
      ("max-images", po::value(&o.max_images)->default_value(-1), "pack at most this many images (-1: all)")
      ("labels", po::value(&o.labels)->default_value("auto"), "auto | none | json | folders | csv")
      ("labels-file", po::value(&o.labels_file)->default_value(""), "CSV (name,label or name,v1,v2,...) or JSON labels file")
      ("gzip", po::value(&o.gzip_level)->default_value(0), "gzip level 1..9 for the image chunks (0: none)")
      ("axis", po::value(&o.axis)->default_value(2), "volumes: slicing axis 0, 1 or 2")
      ("slices", po::value(&slices)->default_value(""), "volumes: A:B, the slices [A, B) along the axis")
      ("intensity", po::value(&o.intensity)->default_value("minmax"), "volumes: minmax | percentile[:LO:HI] | window[:CENTER:WIDTH]")
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
  if (!quiet) o.progress = pack_progress(bar);
  data::ImportSummary s = data::pack_dataset(o);
  if (bar) bar->finish();
  std::cout << s.line() << "\n";
  return kOk;
}

}  // namespace sf::cli
