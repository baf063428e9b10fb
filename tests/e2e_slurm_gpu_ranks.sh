#!/usr/bin/env bash
# End-to-end: the rank arithmetic of the GPU job scripts (slurm/train-1node-gpus.sbatch,
# slurm/train-multinode.sbatch through slurm/styleforge-requeue.sh and slurm/styleforge-task.sh)
# under a real single-node Slurm on this machine (slurm/local-slurm.sh), which offers 4 GPUs as
# generic resources without any device behind them. CPU tasks stand in for GPU tasks
# (SF_FAKE_GPUS=N: N "GPUs" per node, trainers get --device cpu).
#
#   bash tests/e2e_slurm_gpu_ranks.sh [path/to/styleforge]
#
# Jobs and checks:
#   A  the README's command, `sbatch slurm/train-1node-gpus.sbatch --cfg paper256 --metrics
#      fid50k_full ...` with 4 stand-in GPUs: 4 trainers + the metrics rank (asked for with
#      --metrics) as a 5th task, batch 64 = 4 x 16; trains
#      to the end (styleforge's own topology line, training_options.json, one binding line per
#      rank: trainer r on GPU r, the metrics rank on none).
#   B  train-multinode.sbatch on one node, 3 stand-in GPUs of which 2 for trainers
#      (SF_GPUS_PER_NODE=2): 2 trainers, the metrics rank on the spare GPU, batch 8 = 2 x 4.
#   G  train-1node-gpus.sbatch with 2 stand-in GPUs, --param-servers 1 --metrics none: 2 trainers
#      and a parameter server on the CPU. (A server and a metrics rank in one job are planned in F
#      only.)
#   C  --batch 6 with 4 stand-in GPUs (no --metrics: no metrics rank, 4 tasks): refused before
#      launch, one line, exit code 2.
#   D  --cfg paper256 with 3 stand-in GPUs: the preset's batch 64 refused for 3 trainers.
#   E  no stand-ins: 4 GPUs allocated by Slurm but none visible: refused before launch.
#   F  train-multinode.sbatch's default 4 nodes x 4 GPUs, planned only (SF_PLAN_ONLY=1, no job):
#      16 trainers, servers round-robin from the first node, metrics rank on the last; batch 24
#      refused.
# Needs root (slurmd), slurm-wlm and munge (scripts/install-deps.sh).
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
BIN=$(realpath "${1:-$SRC/build/styleforge}")
t_start=$(date +%s)
say() { echo "[e2e-slurm-gpu +$(($(date +%s) - t_start))s] $*"; }
fail() { say "FAIL: $*"; exit 1; }

[ -x "$BIN" ] || fail "no styleforge binary at $BIN"
[ "$(id -u)" -eq 0 ] || fail "needs root: slurmd must start jobs (run as root, as CI does)"

WORK=$(mktemp -d /tmp/styleforge-e2e-slurm-gpu.XXXXXX)
SLURM_DIR=$WORK/slurm
jobs_all=()
cleanup() {
  local rc=$?
  if [ $rc -ne 0 ]; then
    say "--- diagnostics ---"
    for j in "${jobs_all[@]}"; do scontrol show job "$j" 2>/dev/null | grep -E 'JobId|JobState|ExitCode' || true; done
    for f in "$WORK"/slurm-*.out; do [ -f "$f" ] && { echo "== $f"; tail -30 "$f"; }; done
    tail -20 "$WORK"/runs/*/log.txt 2>/dev/null || true
    tail -20 "$SLURM_DIR"/log/slurmctld.log "$SLURM_DIR"/log/slurmd.log 2>/dev/null || true
  fi
  for j in "${jobs_all[@]}"; do scancel "$j" 2>/dev/null || true; done
  bash "$SRC/slurm/local-slurm.sh" stop "$SLURM_DIR" || true
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT

# 4 GPUs as generic resources (device files that lead nowhere), 8 CPUs declared on this small
# machine so that 5 tasks fit.
eval "$(SF_SLURM_GPUS=4 SF_SLURM_CPUS=8 bash "$SRC/slurm/local-slurm.sh" start "$SLURM_DIR")"
say "local Slurm up with 4 GPUs that no process can use ($SLURM_CONF)"

"$BIN" phantoms --dest "$WORK/phantoms" --count 32 --resolution 16 >/dev/null 2>&1
"$BIN" pack --source "$WORK/phantoms" --dest "$WORK/phantoms.h5" >/dev/null 2>&1
say "tiny pack written"

cd "$WORK"
# Tiny networks and one or two iterations: the point is the ranks, not the training.
TINY=(--cbase 256 --cmax 32 --map 2 --tick 1 --snap 100 --grid 2x2 --metrics-threads 1)
submit() {  # submit ENV... -- SBATCH_OPTS... TEMPLATE TRAIN_OPTS...
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  env SF_DATA="$WORK/phantoms.h5" SF_OUTDIR="$WORK/runs" STYLEFORGE="$BIN" STYLEFORGE_ROOT="$SRC" \
    OMP_NUM_THREADS=1 "${envs[@]}" sbatch --parsable --cpus-per-task=1 --mem=1G --time=10:00 "$@"
}
job_field() { scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }
wait_job() {  # wait_job ID SECONDS -> prints the final state
  local state=""
  for _ in $(seq $(($2 * 2))); do
    state=$(job_field "$1" JobState)
    [[ $state == COMPLETED || $state == FAILED || $state == CANCELLED || $state == TIMEOUT || $state == NODE_FAIL ]] && break
    sleep 0.5
  done
  echo "$state"
}
out() { cat "$WORK/slurm-$1.out"; }
expect_line() {  # expect_line JOB REGEX WHAT
  grep -q -E -e "$2" "$WORK/slurm-$1.out" || fail "job $1 ($3): no line matching '$2' in slurm-$1.out"
}
expect_refusal() {  # expect_refusal JOB REGEX WHAT: failed with exit 2 and exactly one error line
  local state code n
  state=$(wait_job "$1" 60)
  code=$(job_field "$1" ExitCode)
  [ "$state" = FAILED ] && [ "$code" = 2:0 ] || fail "job $1 ($3): state $state exit $code, expected FAILED with exit code 2"
  n=$(grep -c 'error:' "$WORK/slurm-$1.out" || true)
  [ "$n" -eq 1 ] || fail "job $1 ($3): $n error lines, expected one"
  expect_line "$1" "error: $2" "$3"
  grep -q -E 'starting:|styleforge-task' "$WORK/slurm-$1.out" && fail "job $1 ($3): a step was started"
  say "job $1 ($3) refused before launch: $(grep 'error:' "$WORK/slurm-$1.out" | sed 's/^.*error: //')"
}

# F: the multinode template's arithmetic for 4 nodes x 4 GPUs, planned only (SF_PLAN_ONLY=1: the
# script checks and prints its ranks and layout and starts nothing), outside any job.
plan() {
  env SLURM_JOB_ID=plan SLURM_JOB_NODELIST='gpu[1-4]' SLURM_JOB_NUM_NODES=4 SLURM_NTASKS_PER_NODE=4 SLURM_NTASKS=16 \
    SF_FAKE_GPUS=4 SF_PLAN_ONLY=1 SF_OUTDIR="$WORK/plan" STYLEFORGE="$BIN" bash "$SRC/slurm/styleforge-requeue.sh" "$@" 2>&1
}
p=$(plan --batch 64 --param-servers 2 --metrics fid50k_full) || fail "F: plan for 4 x 4 GPUs failed: $p"
grep -q -E 'ranks: trainers=16 \(one per GPU: 4 per node x 4 node.*\) servers=2 metrics=1 tasks=19; batch=64 \(--batch\) per_trainer=4' <<<"$p" ||
  fail "F: wrong ranks for 4 x 4 GPUs: $p"
grep -q -F 'layout: gpu1 ranks 0-3,16 | gpu2 ranks 4-7,17 | gpu3 ranks 8-11 | gpu4 ranks 12-15,18 (' <<<"$p" ||
  fail "F: wrong layout for 4 x 4 GPUs: $p"
set +e
p=$(plan --batch 24)
rc=$?
set -e
[ "$rc" -eq 2 ] && grep -q 'error: batch 24 (--batch) is not divisible by 16 trainers' <<<"$p" ||
  fail "F: --batch 24 over 16 GPUs not refused (exit $rc): $p"
say "F: 4 nodes x 4 GPUs planned: 16 trainers, servers on nodes 1-2, metrics rank on node 4; batch 24 refused"

# All jobs at once; Slurm runs them as the node allows. The refusals take a second each.
jC=$(submit SF_FAKE_GPUS=4 -- "$SRC/slurm/train-1node-gpus.sbatch" --batch 6 --kimg 0.1)
jD=$(submit SF_FAKE_GPUS=3 -- --ntasks-per-node=3 "$SRC/slurm/train-1node-gpus.sbatch" --cfg paper256 --kimg 0.1)
# E needs a machine without GPUs (on one with GPUs the script would rightly see them).
host_gpus=$( { nvidia-smi -L 2>/dev/null || true; compgen -G '/dev/nvidia[0-9]*' || true; } | grep -c . || true)
jE=""
[ "$host_gpus" -eq 0 ] && jE=$(submit -- "$SRC/slurm/train-1node-gpus.sbatch" --cfg paper256 --kimg 0.1)
# A: the README's example as written, with CPU tasks standing in for the 4 GPUs.
jA=$(submit SF_FAKE_GPUS=4 -- "$SRC/slurm/train-1node-gpus.sbatch" --cfg paper256 --metrics fid50k_full --kimg 0.064 "${TINY[@]}")
# B: the multinode template on this one node; 3 stand-in GPUs, 2 trainers, the metrics rank on
# the spare one.
jB=$(submit SF_FAKE_GPUS=3 SF_GPUS_PER_NODE=2 -- --nodes=1 --ntasks-per-node=2 "$SRC/slurm/train-multinode.sbatch" \
     --batch 8 --kimg 0.008 --metrics fid50k_full "${TINY[@]}")
# G: 2 stand-in GPUs, --param-servers 1, no metrics rank.
jG=$(submit SF_FAKE_GPUS=2 -- --ntasks-per-node=2 "$SRC/slurm/train-1node-gpus.sbatch" \
     --batch 8 --kimg 0.008 --param-servers 1 --metrics none "${TINY[@]}")
jobs_all+=("$jC" "$jD" "$jA" "$jB" "$jG" ${jE:+"$jE"})
say "submitted C=$jC (batch 6, 4 GPUs) D=$jD (paper256, 3 GPUs) E=${jE:-skipped: this machine has GPUs} (GPUs allocated, none visible)"
say "submitted A=$jA (README: paper256, 4 GPUs) B=$jB (multinode, 2 of 3 GPUs) G=$jG (2 GPUs, 1 server)"
expect_refusal "$jC" "batch 6 \(--batch\) is not divisible by 4 trainers" "C: --batch 6 over 4 GPUs"
expect_line "$jC" "ranks: trainers=4 .* servers=0 metrics=0 tasks=4; batch=6" "C: ranks line (no --metrics: no metrics rank)"
expect_refusal "$jD" "batch 64 \(--cfg paper256\) is not divisible by 3 trainers" "D: paper256 over 3 GPUs"
[ -z "$jE" ] || expect_refusal "$jE" "4 GPU\(s\) per node requested but none is visible" "E: no visible GPU"

state=$(wait_job "$jA" 90)
[ "$state" = COMPLETED ] || fail "job A $jA ended $state"
RUN="$WORK/runs/slurm-$jA"
expect_line "$jA" "ranks: trainers=4 \(one per GPU: 4 per node x 1 node.*\) servers=0 metrics=1 tasks=5; batch=64 \(--cfg paper256\) per_trainer=16" "A: ranks line"
expect_line "$jA" "layout: $(hostname -s) ranks 0-4 \(more tasks than the allocation's 4 per node: --overcommit\)" "A: layout"
for r in 0 1 2 3; do expect_line "$jA" "rank $r of 5 \(.*local $r\): trainer $r, GPU $r .*--device cpu" "A: trainer $r bound to GPU $r"; done
expect_line "$jA" "rank 4 of 5 \(.*\): metrics rank, GPU none" "A: metrics rank without GPU"
grep -q -E "Topology: 5 ranks: 4 trainers, 1 metrics rank" "$RUN/log.txt" || fail "A: log.txt has no 'Topology: 5 ranks: 4 trainers, 1 metrics rank'"
grep -q -E '"num_trainers": 4,' "$RUN/training_options.json" || fail "A: training_options.json: num_trainers is not 4"
grep -q -E '"batch_size": 64,' "$RUN/training_options.json" || fail "A: training_options.json: batch_size is not 64"
say "job A $jA completed: 4 trainers x 16 + metrics rank as the 5th task"

state=$(wait_job "$jB" 90)
[ "$state" = COMPLETED ] || fail "job B $jB ended $state"
RUN="$WORK/runs/slurm-$jB"
expect_line "$jB" "ranks: trainers=2 \(one per GPU: 2 per node x 1 node.*\) servers=0 metrics=1 tasks=3; batch=8 \(--batch\) per_trainer=4" "B: ranks line"
expect_line "$jB" "--ntasks=3 --distribution=arbitrary --cpus-per-task=1 --overcommit" "B: 3 tasks on 2 allocated, overcommitted"
for r in 0 1; do expect_line "$jB" "rank $r of 3 \(.*local $r\): trainer $r, GPU $r " "B: trainer $r bound to GPU $r"; done
expect_line "$jB" "rank 2 of 3 \(.*\): metrics rank, GPU 2 " "B: metrics rank on the spare GPU"
grep -q -E "Topology: 3 ranks: 2 trainers, 1 metrics rank" "$RUN/log.txt" ||
  fail "B: log.txt has no 'Topology: 3 ranks: 2 trainers, 1 metrics rank'"
grep -q -E '"num_trainers": 2,' "$RUN/training_options.json" || fail "B: training_options.json: num_trainers is not 2"
say "job B $jB completed: 2 trainers x 4, metrics rank on the spare GPU"

state=$(wait_job "$jG" 90)
[ "$state" = COMPLETED ] || fail "job G $jG ended $state"
RUN="$WORK/runs/slurm-$jG"
expect_line "$jG" "ranks: trainers=2 \(one per GPU: 2 per node x 1 node.*\) servers=1 metrics=0 tasks=3; batch=8 \(--batch\) per_trainer=4" "G: ranks line"
for r in 0 1; do expect_line "$jG" "rank $r of 3 \(.*local $r\): trainer $r, GPU $r " "G: trainer $r bound to GPU $r"; done
expect_line "$jG" "rank 2 of 3 \(.*\): parameter server 0, GPU none.*--device cpu" "G: server on the CPU"
grep -q -E "Topology: 3 ranks: 2 trainers, 1 parameter server, no metrics rank" "$RUN/log.txt" ||
  fail "G: log.txt has no 'Topology: 3 ranks: 2 trainers, 1 parameter server, no metrics rank'"
grep -q -E '"num_trainers": 2,' "$RUN/training_options.json" || fail "G: training_options.json: num_trainers is not 2"
say "job G $jG completed: 2 trainers x 4, 1 parameter server"

say "the jobs' own account:"
for j in "$jA" "$jB" "$jG"; do grep -E "ranks:|styleforge-task\]" "$WORK/slurm-$j.out" | sed 's/^/    /'; done
say "PASS: trainers = GPUs, metrics rank and parameter servers as extra tasks, batch split checked, refusals one line each"
