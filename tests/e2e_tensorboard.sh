#!/usr/bin/env bash
# End-to-end TensorBoard event files (ctest e2e_tensorboard, label e2e):
#  1. A tiny run on two ranks (one trainer, one metrics rank with the stand-in detector) to 1.2
#     kimg, then resumed (--resume latest) to 2.2 kimg: tests/tb_check.py reads the run directory
#     with TensorBoard's EventAccumulator and compares every stats.jsonl statistic, the snapshot
#     fakes grids and the metric results (the metrics rank's files in run/metrics/); two trainer
#     files whose curves continue.
#  2. As after a crash: resumed from the older checkpoint of kimg 1.2 to 1.3; the points at kimg
#     2 and later disappear from TensorBoard (SessionLog START), the new tick follows kimg 1.2.
#  3. --tensorboard off writes no event file; --tensorboard with another value is refused.
# Usage: e2e_tensorboard.sh STYLEFORGE_BINARY [FIXTURES_DIR]
# Needs the PyPI `tensorboard` in the torch venv (bash scripts/test-python-deps.sh); exits 77
# (ctest: skipped) with a message when it is missing.
set -u
BIN=${1:?usage: e2e_tensorboard.sh STYLEFORGE_BINARY [FIXTURES_DIR]}
FIXTURES=${2:-}
SRC=$(cd "$(dirname "$0")/.." && pwd)
PY=${STYLEFORGE_TEST_PYTHON:-$(bash "$SRC/scripts/torch-env.sh")}
if ! "$PY" -c "import tensorboard" 2>/dev/null; then
  echo "SKIP: $PY cannot import tensorboard (install it with: bash scripts/test-python-deps.sh)"
  exit 77
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
W=$(mktemp -d /tmp/sf_e2e_tb.XXXXXX)
trap 'rm -rf "$W"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$BIN" phantoms --dest "$W/ph" --count 64 --resolution 16 --quiet >/dev/null || fail "phantoms"
"$BIN" pack --source "$W/ph" --dest "$W/ph.h5" >/dev/null 2>&1 || fail "pack"

# ---- 1. two segments, with a metrics rank when the stand-in detector is there ----
common=(--data "$W/ph.h5" --run-dir "$W/run" --threads 1)
launch=("$BIN")
if [ -n "$FIXTURES" ] && [ -f "$FIXTURES/detector_standin.pt" ]; then
  launch=(mpirun --oversubscribe -np 2 "$BIN")
  common+=(--metrics fid50k_full --detector "$FIXTURES/detector_standin.pt" --metrics-num-gen 64 --wait-metrics)
else
  echo "note: no detector_standin.pt in '${FIXTURES}': one rank, metric results not checked"
fi
"${launch[@]}" train "${common[@]}" --cbase 256 --cmax 32 --batch 4 --kimg 1.2 --tick 0.4 --snap 1 \
  > "$W/seg1.log" 2>&1 || { tail -5 "$W/seg1.log"; fail "first segment ($W/seg1.log)"; }
sleep 1  # the resumed segment's file name has a later second
"${launch[@]}" train "${common[@]}" --resume latest --kimg 2.2 \
  > "$W/seg2.log" 2>&1 || { tail -5 "$W/seg2.log"; fail "resumed segment"; }
"$PY" "$SRC/tests/tb_check.py" "$W/run" --segments 2 --min-last-step 2 || fail "tb_check.py"
if [ "${launch[0]}" = mpirun ]; then
  ls "$W/run"/metric-*.jsonl >/dev/null 2>&1 || fail "the metrics rank wrote no results"
  ls "$W/run"/metrics/events.out.tfevents.* >/dev/null 2>&1 || fail "the metrics rank wrote no event file"
fi

# ---- 2. resumed from an older checkpoint ----
[ -f "$W/run/network-snapshot-000001.h5" ] || fail "no checkpoint of kimg 1 to resume from"
sleep 1
"${launch[@]}" train "${common[@]}" --resume "$W/run/network-snapshot-000001.h5" --kimg 1.3 \
  > "$W/seg3.log" 2>&1 || { tail -5 "$W/seg3.log"; fail "segment resumed from kimg 1.2"; }
"$PY" "$SRC/tests/tb_check.py" "$W/run" --segments 3 --min-last-step 1 || fail "tb_check.py after the older resume"

# ---- 3. --tensorboard off / bad values ----
"$BIN" train --data "$W/ph.h5" --run-dir "$W/off" --threads 1 --cbase 256 --cmax 32 --batch 4 --kimg 0.004 \
  --tick 0.004 --tensorboard off > "$W/off.log" 2>&1 || fail "run with --tensorboard off"
ls "$W/off"/events.out.tfevents.* >/dev/null 2>&1 && fail "--tensorboard off wrote an event file"
[ -s "$W/off/stats.jsonl" ] || fail "--tensorboard off: no stats.jsonl"
"$BIN" train --data "$W/ph.h5" --run-dir "$W/bad" --tensorboard maybe > "$W/bad.log" 2>&1
rc=$?
[ $rc -eq 2 ] || fail "--tensorboard maybe: exit code $rc, expected 2"
grep -q -- "--tensorboard" "$W/bad.log" || fail "--tensorboard maybe: the message does not name the flag"
echo "ok: --tensorboard off writes no event file; --tensorboard maybe is refused ($(head -1 "$W/bad.log"))"
echo "PASS"
