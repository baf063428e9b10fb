#!/usr/bin/python3
"""Reference orientation data from nibabel for tests/test_data_nifti.cpp.

Usage: orient_nibabel.py OUTDIR [EXTRA.nii ...]

Writes NIfTI volumes (random integer-valued data, many affines and header variants) into
OUTDIR and, for every volume and every EXTRA file, what nibabel makes of it:
  - the affine nibabel reads (img.affine, its get_best_affine rule) and nib.aff2axcodes of it,
  - the canonical image (nib.as_closest_canonical): shape, affine and aff2axcodes of it,
  - every display slice of every plane and time point, cut from the canonical data C with the
    formulas of data/orient.h: axial np.flip(C[:, :, s].T), coronal np.flip(C[:, s, :].T),
    sagittal np.flip(C[s, :, :].T); raw little-endian float32, in the order [t][s][row][col].
OUTDIR/cases.json lists them. Run with Debian's /usr/bin/python3 (nibabel, numpy).
"""
import itertools
import json
import math
import os
import sys

import numpy as np
import nibabel as nib


def rot(axis, degrees):
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    if axis == 0:
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == 1:
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def affine(m3, offset=(-10.0, 20.5, 7.25)):
    a = np.eye(4)
    a[:3, :3] = m3
    a[:3, 3] = offset
    return a


def display_slices(canon, plane):
    """All display slices of one plane, [t][s][row][col], as float32."""
    c4 = canon if canon.ndim == 4 else canon[..., np.newaxis]
    out = []
    for t in range(c4.shape[3]):
        c = c4[..., t]
        n = c.shape[{"sagittal": 0, "coronal": 1, "axial": 2}[plane]]
        for s in range(n):
            if plane == "axial":
                sl = np.flip(c[:, :, s].T)
            elif plane == "coronal":
                sl = np.flip(c[:, s, :].T)
            else:
                sl = np.flip(c[s, :, :].T)
            out.append(np.ascontiguousarray(sl, dtype="<f4"))
    return np.stack(out)


def describe(outdir, name, path):
    """nibabel's view of the file at `path` (read back from disk)."""
    img = nib.load(path)
    canon = nib.as_closest_canonical(img)
    data = np.asarray(canon.get_fdata(), dtype=np.float64)
    case = {
        "name": name,
        "file": path,
        "affine": img.affine.tolist(),
        "axcodes": "".join(nib.aff2axcodes(img.affine)),
        "sform_code": int(img.header["sform_code"]),
        "qform_code": int(img.header["qform_code"]),
        "shape": [int(x) for x in img.shape],
        "canonical_shape": [int(x) for x in canon.shape],
        "canonical_affine": canon.affine.tolist(),
        "canonical_axcodes": "".join(nib.aff2axcodes(canon.affine)),
        "planes": {},
    }
    for plane in ("axial", "coronal", "sagittal"):
        sl = display_slices(data, plane)
        f = os.path.join(outdir, "%s.%s.f32" % (name, plane))
        sl.astype("<f4").tofile(f)
        case["planes"][plane] = {"file": f, "count": int(sl.shape[0]), "rows": int(sl.shape[1]),
                                 "cols": int(sl.shape[2])}
    return case


def main():
    if len(sys.argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    rng = np.random.RandomState(20261130)
    shape3 = (5, 6, 7)  # all sides differ: a swapped axis changes the slice shapes
    vol3 = rng.randint(0, 1000, size=shape3).astype(np.float32)
    vol4 = rng.randint(0, 1000, size=shape3 + (2,)).astype(np.float32)
    zooms = np.diag([1.2, 0.9, 2.5])

    # (name, 3x3 direction/zoom matrix, variant)
    specs = [("identity_ras", np.eye(3), "both")]
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            m = np.zeros((3, 3))
            for i in range(3):
                m[perm[i], i] = signs[i]
            tag = "".join(str(p) for p in perm) + "_" + "".join("p" if s > 0 else "m" for s in signs)
            specs.append(("perm_" + tag, m @ zooms, "both"))
    for axis in range(3):
        for deg in (10, 30, 44, -44, 60, 100, 170, -135):
            specs.append(("rot%s_%d" % ("xyz"[axis], deg), rot(axis, deg) @ zooms, "both"))
    combos = [
        ("rz30_ry10_rx44", rot(2, 30) @ rot(1, 10) @ rot(0, 44)),
        ("rx44_ry30_rz10", rot(0, 44) @ rot(1, 30) @ rot(2, 10)),
        ("rx_m60_rz44", rot(0, -60) @ rot(2, 44)),
        ("ry120_rx30_rz_m44", rot(1, 120) @ rot(0, 30) @ rot(2, -44)),
        ("rz10_rx10_ry10", rot(2, 10) @ rot(0, 10) @ rot(1, 10)),
    ]
    flip_x = np.diag([-1.0, 1.0, 1.0])
    for name, r in combos:
        specs.append((name, r @ zooms, "both"))
        specs.append((name + "_flipped", r @ flip_x @ zooms, "both"))
        specs.append((name + "_aniso", r @ np.diag([0.4, 3.0, 1.1]), "both"))
    shear = np.array([[1, 0.2, 0], [0, 1, 0.15], [0.1, 0, 1]])
    specs += [
        ("sform_only_oblique", rot(2, 30) @ rot(0, 44) @ zooms, "sform"),
        ("sform_only_sheared", rot(1, 30) @ flip_x @ zooms @ shear, "sform"),
        ("sform_only_lps", np.diag([-1.0, -1.0, 1.0]) @ zooms, "sform"),
        ("qform_only_oblique", rot(0, 30) @ rot(2, -44) @ zooms, "qform"),
        ("qform_only_flipped", rot(1, 100) @ flip_x @ zooms, "qform"),
        ("no_transform_codes", np.diag([1.0, 1.0, 1.0]), "none"),
        ("no_transform_codes_aniso", np.diag([0.7, 1.9, 3.0]), "none"),
        ("nifti2_oblique", rot(2, 44) @ rot(1, -30) @ flip_x @ zooms, "nifti2"),
        ("nifti2_sform_only", rot(0, 100) @ zooms, "nifti2_sform"),
        ("fourd_flipped", np.diag([-1.0, 1.0, -1.0]) @ zooms, "4d"),
        ("fourd_oblique_gz", rot(2, 135) @ rot(0, 10) @ zooms, "4d_gz"),
        ("int16_bigendian_scaled", rot(1, -100) @ zooms, "int16_be"),
    ]

    cases = []
    for name, m3, variant in specs:
        aff = affine(m3)
        data = vol4 if variant.startswith("4d") else vol3
        path = os.path.join(outdir, name + (".nii.gz" if variant.endswith("_gz") else ".nii"))
        if variant == "int16_be":
            # Written field by field: nibabel's save would choose its own scaling.
            hdr = nib.Nifti1Header(endianness=">")
            hdr.set_data_shape(data.shape)
            hdr.set_data_dtype(np.int16)
            hdr.set_sform(aff, code=2)
            hdr.set_qform(aff, code=1)
            hdr.set_slope_inter(0.5, -3.0)
            hdr["vox_offset"] = 352
            with open(path, "wb") as f:
                hdr.write_to(f)
                f.write(b"\0" * (352 - f.tell()))
                f.write(data.astype(">i2").tobytes(order="F"))
            cases.append(describe(outdir, name, path))
            continue
        cls = nib.Nifti2Image if variant.startswith("nifti2") else nib.Nifti1Image
        img = cls(data, None)
        if variant in ("both", "nifti2") or variant.startswith("4d"):
            img.set_sform(aff, code=2)
            img.set_qform(aff, code=1)
        elif variant in ("sform", "nifti2_sform"):
            # a different qform left in the header with code 0: it must not be used
            img.set_qform(affine(rot(0, 90)), code=0)
            img.set_sform(aff, code=1 if variant == "sform" else 2)
        elif variant == "qform":
            img.set_sform(affine(rot(1, 90)), code=0)
            img.set_qform(aff, code=1)
        elif variant == "none":
            # set_qform stores the voxel sizes (pixdim) of the affine it is given
            img.set_qform(affine(rot(2, 90) @ m3), code=0)
            img.set_sform(affine(rot(2, 90)), code=0)
        nib.save(img, path)
        back = nib.load(path)
        codes = (int(back.header["sform_code"]), int(back.header["qform_code"]))
        want = {"sform": (1, 0), "qform": (0, 1), "none": (0, 0), "nifti2_sform": (2, 0)}.get(variant)
        if want is not None and codes != want:
            raise SystemExit("%s: saved with codes %s, wanted %s" % (name, codes, want))
        cases.append(describe(outdir, name, path))
    for extra in sys.argv[2:]:
        cases.append(describe(outdir, "fixture_" + os.path.basename(extra).split(".")[0], extra))
    with open(os.path.join(outdir, "cases.json"), "w") as f:
        json.dump({"nibabel": nib.__version__, "cases": cases}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
