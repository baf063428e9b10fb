#!/usr/bin/python3
"""Checks with h5py (an independent HDF5 reader) that a styleforge pack has the documented layout
(data/README.md). Prints one line per problem and exits 1 if there is any.

usage: data_check_pack_h5py.py PACK.h5 [EXPECTED_N]
"""
import json
import sys

import h5py
import numpy as np


def main():
    path = sys.argv[1]
    problems = []

    def check(cond, what):
        if not cond:
            problems.append(what)

    with h5py.File(path, "r", locking=False) as f:
        # Format 2 stores strings fixed-length (h5py gives bytes); format 1 variable-length (str).
        a = {k: (v.decode() if isinstance(v, (bytes, np.bytes_)) else v) for k, v in f.attrs.items()}
        check(a["format"] == "styleforge-pack", "format attribute")
        check(int(a["format_version"]) in (1, 2), "format_version")
        n, res, ch = int(a["num_images"]), int(a["resolution"]), int(a["channels"])
        if len(sys.argv) > 2:
            check(n == int(sys.argv[2]), f"num_images {n} != {sys.argv[2]}")
        check(ch in (1, 3), "channels")
        check(res > 0 and res & (res - 1) == 0, "resolution is a power of two")
        img = f["images"]
        check(img.dtype == np.uint8, f"images dtype {img.dtype}")
        check(img.shape == (n, ch, res, res), f"images shape {img.shape}")
        check(img.chunks == (1, ch, res, res), f"images chunks {img.chunks}")
        comp = a["compression"]
        check((img.compression is None) == (comp == "none"), f"compression {img.compression} vs attribute {comp}")
        if int(a["format_version"]) >= 2:
            # Small datasets are compact (inside the checksummed object header), larger ones chunked.
            nm = f["names"]
            check(img.fletcher32 and (nm.chunks is None or nm.fletcher32), "Fletcher32 checksums on images and names")
            check(f["names"].dtype.kind == "S", f"names stored fixed-length ({f['names'].dtype})")
        kind = a["label_kind"]
        dim = int(a["label_dim"])
        if kind == "class":
            lab = f["labels"]
            check(lab.dtype == np.int64 and lab.shape == (n,), f"class labels {lab.dtype} {lab.shape}")
            check(int(np.max(lab[...])) < dim, "class labels below label_dim")
        elif kind == "vector":
            lab = f["labels"]
            check(lab.dtype == np.float32 and lab.shape == (n, dim), f"vector labels {lab.dtype} {lab.shape}")
        else:
            check(kind == "none" and "labels" not in f, "no labels")
        names = f["names"].asstr()[...]
        check(len(names) == n and all(len(s) > 0 for s in names), "names")
        check(isinstance(json.loads(a["importer"]), dict), "importer is a JSON object")
        check(isinstance(json.loads(a["class_names"]), list), "class_names is a JSON list")
        check(str(a["content_hash"]).startswith("sha256:") and len(a["content_hash"]) == 71, "content_hash")
        check(len(str(a["styleforge_version"])) > 0, "styleforge_version")
        # Every image reads back (checks the chunk index end to end).
        total = sum(int(img[i].astype(np.int64).sum()) for i in range(n))
        check(total >= 0, "images readable")
    for p in problems:
        print(f"{path}: layout problem: {p}")
    if not problems:
        print(f"{path}: layout ok ({n} images {res}x{res}x{ch}, labels {kind})")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
