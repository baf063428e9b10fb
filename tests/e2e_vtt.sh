#!/usr/bin/env bash
# End-to-end Visual Turing Test kit (ctest e2e_vtt, label e2e): phantoms -> pack -> a tiny
# conditional checkpoint -> `styleforge vtt --count 6 --class 1` -> tests/vtt_click.py clicks the
# page through in headless Chromium (file://, network off) as two readers, exports their CSVs with
# the page's download link and checks `styleforge vtt-score` against its own numbers. Also: the
# key's shape, a second kit (another seed) for the template comparison, and refusals (existing
# files, a conditional network without --class, --count larger than the class, --class for an
# unconditional network, a network whose images differ from the pack's); an RGB pack's page.
# Usage: e2e_vtt.sh STYLEFORGE_BINARY
# Needs chromium, chromium-driver (scripts/install-test-deps.sh) and selenium in the torch venv
# (scripts/test-python-deps.sh); exits 77 (ctest: skipped) with a message when one is missing.
set -u
BIN=${1:?usage: e2e_vtt.sh STYLEFORGE_BINARY}
SRC=$(cd "$(dirname "$0")/.." && pwd)
PY=${STYLEFORGE_TEST_PYTHON:-$(bash "$SRC/scripts/torch-env.sh")}
for tool in /usr/bin/chromium /usr/bin/chromedriver; do
  [ -x "$tool" ] || { echo "SKIP: $tool missing (install it with: bash scripts/install-test-deps.sh)"; exit 77; }
done
if ! "$PY" -c "import selenium" 2>/dev/null; then
  echo "SKIP: $PY cannot import selenium (install it with: bash scripts/test-python-deps.sh)"
  exit 77
fi
export OMP_NUM_THREADS=1
W=$(mktemp -d /tmp/sf_e2e_vtt.XXXXXX)
trap 'rm -rf "$W"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$BIN" phantoms --dest "$W/ph" --count 64 --resolution 16 --quiet >/dev/null || fail "phantoms"
"$BIN" pack --source "$W/ph" --dest "$W/ph.h5" >/dev/null 2>&1 || fail "pack"
"$BIN" train --data "$W/ph.h5" --run-dir "$W/run" --cond --cbase 256 --cmax 32 --batch 4 --kimg 0.02 --tick 0.01 \
  --snap 1 --threads 1 --metrics none --tensorboard off > "$W/train.log" 2>&1 || { tail -5 "$W/train.log"; fail "train"; }
CKPT=$(ls "$W"/run/network-snapshot-*.h5 | tail -1)
[ -f "$CKPT" ] || fail "no checkpoint in $W/run"

"$BIN" vtt --reals "$W/ph.h5" --network "$CKPT" --count 6 --class 1 --dest "$W/kit" --seed 11 --display-size 256 \
  --threads 1 > "$W/vtt.log" 2>&1 || { cat "$W/vtt.log"; fail "vtt"; }
cat "$W/vtt.log"
[ -s "$W/kit/vtt.html" ] && [ -s "$W/kit/vtt-key.csv" ] || fail "vtt did not write vtt.html and vtt-key.csv"
[ "$(head -1 "$W/kit/vtt-key.csv")" = "id,truth,position,pack_index,source_name,seed,class" ] || fail "key header"
[ "$(tail -n +2 "$W/kit/vtt-key.csv" | wc -l)" -eq 12 ] || fail "the key does not list 12 images"
[ "$(grep -c ',real,' "$W/kit/vtt-key.csv")" -eq 6 ] || fail "the key does not list 6 real images"
[ "$(grep -c ',synthetic,' "$W/kit/vtt-key.csv")" -eq 6 ] || fail "the key does not list 6 synthetic images"
awk -F, 'NR > 1 && $NF != "1" { bad = 1 } END { exit bad }' "$W/kit/vtt-key.csv" || fail "an image of the key is not of class 1"
# The same seed gives the same kit; another seed another one (for the template comparison).
"$BIN" vtt --reals "$W/ph.h5" --network "$CKPT" --count 6 --class 1 --dest "$W/same" --seed 11 --display-size 256 \
  --threads 1 > /dev/null 2>&1 || fail "vtt (same seed)"
cmp -s "$W/kit/vtt.html" "$W/same/vtt.html" && cmp -s "$W/kit/vtt-key.csv" "$W/same/vtt-key.csv" || fail "the same seed gave another kit"
"$BIN" vtt --reals "$W/ph.h5" --network "$CKPT" --count 6 --class 1 --dest "$W/kit2" --seed 12 --display-size 256 \
  --threads 1 > /dev/null 2>&1 || fail "vtt (second kit)"
cmp -s "$W/kit/vtt-key.csv" "$W/kit2/vtt-key.csv" && fail "two seeds gave the same key"
echo "ok: 12 images (6 real of class 1, 6 synthetic); the same seed gives the same files"

# Refusals: one line each, exit code 2, naming the flag.
refused() {  # refused FLAG ARGS...
  local flag=$1; shift
  "$BIN" vtt "$@" > "$W/refused.log" 2>&1
  local rc=$?
  [ $rc -eq 2 ] || { cat "$W/refused.log"; fail "vtt $*: exit code $rc, expected 2"; }
  [ "$(wc -l < "$W/refused.log")" -eq 1 ] || { cat "$W/refused.log"; fail "vtt $*: not one line"; }
  grep -q -- "$flag" "$W/refused.log" || { cat "$W/refused.log"; fail "vtt $*: the message does not name $flag"; }
  echo "ok: refused: $(cat "$W/refused.log")"
}
refused --dest --reals "$W/ph.h5" --network "$CKPT" --count 6 --class 1 --dest "$W/kit" --seed 11
refused --class --reals "$W/ph.h5" --network "$CKPT" --count 6 --dest "$W/nc" --seed 11
refused --count --reals "$W/ph.h5" --network "$CKPT" --count 60 --class 1 --dest "$W/big" --seed 11

# An RGB pack (unlabelled) and an unconditional network: the page's images are 8-bit RGB PNGs.
"$PY" - "$W/rgb" <<'PYEOF' || fail "writing RGB images"
import os, random, sys
from PIL import Image
os.makedirs(sys.argv[1])
rng = random.Random(5)
for i in range(16):
    im = Image.new("RGB", (16, 16))
    im.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(256)])
    im.save(os.path.join(sys.argv[1], "img%02d.png" % i))
PYEOF
"$BIN" pack --source "$W/rgb" --dest "$W/rgb.h5" >/dev/null 2>&1 || fail "pack (RGB)"
"$BIN" train --data "$W/rgb.h5" --run-dir "$W/run-rgb" --cbase 256 --cmax 32 --batch 4 --kimg 0.008 --tick 0.004 \
  --snap 1 --threads 1 --metrics none --tensorboard off > "$W/train-rgb.log" 2>&1 || { tail -5 "$W/train-rgb.log"; fail "train (RGB)"; }
CKPT_RGB=$(ls "$W"/run-rgb/network-snapshot-*.h5 | tail -1)
refused --class --reals "$W/rgb.h5" --network "$CKPT_RGB" --count 4 --class 0 --dest "$W/rgbkit"
refused --network --reals "$W/rgb.h5" --network "$CKPT" --count 4 --class 1 --dest "$W/mixed"
for s in 1 2; do
  "$BIN" vtt --reals "$W/rgb.h5" --network "$CKPT_RGB" --count 4 --dest "$W/rgbkit$s" --seed $s --threads 1 \
    > "$W/vtt-rgb.log" 2>&1 || { cat "$W/vtt-rgb.log"; fail "vtt (RGB)"; }
done
"$PY" "$SRC/tests/vtt_click.py" --page "$W/rgbkit1/vtt.html" --key "$W/rgbkit1/vtt-key.csv" --other "$W/rgbkit2/vtt.html" \
  --bin "$BIN" --work "$W" --resolution 16 --channels 3 --check-only > "$W/rgb-check.log" || { cat "$W/rgb-check.log"; fail "RGB page"; }
echo "ok: RGB: $(head -1 "$W/rgb-check.log")"

"$PY" "$SRC/tests/vtt_click.py" --page "$W/kit/vtt.html" --key "$W/kit/vtt-key.csv" --other "$W/kit2/vtt.html" \
  --bin "$BIN" --work "$W" --resolution 16 --channels 1 || fail "vtt_click.py"
