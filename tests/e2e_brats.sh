#!/usr/bin/env bash
# BraTS-style multi-modal MRI end to end (ctest e2e_brats, label e2e):
#  1. `phantoms --volumes`: 6 patients, T1/T1ce/T2/FLAIR + segmentation mask each, stored LPS (so
#     the importer must reorient), plus one patient folder stored oblique.
#  2. `pack --dry-run` writes nothing and reports 4 channels and both classes; the real pack has
#     4 channels named t1,t1ce,t2,flair, class labels from the masks, class counts stored.
#  3. Every packed slice's label equals a count of lesion voxels done here with nibabel on the
#     canonical mask (independently of styleforge), and every channel of a slice equals that
#     modality's canonical axial slice windowed by its own percentiles (within 1 grey level).
#  4. A conditional GAN trains a few ticks on the 4-channel pack: snapshots (reals/fakes grids of
#     one panel per channel), a checkpoint; `generate` writes panel PNGs and RGB-mapped PNGs.
#  5. Transfer: `train --resume` from the reference's RGB (3-channel) network pickle onto the
#     4-channel pack; the run's checkpoint has 4 image channels.
#  6. Refusals, one line naming the file, no pack left: a mask whose grid differs from its image;
#     a modality whose shape differs; an empty CSV row.
# Usage: e2e_brats.sh STYLEFORGE_BINARY FIXTURES_DIR
set -u
BIN=${1:?usage: e2e_brats.sh STYLEFORGE_BINARY FIXTURES_DIR}
FIX=${2:?usage: e2e_brats.sh STYLEFORGE_BINARY FIXTURES_DIR}
PY=/usr/bin/python3
export OMP_NUM_THREADS=1
W=$(mktemp -d /tmp/sf_e2e_brats.XXXXXX)
trap 'rm -rf "$W"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
"$PY" -c "import nibabel, h5py, numpy" 2>/dev/null || fail "nibabel/h5py/numpy missing for $PY (run scripts/install-test-deps.sh)"

CH='t1:*_t1.nii.gz,t1ce:*_t1ce.nii.gz,t2:*_t2.nii.gz,flair:*_flair.nii.gz'
MASK=(--labels mask --mask-glob '*_seg.nii.gz' --mask-min-voxels 4)

# ---- 1. phantom patients ----
"$BIN" phantoms --volumes --out "$W/brats" --count 6 --resolution 32 --slices 16 --orientation LPS --quiet >/dev/null \
  || fail "phantoms --volumes"
"$BIN" phantoms --volumes --out "$W/obl" --count 1 --resolution 32 --slices 16 --orientation oblique --seed 7 --quiet >/dev/null \
  || fail "phantoms --volumes --orientation oblique"
mv "$W/obl/Phantom_000" "$W/brats/Phantom_obl"
for p in "$W"/brats/Phantom_obl/*; do mv "$p" "${p/Phantom_000_/Phantom_obl_}"; done

# ---- 2. dry run, then the pack ----
"$BIN" pack --source "$W/brats" --dest "$W/b.h5" --channels-from "$CH" "${MASK[@]}" --min-foreground 0.05 --dry-run \
  > "$W/dry.txt" 2>&1 || { cat "$W/dry.txt"; fail "pack --dry-run"; }
[ ! -e "$W/b.h5" ] || fail "--dry-run wrote $W/b.h5"
[ -z "$(ls "$W" | grep '^b\.h5')" ] || fail "--dry-run left a temporary: $(ls "$W")"
grep -Eq "t1, ?t1ce, ?t2, ?flair" "$W/dry.txt" || { cat "$W/dry.txt"; fail "dry run does not name the channels"; }
grep -q "lesion" "$W/dry.txt" || { cat "$W/dry.txt"; fail "dry run does not report classes"; }
"$BIN" pack --source "$W/brats" --dest "$W/b.h5" --channels-from "$CH" "${MASK[@]}" --min-foreground 0.05 --quiet \
  > "$W/pack.txt" 2>&1 || { cat "$W/pack.txt"; fail "pack"; }
cat "$W/pack.txt"

# ---- 3. labels and channels checked independently with nibabel ----
"$PY" - "$W/b.h5" "$W/brats" <<'EOF' || fail "pack contents differ from nibabel's reading of the volumes"
import json, os, re, sys
import h5py, nibabel as nib, numpy as np
pack, root = sys.argv[1], sys.argv[2]
f = h5py.File(pack, "r")
a = f.attrs
assert int(a["channels"]) == 4, a["channels"]
assert json.loads(a["channel_names"]) == ["t1", "t1ce", "t2", "flair"], a["channel_names"]
assert a["label_kind"] in ("class", b"class"), a["label_kind"]
names = [n.decode() if isinstance(n, bytes) else n for n in f["names"][()]]
labels = f["labels"][()]
counts = json.loads(a["class_counts"])
assert counts == [int((labels == c).sum()) for c in range(len(counts))], (counts, np.bincount(labels))
assert counts[0] > 0 and counts[1] > 0, counts
res = int(a["resolution"])
imgs = f["images"]
canon = {}
def load(patient, mod):
    key = (patient, mod)
    if key not in canon:
        img = nib.as_closest_canonical(nib.load(os.path.join(root, patient, f"{patient}_{mod}.nii.gz")))
        canon[key] = img.get_fdata()
    return canon[key]
checked = 0
for i, n in enumerate(names):
    m = re.fullmatch(r"(.+)#slice=(\d+)", n)
    assert m, n
    patient, k = m.group(1), int(m.group(2))
    seg = load(patient, "seg")[:, :, k]
    lesion = int((seg != 0).sum())
    want = 1 if lesion >= 4 else 0
    assert lesion == 0 or lesion >= 4, (n, lesion, "ambiguous slices must be dropped")
    assert labels[i] == want, (n, lesion, labels[i])
    for c, mod in enumerate(["t1", "t1ce", "t2", "flair"]):
        vol = load(patient, mod)
        lo, hi = np.percentile(vol, [0.5, 99.5])
        sl = np.flip(vol[:, :, k].T)  # radiological axial view (data/orient.h)
        exp = np.clip(np.rint((sl - lo) * 255.0 / (hi - lo)), 0, 255)
        assert sl.shape == (res, res), sl.shape
        got = imgs[i, c].astype(np.float64)
        d = np.abs(got - exp).max()
        assert d <= 1, (n, mod, d)
    checked += 1
patients = sorted({n.split("#")[0] for n in names})
assert "Phantom_obl" in patients and len(patients) == 7, patients
print(f"pack ok: {len(names)} slices of {len(patients)} patients, classes {counts}, labels and 4 channels match nibabel")
EOF

# ---- 4. a conditional GAN on the 4-channel pack; snapshots; generate ----
"$BIN" train --data "$W/b.h5" --run-dir "$W/run" --cond --cbase 256 --cmax 32 --batch 4 --kimg 0.02 --tick 0.01 \
  --snap 1 --threads 1 --metrics none > "$W/train.log" 2>&1 || { tail -5 "$W/train.log"; fail "train on the 4-channel pack"; }
CKPT=$(ls -t "$W"/run/network-snapshot-*.h5 2>/dev/null | head -1)
[ -n "$CKPT" ] || fail "train wrote no checkpoint"
FAKES=$(ls "$W"/run/fakes*.png 2>/dev/null | head -1)
[ -s "$W/run/reals.png" ] && [ -n "$FAKES" ] || fail "no reals/fakes grids"
"$BIN" generate --network "$CKPT" --seeds 0-3 --class 1 --outdir "$W/gen" > "$W/gen.log" 2>&1 || { cat "$W/gen.log"; fail "generate"; }
"$BIN" generate --network "$CKPT" --seeds 0-3 --class 1 --outdir "$W/gen_rgb" --channels-to-rgb 3,1,0 > "$W/genrgb.log" 2>&1 \
  || { cat "$W/genrgb.log"; fail "generate --channels-to-rgb"; }
"$PY" - "$W/run/reals.png" "$W/gen" "$W/gen_rgb" "$W/b.h5" <<'EOF' || fail "grids or generated images have the wrong layout"
import glob, sys
import h5py, numpy as np
from PIL import Image
reals, gen, gen_rgb, pack = sys.argv[1:5]
res = int(h5py.File(pack, "r").attrs["resolution"])
r = Image.open(reals)
assert r.mode == "L" and r.size[0] % (4 * res) == 0 and r.size[1] % res == 0, (r.mode, r.size)
p = sorted(glob.glob(gen + "/seed*.png")); q = sorted(glob.glob(gen_rgb + "/seed*.png"))
assert len(p) >= 4 and len(q) >= 4, (p, q)
a = Image.open(p[0]); b = Image.open(q[0])
assert a.mode == "L" and a.size == (4 * res, res), (a.mode, a.size)
assert b.mode == "RGB" and b.size == (res, res), (b.mode, b.size)
# The RGB mapping 3,1,0 takes flair, t1ce and t1 from the same image the panels show.
pa = np.asarray(a); pb = np.asarray(b)
for rgb_c, ch in enumerate([3, 1, 0]):
    assert np.array_equal(pb[:, :, rgb_c], pa[:, ch * res:(ch + 1) * res]), (rgb_c, ch)
print("grids ok: reals", r.size, "panels", a.size, "rgb", b.size)
EOF

# ---- 5. transfer from an RGB network onto the 4-channel pack ----
"$BIN" train --data "$W/b.h5" --run-dir "$W/tl" --resume "$FIX/snapshot_res32.pkl" --batch 4 --kimg 0.01 --tick 0.01 \
  --snap 1 --threads 1 --metrics none > "$W/tl.log" 2>&1 || { tail -5 "$W/tl.log"; fail "train --resume RGB pickle onto 4 channels"; }
TL=$(ls -t "$W"/tl/network-snapshot-*.h5 2>/dev/null | head -1)
[ -n "$TL" ] || fail "transfer run wrote no checkpoint"
"$PY" - "$TL" <<'EOF' || fail "transfer checkpoint"
import json, sys
import h5py
f = h5py.File(sys.argv[1], "r")
found = []
def visit(name, obj):
    for k, v in obj.attrs.items():
        if isinstance(v, (bytes, str)) and "img_channels" in (v.decode() if isinstance(v, bytes) else v):
            found.append((v.decode() if isinstance(v, bytes) else v))
visit("/", f); f.visititems(visit)
chans = set()
for s in found:
    try:
        j = json.loads(s)
    except Exception:
        continue
    def walk(x):
        if isinstance(x, dict):
            for k, v in x.items():
                if k == "img_channels": chans.add(v)
                walk(v)
        elif isinstance(x, list):
            for v in x: walk(v)
    walk(j)
assert chans == {4}, chans
print("transfer ok: img_channels", chans)
EOF
grep -qi "transfer\|adapt" "$W/tl.log" || { tail -20 "$W/tl.log"; fail "the transfer run's log does not report what was adapted"; }

# ---- 6. refusals ----
refuse() {  # refuse NAME EXPECTED_SUBSTRING -- pack args...
  local name=$1 want=$2; shift 3
  local out rc
  out=$("$BIN" pack --dest "$W/bad.h5" --quiet "$@" 2>&1); rc=$?
  [ $rc -ne 0 ] || fail "$name: pack succeeded"
  [ "$(printf '%s\n' "$out" | grep -c .)" -eq 1 ] || fail "$name: not one line: $out"
  printf '%s' "$out" | grep -q -- "$want" || fail "$name: message does not name $want: $out"
  [ -z "$(ls "$W" | grep '^bad\.h5')" ] || fail "$name: left $(ls "$W" | grep '^bad')"
  echo "refused ($name): $out"
}
cp -r "$W/brats/Phantom_000" "$W/one"
"$BIN" phantoms --volumes --out "$W/big" --count 1 --resolution 64 --slices 16 --quiet >/dev/null || fail "phantoms 64"
cp "$W/big/Phantom_000/Phantom_000_seg.nii.gz" "$W/one/Phantom_000_seg.nii.gz"
refuse "mask grid" "Phantom_000_seg.nii.gz" -- --source "$W/one" --channels-from "$CH" "${MASK[@]}"
rm -rf "$W/one"; cp -r "$W/brats/Phantom_000" "$W/one"
cp "$W/big/Phantom_000/Phantom_000_t2.nii.gz" "$W/one/Phantom_000_t2.nii.gz"
refuse "modality shape" "Phantom_000_t2.nii.gz" -- --source "$W/one" --channels-from "$CH" "${MASK[@]}"
rm -rf "$W/one"; cp -r "$W/brats/Phantom_000" "$W/one"; rm "$W/one/Phantom_000_seg.nii.gz"
printf 'key,label\nPhantom_000,1\n,\n' > "$W/labels.csv"
refuse "empty CSV row" "labels.csv" -- --source "$W/one" --channels-from "$CH" --labels csv --labels-file "$W/labels.csv"
echo "e2e_brats: all checks passed"
