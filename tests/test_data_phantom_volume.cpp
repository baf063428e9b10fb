// BraTS-like phantom volumes (data/phantom_volume.h): the folder layout, shapes and affines read
// back through the NIfTI reader, masks against labels.csv, orientations that reorient back to the
// same canonical voxels (our reader and nibabel's), modality contrasts inside the lesion, and
// determinism.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "data/nifti.h"
#include "data/orient.h"
#include "data/phantom.h"
#include "data/phantom_volume.h"
#include "tests/test_data_util.h"

namespace fs = std::filesystem;
using namespace sf::data;
using sf::test::ScratchDir;

namespace {

const char* kMods[] = {"t1", "t1ce", "t2", "flair"};

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

std::vector<std::pair<std::string, int>> read_labels_csv(const std::string& path) {
  std::ifstream f(path);
  std::string line;
  std::getline(f, line);
  EXPECT_EQ(line, "patient,label");
  std::vector<std::pair<std::string, int>> rows;
  while (std::getline(f, line)) {
    const size_t comma = line.find(',');
    EXPECT_NE(comma, std::string::npos) << line;
    rows.emplace_back(line.substr(0, comma), std::stoi(line.substr(comma + 1)));
  }
  return rows;
}

// Voxel (i, j, k) -> world mm through an affine.
std::array<double, 3> world(const Affine& a, double i, double j, double k) {
  std::array<double, 3> w{};
  for (int r = 0; r < 3; ++r) w[static_cast<size_t>(r)] = a[r][0] * i + a[r][1] * j + a[r][2] * k + a[r][3];
  return w;
}

double mean_where(const Volume& v, const Volume& mask, float label) {
  double s = 0;
  int64_t n = 0;
  for (size_t i = 0; i < v.data.size(); ++i)
    if (mask.data[i] == label) s += v.data[i], ++n;
  return n ? s / static_cast<double>(n) : -1;
}

TEST(DataPhantomVolume, FolderShapesAffinesMasksAndLabels) {
  ScratchDir tmp("phvol_folder");
  PhantomVolumeOptions o;
  o.resolution = 32;
  o.slices = 12;
  o.seed = 4;
  const std::string dir = tmp / "brats";
  PhantomFolderSummary s = write_phantom_volume_folder(dir, 8, o);
  EXPECT_EQ(s.count, 8);
  for (const auto& e : fs::directory_iterator(tmp.path))  // no temporary folder left beside it
    EXPECT_EQ(e.path().filename().string(), "brats");

  const auto rows = read_labels_csv(dir + "/labels.csv");
  ASSERT_EQ(rows.size(), 8u);
  std::set<std::string> folders;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_directory()) folders.insert(e.path().filename().string());
  EXPECT_EQ(folders.size(), 8u);
  int lesions = 0;
  for (size_t p = 0; p < rows.size(); ++p) {
    const std::string& name = rows[p].first;
    char want[32];
    std::snprintf(want, sizeof want, "Phantom_%03zu", p);
    EXPECT_EQ(name, want);
    EXPECT_TRUE(folders.count(name)) << name;
    std::set<std::string> files;
    for (const auto& e : fs::directory_iterator(dir + "/" + name)) files.insert(e.path().filename().string());
    EXPECT_EQ(files, (std::set<std::string>{name + "_flair.nii.gz", name + "_seg.nii.gz", name + "_t1.nii.gz",
                                            name + "_t1ce.nii.gz", name + "_t2.nii.gz"}));

    const Volume mask = read_nifti_volume(dir + "/" + name + "/" + name + "_seg.nii.gz");
    ASSERT_EQ(mask.nx, 32);
    ASSERT_EQ(mask.ny, 32);
    ASSERT_EQ(mask.nz, 12);
    // 1 x 1 x 2.5 mm, RAS, grid centre at the world origin.
    const Affine want_affine{{{1, 0, 0, -15.5}, {0, 1, 0, -15.5}, {0, 0, 2.5, -13.75}, {0, 0, 0, 1}}};
    for (int r = 0; r < 4; ++r)
      for (int c = 0; c < 4; ++c) EXPECT_NEAR(mask.affine[r][c], want_affine[r][c], 1e-5) << name << " " << r << c;
    int lesion_voxels = 0;
    std::set<int64_t> lesion_slices;
    for (int64_t k = 0; k < mask.nz; ++k)
      for (int64_t j = 0; j < mask.ny; ++j)
        for (int64_t i = 0; i < mask.nx; ++i) {
          const float m = mask.at(i, j, k);
          EXPECT_TRUE(m == 0 || m == 1 || m == 2 || m == 4) << name << " value " << m;
          if (m != 0) ++lesion_voxels, lesion_slices.insert(k);
        }
    EXPECT_EQ(rows[p].second, lesion_voxels > 0 ? 1 : 0) << name << " has " << lesion_voxels << " lesion voxels";
    if (lesion_voxels > 0) {  // an ellipsoid: a contiguous run of some of the slices
      EXPECT_LT(lesion_slices.size(), 12u) << name;
      EXPECT_EQ(*lesion_slices.rbegin() - *lesion_slices.begin() + 1, static_cast<int64_t>(lesion_slices.size())) << name;
    }
    lesions += rows[p].second;

    for (const char* mod : kMods) {
      const std::string path = dir + "/" + name + "/" + name + "_" + mod + ".nii.gz";
      const NiftiVolume raw = read_nifti(path);
      EXPECT_EQ(raw.dtype, "int16") << path;
      const Volume v = read_nifti_volume(path);
      ASSERT_EQ(v.nx, 32);
      ASSERT_EQ(v.ny, 32);
      ASSERT_EQ(v.nz, 12);
      for (int r = 0; r < 4; ++r)
        for (int c = 0; c < 4; ++c) EXPECT_NEAR(v.affine[r][c], mask.affine[r][c], 1e-6) << path;  // co-registered
      // Air above and below the head: the first and last slices hold noise only, the middle a head
      // that is wider than the slices near the top and bottom.
      auto slice_max = [&](int64_t k) {
        float m = 0;
        for (int64_t j = 0; j < 32; ++j)
          for (int64_t i = 0; i < 32; ++i) m = std::max(m, v.at(i, j, k));
        return m;
      };
      auto slice_count = [&](int64_t k, float level) {
        int n = 0;
        for (int64_t j = 0; j < 32; ++j)
          for (int64_t i = 0; i < 32; ++i) n += v.at(i, j, k) > level;
        return n;
      };
      EXPECT_LT(slice_max(0), 200) << path;
      EXPECT_LT(slice_max(11), 200) << path;
      EXPECT_GT(slice_max(6), 500) << path;
      EXPECT_LT(slice_max(6), 1500) << path;
      EXPECT_GT(slice_count(6, 200), 250) << path;
      EXPECT_GT(slice_count(6, 200), slice_count(2, 200) + 50) << path;
      EXPECT_GT(slice_count(6, 200), slice_count(9, 200) + 50) << path;
    }
  }
  EXPECT_EQ(s.lesions, lesions);
  EXPECT_GT(lesions, 0);  // this seed has both kinds of patients
  EXPECT_LT(lesions, 8);
  // Per-patient labels are those of the 2-D phantoms of the same index.
  PhantomOptions po;
  po.seed = 4;
  for (size_t p = 0; p < rows.size(); ++p) {
    int label = -1;
    po.resolution = 8;
    render_phantom(po, static_cast<int64_t>(p), &label);
    EXPECT_EQ(rows[p].second, label);
  }
}

TEST(DataPhantomVolume, LesionPatientsAlwaysHaveLesionVoxels) {
  PhantomVolumeOptions o;
  o.resolution = 32;
  o.slices = 10;
  o.modalities = {Contrast::T1};
  for (int force : {0, 1})
    for (int idx = 0; idx < 12; ++idx) {
      o.force_lesion = force;
      const PhantomPatient p = render_phantom_patient(o, idx);
      EXPECT_EQ(p.label, force);
      const auto lesion = std::count_if(p.mask.data.begin(), p.mask.data.end(), [](float m) { return m != 0; });
      if (force) {
        EXPECT_GT(lesion, 0) << idx;
        EXPECT_GT(std::count(p.mask.data.begin(), p.mask.data.end(), 4.0f), 0) << idx;  // an enhancing rim
      } else {
        EXPECT_EQ(lesion, 0) << idx;
      }
    }
}

TEST(DataPhantomVolume, OrientationsReorientToTheSameCanonicalVoxels) {
  ScratchDir tmp("phvol_orient");
  PhantomVolumeOptions o;
  o.resolution = 32;
  o.slices = 10;
  o.seed = 9;
  o.force_lesion = 1;
  o.modalities = {Contrast::T1ce, Contrast::Flair};
  std::map<std::string, std::string> dirs;
  for (std::string orient : {"RAS", "LPS", "PSR", "ILA", "oblique"}) {
    o.orientation = orient;
    dirs[orient] = tmp / orient;
    write_phantom_volume_folder(dirs[orient], 2, o);
  }
  for (const std::string file : {"Phantom_001_t1ce.nii.gz", "Phantom_001_flair.nii.gz", "Phantom_001_seg.nii.gz"}) {
    const Volume ras = read_nifti_volume(dirs["RAS"] + "/Phantom_001/" + file);
    ASSERT_EQ(axis_codes(ras.affine), "RAS");
    ASSERT_EQ(ras.nz, 10);
    for (const std::string orient : {"LPS", "PSR", "ILA", "oblique"}) {
      const std::string path = dirs[orient] + "/Phantom_001/" + file;
      const Volume v = read_nifti_volume(path);
      EXPECT_EQ(axis_codes(v.affine), orient == "oblique" ? "LPS" : orient) << path;
      // Every stored voxel sits at the world position of the RAS voxel holding the same value
      // (oblique: rotated by 12 degrees about the x axis).
      const double th = orient == "oblique" ? 12.0 * M_PI / 180.0 : 0.0;
      for (int64_t k = 0; k < v.nz; k += 3)
        for (int64_t j = 0; j < v.ny; j += 5)
          for (int64_t i = 0; i < v.nx; i += 7) {
            auto w = world(v.affine, i, j, k);
            // Undo the rotation, then find the RAS voxel at that point.
            const double y = std::cos(th) * w[1] + std::sin(th) * w[2], z = -std::sin(th) * w[1] + std::cos(th) * w[2];
            const double ri = w[0] - ras.affine[0][3], rj = y - ras.affine[1][3], rk = (z - ras.affine[2][3]) / 2.5;
            const auto ii = std::lround(ri), jj = std::lround(rj), kk = std::lround(rk);
            ASSERT_NEAR(ri, ii, 1e-4);
            ASSERT_NEAR(rj, jj, 1e-4);
            ASSERT_NEAR(rk, kk, 1e-4);
            EXPECT_EQ(v.at(i, j, k), ras.at(ii, jj, kk)) << path << " voxel " << i << "," << j << "," << k;
          }
      const Volume canon = to_canonical(v);
      EXPECT_EQ(canon.nx, ras.nx) << path;
      EXPECT_EQ(canon.ny, ras.ny) << path;
      EXPECT_EQ(canon.nz, ras.nz) << path;
      EXPECT_EQ(canon.data, ras.data) << path;
      if (orient == "oblique") {  // the j axis is tilted 12 degrees towards superior
        const double n = std::hypot(canon.affine[1][1], canon.affine[2][1], canon.affine[0][1]);
        EXPECT_NEAR(canon.affine[1][1] / n, std::cos(12.0 * M_PI / 180.0), 1e-5);
        EXPECT_NEAR(canon.affine[2][1] / n, std::sin(12.0 * M_PI / 180.0), 1e-5);
      } else {
        for (int r = 0; r < 4; ++r)
          for (int c = 0; c < 4; ++c) EXPECT_NEAR(canon.affine[r][c], ras.affine[r][c], 1e-5) << path;
      }
    }
  }
  // nibabel, an independent reader: its closest canonical form of each layout has the RAS file's
  // voxels, and its axis codes are the requested ones.
  std::ostringstream py;
  py << "/usr/bin/python3 -c \"\n"
        "import sys, numpy as np, nibabel as nib\n"
        "base = sys.argv[1]\n"
        "for f in ['Phantom_001_t1ce.nii.gz', 'Phantom_001_seg.nii.gz']:\n"
        "    ras = nib.load(base + '/RAS/Phantom_001/' + f)\n"
        "    assert nib.aff2axcodes(ras.affine) == ('R', 'A', 'S')\n"
        "    for o in ['LPS', 'PSR', 'ILA', 'oblique']:\n"
        "        img = nib.load(base + '/' + o + '/Phantom_001/' + f)\n"
        "        codes = ''.join(nib.aff2axcodes(img.affine))\n"
        "        assert codes == ('LPS' if o == 'oblique' else o), (o, codes)\n"
        "        c = nib.as_closest_canonical(img)\n"
        "        assert np.array_equal(c.get_fdata(), ras.get_fdata()), (o, f)\n"
        "print('nibabel ok')\n"
        "\" "
     << tmp.path.string();
  const auto r = sf::test::run_shell(py.str());
  EXPECT_EQ(r.rc, 0) << r.out << "(needs /usr/bin/python3 with nibabel: scripts/install-test-deps.sh)";
  EXPECT_NE(r.out.find("nibabel ok"), std::string::npos) << r.out;
  EXPECT_THROW(parse_phantom_orientation("RAR"), PhantomError);
  EXPECT_THROW(parse_phantom_orientation("RASX"), PhantomError);
  EXPECT_EQ(parse_phantom_orientation("lps"), "LPS");
}

TEST(DataPhantomVolume, ModalityContrastsInsideTheLesion) {
  // The same heads with and without a lesion (separate random streams): the lesion's voxels
  // compared with the same voxels of the lesion-free head, and between modalities.
  PhantomVolumeOptions on, off;
  on.slices = off.slices = 16;
  on.force_lesion = 1;
  off.force_lesion = 0;
  double flair_oedema = 0, flair_before = 0, t2_oedema = 0, t2_before = 0, t1_oedema = 0, t1_before = 0;
  double t1_rim = 0, t1ce_rim = 0, t2_core = 0, t2_rim = 0, t1ce_core = 0;
  double t1_brain = 0, t1ce_brain = 0;
  int64_t n_oed = 0, n_rim = 0, n_core = 0, n_brain = 0;
  for (int idx = 0; idx < 6; ++idx) {
    const PhantomPatient a = render_phantom_patient(on, idx), b = render_phantom_patient(off, idx);
    ASSERT_EQ(a.images.size(), 4u);  // t1, t1ce, t2, flair
    const auto &t1 = a.images[0].data, &t1ce = a.images[1].data, &t2 = a.images[2].data, &fl = a.images[3].data;
    const auto &t1_0 = b.images[0].data, &t2_0 = b.images[2].data, &fl_0 = b.images[3].data;
    for (size_t i = 0; i < a.mask.data.size(); ++i) {
      const float m = a.mask.data[i];
      if (m == 2) {
        flair_oedema += fl[i], flair_before += fl_0[i], t2_oedema += t2[i], t2_before += t2_0[i];
        t1_oedema += t1[i], t1_before += t1_0[i], ++n_oed;
      } else if (m == 4) {
        t1_rim += t1[i], t1ce_rim += t1ce[i], t2_rim += t2[i], ++n_rim;
      } else if (m == 1) {
        t2_core += t2[i], t1ce_core += t1ce[i], ++n_core;
      } else if (t1_0[i] > 400) {  // bright lesion-free tissue (mostly white matter, scalp)
        t1_brain += t1[i], t1ce_brain += t1ce[i], ++n_brain;
      }
    }
  }
  ASSERT_GT(n_oed, 50);
  ASSERT_GT(n_rim, 50);
  ASSERT_GT(n_core, 5);
  // Oedema: brighter than the white matter it replaced on FLAIR and T2, darker on T1.
  EXPECT_GT(flair_oedema / n_oed, 1.4 * flair_before / n_oed);
  EXPECT_GT(t2_oedema / n_oed, 1.3 * t2_before / n_oed);
  EXPECT_LT(t1_oedema / n_oed, 0.9 * t1_before / n_oed);
  // Enhancing rim: bright on T1ce, not on T1; outside the lesion T1ce and T1 agree.
  EXPECT_GT(t1ce_rim / n_rim, 1.5 * t1_rim / n_rim);
  EXPECT_GT(t1ce_brain / n_brain, 0.85 * t1_brain / n_brain);
  EXPECT_LT(t1ce_brain / n_brain, 1.15 * t1_brain / n_brain);
  // Necrotic core: fluid-bright on T2 against the rim, dark on T1ce against the rim.
  EXPECT_GT(t2_core / n_core, 1.2 * t2_rim / n_rim);
  EXPECT_LT(t1ce_core / n_core, 0.5 * t1ce_rim / n_rim);
  // FLAIR suppresses fluid: the necrotic core and CSF are darker on FLAIR than on T2 while the
  // oedema is brighter.
  double fl_fluid = 0, t2c = 0;
  const PhantomPatient a = render_phantom_patient(on, 0);
  EXPECT_GT(mean_where(a.images[3], a.mask, 2), mean_where(a.images[2], a.mask, 2));
  for (size_t i = 0; i < a.mask.data.size(); ++i)
    if (a.mask.data[i] == 0 && a.images[2].data[i] > 650) fl_fluid += a.images[3].data[i], t2c += a.images[2].data[i];
  EXPECT_LT(fl_fluid, 0.5 * t2c);  // T2-bright lesion-free voxels (CSF) are dark on FLAIR
}

TEST(DataPhantomVolume, DeterministicBytes) {
  ScratchDir tmp("phvol_det");
  PhantomVolumeOptions o;
  o.resolution = 32;
  o.slices = 9;
  o.seed = 2;
  o.orientation = "LAS";
  write_phantom_volume_folder(tmp / "a", 3, o);
  write_phantom_volume_folder(tmp / "b", 3, o);
  int files = 0;
  for (const auto& e : fs::recursive_directory_iterator(tmp / "a")) {
    if (!e.is_regular_file()) continue;
    const std::string rel = fs::relative(e.path(), tmp / "a").string();
    EXPECT_EQ(slurp(e.path().string()), slurp(tmp / ("b/" + rel))) << rel;
    ++files;
  }
  EXPECT_EQ(files, 3 * 5 + 1);
  // One modality renders the same whatever else is asked for; another seed changes it.
  o.modalities = {Contrast::T2};
  write_phantom_volume_folder(tmp / "c", 3, o);
  EXPECT_EQ(slurp(tmp / "c/Phantom_002/Phantom_002_t2.nii.gz"), slurp(tmp / "a/Phantom_002/Phantom_002_t2.nii.gz"));
  EXPECT_EQ(slurp(tmp / "c/Phantom_002/Phantom_002_seg.nii.gz"), slurp(tmp / "a/Phantom_002/Phantom_002_seg.nii.gz"));
  EXPECT_FALSE(fs::exists(tmp / "c/Phantom_002/Phantom_002_t1.nii.gz"));
  o.seed = 3;
  write_phantom_volume_folder(tmp / "d", 3, o);
  EXPECT_NE(slurp(tmp / "d/Phantom_002/Phantom_002_t2.nii.gz"), slurp(tmp / "a/Phantom_002/Phantom_002_t2.nii.gz"));
  // Default slices: drawn per patient in 24..32.
  PhantomVolumeOptions d;
  d.resolution = 32;
  d.modalities = {Contrast::T1};
  std::set<int64_t> depths;
  for (int idx = 0; idx < 8; ++idx) {
    const PhantomPatient p = render_phantom_patient(d, idx);
    EXPECT_GE(p.mask.nz, 24);
    EXPECT_LE(p.mask.nz, 32);
    depths.insert(p.mask.nz);
  }
  EXPECT_GT(depths.size(), 1u);
}

TEST(DataPhantomVolume, RefusesNonEmptyDestinationAndBadOptions) {
  ScratchDir tmp("phvol_refuse");
  PhantomVolumeOptions o;
  o.resolution = 32;
  o.slices = 8;
  o.modalities = {Contrast::T1};
  const std::string dir = tmp / "v";
  fs::create_directories(dir);
  { std::ofstream(dir + "/keep.txt") << "mine"; }
  try {
    write_phantom_volume_folder(dir, 2, o);
    FAIL() << "wrote into a non-empty folder";
  } catch (const PhantomError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(dir), std::string::npos) << msg;
    EXPECT_NE(msg.find("--force"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
  EXPECT_FALSE(fs::exists(dir + "/labels.csv"));
  write_phantom_volume_folder(dir, 2, o, true);
  EXPECT_FALSE(fs::exists(dir + "/keep.txt"));
  EXPECT_TRUE(fs::exists(dir + "/Phantom_001/Phantom_001_seg.nii.gz"));
  o.resolution = 16;
  EXPECT_THROW(write_phantom_volume_folder(tmp / "x", 1, o), PhantomError);
  o.resolution = 32;
  o.orientation = "XYZ";
  EXPECT_THROW(write_phantom_volume_folder(tmp / "x", 1, o), PhantomError);
  EXPECT_FALSE(fs::exists(tmp / "x"));
  int leftovers = 0;
  for (const auto& e : fs::directory_iterator(tmp.path)) leftovers += e.path().filename().string().find(".tmp-") != std::string::npos;
  EXPECT_EQ(leftovers, 0);
  EXPECT_EQ(parse_modalities("T2, flair"), (std::vector<Contrast>{Contrast::T2, Contrast::Flair}));
  EXPECT_THROW(parse_modalities("t1,t1"), PhantomError);
  EXPECT_THROW(parse_modalities("t1,,t2"), PhantomError);
  EXPECT_THROW(parse_modalities("pd"), PhantomError);
}

#ifdef STYLEFORGE_BINARY
TEST(DataPhantomVolumeCli, WritesVolumesAndChecksOptions) {
  ScratchDir tmp("phvol_cli");
  const std::string dir = tmp / "brats";
  auto r = sf::test::run_styleforge("phantoms --volumes --quiet --out " + dir +
                                    " --count 3 --resolution 32 --slices 10 --orientation LPS --seed 1");
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("wrote 3 phantom patients 32x32x10 (t1,t1ce,t2,flair + seg, LPS;"), std::string::npos) << r.out;
  const Volume v = read_nifti_volume(dir + "/Phantom_002/Phantom_002_flair.nii.gz");
  EXPECT_EQ(axis_codes(v.affine), "LPS");
  EXPECT_EQ(read_labels_csv(dir + "/labels.csv").size(), 3u);
  r = sf::test::run_styleforge("phantoms --volumes --quiet --out " + dir + " --count 3");
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("not empty"), std::string::npos) << r.out;
  for (const std::string bad : {"--orientation RSS", "--modalities t1,pd", "--resolution 16", "--slices 4", "--weighting t2"}) {
    r = sf::test::run_styleforge("phantoms --volumes --quiet --out " + (tmp / "y") + " --count 1 " + bad);
    EXPECT_EQ(r.rc, 2) << bad << ": " << r.out;
    EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
  }
  r = sf::test::run_styleforge("phantoms --out " + (tmp / "y") + " --orientation LPS");  // images take no orientation
  EXPECT_EQ(r.rc, 2) << r.out;
  EXPECT_FALSE(fs::exists(tmp / "y"));
  r = sf::test::run_styleforge("phantoms --help");
  EXPECT_EQ(r.rc, 0);
  EXPECT_NE(r.out.find("--volumes"), std::string::npos);
  EXPECT_NE(r.out.find("--orientation"), std::string::npos);
}
#endif

}  // namespace
