#!/usr/bin/env bash
# End-to-end `styleforge classify` on phantoms (ctest e2e_classify, label e2e):
#  1. 400 phantoms 64x64 (lesion / no lesion) packed; a tiny conditional GAN trained on them.
#  2. Real-only, seeds 0,1,2 (ResNet-18 at width x0.25, 25 epochs, flips and rot90): classify.json
#     and classify.png written, every seed's test accuracy at least 0.75 (chance: about 0.5;
#     measured 0.825, 0.950, 0.938). At 32x32 the lesions are a few pixels and this classifier
#     stays near chance, hence 64x64.
#  3. Real + synthetic (20 images per class from the GAN): two arms; the synthetic arm trains on
#     the real training images plus 40, validates and tests on the same real images.
#  4. Refusals with exit 2 and one line: unknown --arch, a pack without labels, fractions out of
#     range, a conditional network whose class count differs from the pack's.
#  5. Data-parallel under mpirun (2 ranks): one classify.json/png written by rank 0, "ranks": 2,
#     test accuracy at least 0.75 (the ranks end with the same model or classify fails).
# Usage: e2e_classify.sh STYLEFORGE_BINARY
set -u
BIN=${1:?usage: e2e_classify.sh STYLEFORGE_BINARY}
PY=/usr/bin/python3
export OMP_NUM_THREADS=1
W=$(mktemp -d /tmp/sf_e2e_classify.XXXXXX)
trap 'rm -rf "$W"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$BIN" phantoms --dest "$W/ph" --count 400 --resolution 64 --quiet >/dev/null || fail "phantoms"
"$BIN" pack --source "$W/ph" --dest "$W/ph.h5" >/dev/null 2>&1 || fail "pack"
"$BIN" train --data "$W/ph.h5" --run-dir "$W/run" --cond --cbase 256 --cmax 32 --batch 4 --kimg 0.02 --tick 0.01 \
  --snap 1 --threads 1 --metrics none > "$W/train.log" 2>&1 || { tail -5 "$W/train.log"; fail "train --cond"; }
CKPT=$(ls -t "$W"/run/network-snapshot-*.h5 2>/dev/null | head -1)  # the newest
[ -n "$CKPT" ] || fail "train wrote no checkpoint"

small=(--arch resnet18 --width-mult 0.25 --batch 32 --augment flips,rot90 --threads 1 --device cpu)

# ---- 2. real only, three seeds ----
"$BIN" classify --data "$W/ph.h5" --outdir "$W/real" "${small[@]}" --epochs 25 --seeds 0,1,2 > "$W/real.log" 2>&1 \
  || { tail -5 "$W/real.log"; fail "classify (real only)"; }
cat "$W/real.log"
[ -s "$W/real/classify.png" ] || fail "no classify.png"
"$PY" - "$W/real/classify.json" <<'EOF' || fail "real-only classify.json"
import json, sys
r = json.load(open(sys.argv[1]))
arms = r["arms"]
assert [a["name"] for a in arms] == ["real"], arms
runs = arms[0]["runs"]
assert [x["seed"] for x in runs] == [0, 1, 2], runs
for x in runs:
    for k in ("accuracy", "sensitivity", "specificity", "auc"):
        assert 0 <= x[k] <= 1, (k, x)
    assert x["test_images"] == 80 and x["val_images"] == 60 and x["train_images"] == 260, x
    assert x["accuracy"] >= 0.75, "seed %d: test accuracy %.3f below 0.75" % (x["seed"], x["accuracy"])
s = arms[0]["summary"]["accuracy"]
assert abs(s["mean"] - sum(x["accuracy"] for x in runs) / 3) < 1e-9, s
print("real-only test accuracy per seed:", [round(x["accuracy"], 3) for x in runs])
EOF

# ---- 3. real + synthetic ----
"$BIN" classify --data "$W/ph.h5" --outdir "$W/syn" "${small[@]}" --epochs 3 --seeds 0 \
  --synthetic-network "$CKPT" --synthetic-per-class 20 > "$W/syn.log" 2>&1 || { tail -5 "$W/syn.log"; fail "classify (real+synthetic)"; }
[ -s "$W/syn/classify.png" ] || fail "no classify.png (real+synthetic)"
"$PY" - "$W/syn/classify.json" <<'EOF' || fail "real+synthetic classify.json"
import json, sys
r = json.load(open(sys.argv[1]))
real, syn = r["arms"]
assert (real["name"], syn["name"]) == ("real", "real+synthetic")
assert real["synthetic_images"] == 0 and syn["synthetic_images"] == 40
a, b = real["runs"][0], syn["runs"][0]
assert b["train_images"] == a["train_images"] + 40, (a, b)
assert (b["val_images"], b["test_images"]) == (a["val_images"], a["test_images"]), (a, b)
assert r["settings"]["synthetic_per_class"] == 20
EOF

# refuse PATTERN ARGS...: classify exits 2 with one line on stderr that contains PATTERN.
refuse() {
  local pat=$1; shift
  "$BIN" classify "$@" > "$W/out" 2> "$W/err"; local rc=$?
  [ $rc -eq 2 ] || { cat "$W/err"; fail "classify $* exited $rc, expected 2"; }
  [ "$(wc -l < "$W/err")" -eq 1 ] || { cat "$W/err"; fail "classify $*: not a one-line error"; }
  grep -q -- "$pat" "$W/err" || { cat "$W/err"; fail "classify $*: error does not mention '$pat'"; }
}

# ---- 3b. --weights: a TorchScript ResNet-18 with torchvision's names (3 channels, 1000 classes) ----
PY_TORCH=$(bash "$(dirname "$0")/../scripts/torch-env.sh" 2>/dev/null)
if [ -n "$PY_TORCH" ] && "$PY_TORCH" -c "import torch" 2>/dev/null; then
  "$PY_TORCH" "$(dirname "$0")/classify_weights_module.py" "$W/r18.pt" --width-mult 0.25 || fail "TorchScript module"
  "$BIN" classify --data "$W/ph.h5" --outdir "$W/wt" "${small[@]}" --epochs 1 --seeds 0 --weights "$W/r18.pt" \
    > "$W/wt.log" 2>&1 || { tail -5 "$W/wt.log"; fail "classify --weights"; }
  grep -q "fc has 1000 outputs, replaced by a new fc for 2 classes" "$W/wt.log" || fail "--weights: fc not replaced"
  grep -q "conv1 adapted from 3 to 1 input channels" "$W/wt.log" || fail "--weights: conv1 not adapted"
  refuse "bn1.bias" --data "$W/ph.h5" --outdir "$W/x" --width-mult 0.5 --epochs 1 --seeds 0 --weights "$W/r18.pt" -q
  refuse "not a TorchScript module" --data "$W/ph.h5" --outdir "$W/x" --epochs 1 --seeds 0 --weights "$W/ph.h5" -q
else
  echo "SKIP (part): no python with torch from scripts/torch-env.sh, --weights not checked"
fi

# ---- 4. refusals: exit 2, one line naming the flag or file ----
refuse "--arch" --data "$W/ph.h5" --outdir "$W/x" --arch vgg16
refuse "--test-frac" --data "$W/ph.h5" --outdir "$W/x" --test-frac 1.5
refuse "--val-frac" --data "$W/ph.h5" --outdir "$W/x" --val-frac 0.6 --test-frac 0.5
mkdir -p "$W/nolab" && cp "$W"/ph/img0000000*.png "$W/nolab/"
"$BIN" pack --source "$W/nolab" --dest "$W/nolab.h5" >/dev/null 2>&1 || fail "pack without labels"
refuse "no class labels" --data "$W/nolab.h5" --outdir "$W/x" "${small[@]}"
cp -r "$W/ph" "$W/ph3"
"$PY" - "$W/ph3/dataset.json" <<'EOF' || fail "three-class labels"
import json, sys
d = json.load(open(sys.argv[1]))
d["labels"] = [[name, i % 3] for i, (name, _) in enumerate(d["labels"])]
json.dump(d, open(sys.argv[1], "w"))
EOF
"$BIN" pack --source "$W/ph3" --dest "$W/ph3.h5" >/dev/null 2>&1 || fail "pack (three classes)"
refuse "conditional on 2 classes, the pack has 3" --data "$W/ph3.h5" --outdir "$W/x" "${small[@]}" \
  --synthetic-network "$CKPT" --synthetic-per-class 2

# ---- 5. data-parallel under mpirun ----
if command -v mpirun >/dev/null; then
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe -np 2 "$BIN" classify \
    --data "$W/ph.h5" --outdir "$W/mpi" "${small[@]}" --epochs 25 --seeds 0 > "$W/mpi.log" 2>&1 \
    || { tail -5 "$W/mpi.log"; fail "classify under mpirun -np 2"; }
  [ "$(grep -c '^wrote ' "$W/mpi.log")" -eq 1 ] || { cat "$W/mpi.log"; fail "mpirun -np 2: not one writer"; }
  "$PY" - "$W/mpi/classify.json" <<'EOF' || fail "mpirun -np 2: classify.json"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["ranks"] == 2, r["ranks"]
acc = r["arms"][0]["runs"][0]["accuracy"]
assert acc >= 0.75, "2 ranks: test accuracy %.3f below 0.75" % acc
print("2 ranks (data-parallel): test accuracy %.3f" % acc)
EOF
else
  echo "SKIP (part): no mpirun, data-parallel classify not checked"
fi
echo "e2e_classify: OK"
