#!/usr/bin/env bash
# End-to-end: a tiny CPU training submitted with slurm/train-cpu.sbatch to a real single-node
# Slurm on this machine (slurm/local-slurm.sh), preempted mid-run the way Slurm warns a job
# before its time limit (USR1 to the batch shell: `scancel --signal=USR1 --batch`), requeued by
# the job itself, resumed from its checkpoint in the same run directory, and finished.
#
#   bash tests/e2e_slurm_requeue.sh [path/to/styleforge]
#
# Checks: the job ran twice (Restarts=1) and completed; log.txt says "Resuming from";
# stats.jsonl's Progress/kimg increases across the requeue and reaches --kimg; the final
# checkpoint exists; status.json says done; `styleforge status` reads it; promtool accepts the
# .prom file. Needs root (slurmd) and slurm-wlm + munge (scripts/install-deps.sh).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BIN=$(realpath "${1:-$SRC/build/styleforge}")
KIMG=0.3
t_start=$(date +%s)
say() { echo "[e2e-slurm +$(($(date +%s) - t_start))s] $*"; }
fail() { say "FAIL: $*"; exit 1; }

[ -x "$BIN" ] || fail "no styleforge binary at $BIN"
[ "$(id -u)" -eq 0 ] || fail "needs root: slurmd must start jobs (run as root, as CI does)"
command -v promtool >/dev/null || fail "promtool missing (bash scripts/install-deps.sh)"

WORK=$(mktemp -d /tmp/styleforge-e2e-slurm.XXXXXX)
SLURM_DIR=$WORK/slurm
jobid=""
cleanup() {
  local rc=$?
  if [ $rc -ne 0 ]; then
    say "--- diagnostics ---"
    [ -n "$jobid" ] && scontrol show job "$jobid" 2>/dev/null | head -30
    tail -40 "$WORK"/slurm-*.out 2>/dev/null || true
    tail -20 "$WORK"/runs/*/log.txt 2>/dev/null || true
    tail -20 "$SLURM_DIR"/log/slurmctld.log "$SLURM_DIR"/log/slurmd.log 2>/dev/null || true
  fi
  [ -n "$jobid" ] && scancel "$jobid" 2>/dev/null || true
  bash "$SRC/slurm/local-slurm.sh" stop "$SLURM_DIR" || true
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT

eval "$(bash "$SRC/slurm/local-slurm.sh" start "$SLURM_DIR")"
say "local Slurm up ($SLURM_CONF)"

"$BIN" phantoms --dest "$WORK/phantoms" --count 64 --resolution 16 >/dev/null 2>&1
"$BIN" pack --source "$WORK/phantoms" --dest "$WORK/phantoms.h5" >/dev/null 2>&1
say "tiny pack written"

cd "$WORK"
jobid=$(SF_DATA="$WORK/phantoms.h5" SF_OUTDIR="$WORK/runs" STYLEFORGE="$BIN" STYLEFORGE_ROOT="$SRC" \
        sbatch --parsable --cpus-per-task=1 --mem=1G --time=10:00 "$SRC/slurm/train-cpu.sbatch" \
        --cbase 256 --cmax 32 --batch 4 --kimg "$KIMG" --tick 0.02 --snap 1)
RUN="$WORK/runs/slurm-$jobid"
say "submitted job $jobid; run dir $RUN"

job_field() { scontrol show job "$jobid" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$1=//p" | head -1; }
ticks() { [ -f "$RUN/stats.jsonl" ] && wc -l <"$RUN/stats.jsonl" || echo 0; }

# Wait for a few ticks and a checkpoint, then warn the job as Slurm does before the time limit.
for _ in $(seq 240); do
  [ "$(ticks)" -ge 3 ] && compgen -G "$RUN/network-snapshot-*.h5" >/dev/null && break
  state=$(job_field JobState)
  [[ $state == FAILED || $state == CANCELLED || $state == COMPLETED ]] && fail "job $state before the requeue"
  sleep 0.5
done
[ "$(ticks)" -ge 3 ] || fail "no 3 ticks in 120 s"
ticks_before=$(ticks)
say "$ticks_before ticks written; sending USR1 to the batch shell (scancel --signal=USR1 --batch)"
scancel --signal=USR1 --batch "$jobid"

# The job checkpoints, exits 3, requeues itself, runs again and completes. Slurm holds a
# requeued job back for about two minutes (Reason=BeginTime); the test moves its begin time to now.
released=0
for _ in $(seq 360); do
  state=$(job_field JobState)
  restarts=$(job_field Restarts)
  if [[ $released == 0 && $state == PENDING && ${restarts:-0} -ge 1 ]]; then
    # Start it again only once the node has finished cleaning up after the first incarnation.
    for _ in $(seq 60); do [[ $(sinfo -h -o %t) == idle* ]] && break; sleep 0.5; done
    sleep 3  # slurmd may still be tearing down the first incarnation's step when the node shows idle
    say "job requeued (pending, $(job_field Reason)); node $(sinfo -h -o %t); moving its begin time to now"
    scontrol update JobId="$jobid" StartTime=now
    released=1
  fi
  [[ $state == COMPLETED && ${restarts:-0} -ge 1 ]] && break
  if [[ $state == FAILED && $(job_field RunTime) == 00:00:00 && ${relaunches:-0} -lt 2 ]]; then
    # The local single-node Slurm occasionally fails to launch a batch script it has just
    # released (the job never ran: RunTime 0). Requeue it as an admin would; it resumes the same.
    relaunches=$(( ${relaunches:-0} + 1 ))
    say "the local Slurm failed to launch the released job (RunTime 0); requeueing it again ($relaunches)"
    scontrol requeue "$jobid"
    released=0
    sleep 1
    continue
  fi
  [[ $state == FAILED || $state == CANCELLED || $state == TIMEOUT || $state == NODE_FAIL ]] && fail "job ended $state"
  sleep 0.5
done
[[ $state == COMPLETED ]] || fail "job not completed after the requeue (state $state, restarts ${restarts:-0})"
say "job completed after $restarts restart(s)"

grep -q "requeueing job $jobid" "$WORK/slurm-$jobid.out" || fail "the job did not requeue itself"
grep -q "restart 1" "$WORK/slurm-$jobid.out" || fail "no second start in slurm-$jobid.out"
grep -q 'Resuming from ".*network-snapshot-' "$RUN/log.txt" || fail "log.txt has no 'Resuming from'"
grep -q "Stop requested" "$RUN/log.txt" || fail "log.txt has no stop request"
compgen -G "$RUN/network-snapshot-*.h5" >/dev/null || fail "no final checkpoint"

python3 - "$RUN" "$KIMG" <<'EOF'
import json, sys
run, total = sys.argv[1], float(sys.argv[2])
lines = [json.loads(l) for l in open(run + "/stats.jsonl") if l.strip()]
kimg = [l["Progress/kimg"]["mean"] for l in lines]
secs = [l["Timing/total_sec"]["mean"] for l in lines]
restarts = [i for i in range(1, len(secs)) if secs[i] < secs[i - 1]]
assert len(restarts) == 1, f"expected one new process in stats.jsonl, found {len(restarts)}"
r = restarts[0]
assert all(b > a for a, b in zip(kimg, kimg[1:])), f"Progress/kimg not increasing: {kimg}"
assert abs(kimg[-1] - total) < 1e-9, f"last kimg {kimg[-1]} != {total}"
print(f"stats.jsonl: {len(kimg)} ticks, kimg {kimg[0]:.3f} .. {kimg[r-1]:.3f} | requeue | {kimg[r]:.3f} .. {kimg[-1]:.3f}")
st = json.load(open(run + "/status.json"))
assert st["state"] == "done", st["state"]
assert abs(st["kimg"] - total) < 1e-9, st["kimg"]
EOF

say "the job's own account (slurm-$jobid.out):"
grep -E "styleforge-requeue|srun: error|Resuming from|Stop requested" "$WORK/slurm-$jobid.out" | sed 's/^/    /'
"$BIN" status "$RUN" | tee "$WORK/status.txt"
grep -q " done " "$WORK/status.txt" || fail "styleforge status does not say done"
promtool check metrics <"$RUN/styleforge.prom" || fail "promtool rejects styleforge.prom"
say "PASS: requeued at tick $ticks_before, resumed from its checkpoint with continuous kimg, finished"
