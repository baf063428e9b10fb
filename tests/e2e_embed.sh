#!/usr/bin/env bash
# End-to-end `styleforge embed` (ctest e2e_embed, label e2e): a tiny conditional run on phantoms
# (two classes), then PCA and t-SNE maps of 48 real and 48 generated images through the stand-in
# detector. Checks the CSV files (header, 96 rows, 48 per source, classes 0/1, finite x and y),
# the PNG sizes, determinism for a seed, one-line refusals of bad flags, and, when the torch venv
# has scikit-learn, tests/tsne_check.py on the saved features (trustworthiness against sklearn's
# TSNE within 0.02, PCA within 1e-5 up to sign).
# Usage: e2e_embed.sh STYLEFORGE_BINARY FIXTURES_DIR   ($KEEP_EMBED_OUT=DIR keeps the maps there)
# Exits 77 (ctest: skipped) with a message when the stand-in detector is missing.
set -u
BIN=${1:?usage: e2e_embed.sh STYLEFORGE_BINARY FIXTURES_DIR}
FIXTURES=${2:?usage: e2e_embed.sh STYLEFORGE_BINARY FIXTURES_DIR}
DET="$FIXTURES/detector_standin.pt"
SRC=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -f "$DET" ]; then
  echo "SKIP: no stand-in detector at $DET"
  exit 77
fi
export OMP_NUM_THREADS=1
W=$(mktemp -d /tmp/sf_e2e_embed.XXXXXX)
trap '[ -n "${KEEP_EMBED_OUT:-}" ] && cp -r "$W/out" "$KEEP_EMBED_OUT"; rm -rf "$W"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$BIN" phantoms --dest "$W/ph" --count 64 --resolution 16 --quiet >/dev/null || fail "phantoms"
"$BIN" pack --source "$W/ph" --dest "$W/ph.h5" >/dev/null 2>&1 || fail "pack"
"$BIN" train --data "$W/ph.h5" --run-dir "$W/run" --cond --cbase 256 --cmax 32 --batch 4 --kimg 0.02 --tick 0.01 \
  --snap 1 --threads 1 --metrics none > "$W/train.log" 2>&1 || { tail -5 "$W/train.log"; fail "train"; }
CKPT=$(ls "$W/run"/network-snapshot-*.h5 2>/dev/null | tail -1)
[ -n "$CKPT" ] || fail "the run wrote no checkpoint"

args=(--reals "$W/ph.h5" --network "$CKPT" --detector "$DET" --count 48 --perplexity 15 --threads 1 --size 600)
"$BIN" embed "${args[@]}" --dest "$W/out" --save-features > "$W/embed.log" 2>&1 || { cat "$W/embed.log"; fail "embed"; }
cat "$W/embed.log"
for m in pca tsne; do
  csv="$W/out/embed-$m.csv" png="$W/out/embed-$m.png"
  [ -f "$csv" ] || fail "no $csv"
  [ "$(head -1 "$csv")" = "id,source,class,x,y" ] || fail "$csv header: $(head -1 "$csv")"
  awk -F, 'NR > 1 {
      if (NF != 5) { print "row " NR ": " NF " columns"; bad = 1 }
      if ($1 != NR - 2) { print "row " NR ": id " $1; bad = 1 }
      if ($3 != "0" && $3 != "1") { print "row " NR ": class " $3; bad = 1 }
      if ($4 == "" || $5 == "" || $4 + 0 != $4 || $5 + 0 != $5) { print "row " NR ": x, y " $4 ", " $5; bad = 1 }
      n[$2]++ }
    END { if (NR != 97 || n["real"] != 48 || n["synthetic"] != 48) { print NR - 1 " rows, " n["real"] " real, " n["synthetic"] " synthetic"; bad = 1 }
          exit bad }' "$csv" || fail "$csv rows (expected 96: 48 real, 48 synthetic, classes 0/1)"
  # PNG signature and IHDR width/height (bytes 16..23, big-endian).
  [ "$(head -c 8 "$png" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] || fail "$png is not a PNG"
  size=$(od -An -tu1 -j16 -N8 "$png" | awk '{print $1*16777216+$2*65536+$3*256+$4 "x" $5*16777216+$6*65536+$7*256+$8}')
  [ "$size" = "600x600" ] || fail "$png is $size, expected 600x600"
done
echo "ok: embed-pca and embed-tsne CSV (96 rows) and PNG (600x600)"

# Same seed, same maps.
"$BIN" embed "${args[@]}" --method tsne --dest "$W/again" > /dev/null 2>&1 || fail "second embed"
cmp -s "$W/out/embed-tsne.csv" "$W/again/embed-tsne.csv" || fail "the same seed gave another t-SNE map"
echo "ok: deterministic for a seed"

# Bad flags: one line naming the flag, non-zero exit.
check_refusal() {
  local flag=$1
  shift
  "$BIN" embed "$@" > "$W/bad.log" 2>&1
  local rc=$?
  [ $rc -ne 0 ] || fail "$flag: exit code 0"
  [ "$(wc -l < "$W/bad.log")" -eq 1 ] || { cat "$W/bad.log"; fail "$flag: not one line"; }
  grep -q -- "$flag" "$W/bad.log" || fail "$flag: the message does not name it: $(cat "$W/bad.log")"
  echo "ok: refused: $(cat "$W/bad.log")"
}
base=(--reals "$W/ph.h5" --network "$CKPT" --detector "$DET" --dest "$W/bad" --threads 1)
check_refusal --method "${base[@]}" --count 8 --method umap
check_refusal --count "${base[@]}" --count 65
check_refusal --count "${base[@]}" --count 3000
check_refusal --perplexity "${base[@]}" --count 8 --perplexity 16
check_refusal --class "${base[@]}" --count 8 --method pca --class 7
"$BIN" embed --reals "$W/missing.h5" --network "$CKPT" --detector "$DET" --dest "$W/bad" --count 8 --method pca > "$W/bad.log" 2>&1 && fail "a missing pack was accepted"
grep -q "missing.h5" "$W/bad.log" || fail "missing pack: the message does not name it: $(cat "$W/bad.log")"
echo "ok: refused: $(cat "$W/bad.log")"

# Against scikit-learn on the stand-in detector's features of phantoms.
PY=${STYLEFORGE_TEST_PYTHON:-$(bash "$SRC/scripts/torch-env.sh")}
if "$PY" -c "import sklearn" 2>/dev/null; then
  "$PY" "$SRC/tests/tsne_check.py" --features "$W/out/features.csv" --tsne "$W/out/embed-tsne.csv" \
    --pca "$W/out/embed-pca.csv" --perplexity 15 || fail "tsne_check.py"
else
  echo "note: $PY cannot import sklearn (bash scripts/test-python-deps.sh): scikit-learn comparison not run"
fi
echo "PASS"
