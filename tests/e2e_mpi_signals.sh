#!/usr/bin/env bash
# End-to-end failure handling under mpirun (ctest label mpi):
#  1. SIGUSR1 to one trainer rank: one coordinated checkpoint, every rank exits with code 3.
#  2. SIGKILL of one trainer rank: every other rank exits within 60 s, the log names the dead
#     rank, and the last checkpoint still loads.
#  3. Two trainers and a sum-only parameter server (--param-servers 1): SIGUSR1 to the server
#     reaches the trainers, which checkpoint; every rank exits with code 3.
#  4. SIGSTOP of rank 0: the other ranks time out, name rank 0 as silent, and the job ends.
# Usage: e2e_mpi_signals.sh STYLEFORGE_BINARY
set -u
BIN=${1:?usage: e2e_mpi_signals.sh STYLEFORGE_BINARY}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
W=$(mktemp -d /tmp/sf_e2e_signals.XXXXXX)
trap 'pkill -KILL -f "$W/" 2>/dev/null; rm -rf "$W"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$BIN" phantoms --dest "$W/ph" --count 64 --resolution 16 --quiet >/dev/null || fail "phantoms"
"$BIN" pack --source "$W/ph" --dest "$W/ph.h5" >/dev/null 2>&1 || fail "pack"

# pid_of_rank RANK: the styleforge process of that MPI rank (from its environment).
pid_of_rank() {
  for p in $(pgrep -f "$W/out"); do
    if tr '\0' '\n' < /proc/$p/environ 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1"; then
      [ "$(tr '\0' ' ' < /proc/$p/cmdline | cut -d' ' -f2)" = "train" ] && { echo "$p"; return; }
    fi
  done
}

start_run() {  # $1: output dir, then extra options (default: a metrics rank)
  local out=$1
  shift
  [ $# -eq 0 ] && set -- --metrics fid50k_full
  mpirun --oversubscribe -np 3 "$BIN" train --data "$W/ph.h5" --outdir "$out" --cbase 256 --cmax 32 --batch 4 \
    --kimg 50 --tick 0.02 --snap 2 --threads 1 --timeout "${TIMEOUT:-30}" "$@" > "$out.log" 2>&1 &
  MPIRUN=$!
  for _ in $(seq 1 120); do  # wait for the first checkpoint
    ls "$out"/*/network-snapshot-*.h5 >/dev/null 2>&1 && break
    sleep 0.5
  done
  ls "$out"/*/network-snapshot-*.h5 >/dev/null 2>&1 || { head -5 "$out.log"; fail "no checkpoint appeared ($out.log)"; }
  sleep 2
}

# ---- 1. SIGUSR1 ----
start_run "$W/out1"
P=$(pid_of_rank 1); [ -n "$P" ] || fail "rank 1 not found"
kill -USR1 "$P"
wait $MPIRUN; rc=$?
grep -q "Stop requested" "$W/out1.log" || fail "no coordinated stop in the log"
grep -q "Exiting for requeue" "$W/out1.log" || fail "trainer rank 0 did not exit for requeue"
grep -q "training finished (exit code 3)" "$W/out1.log" || fail "metrics rank did not get exit code 3"
[ $rc -eq 3 ] || fail "mpirun exit code $rc, expected 3 (requeue)"
echo "ok: SIGUSR1 to rank 1 -> checkpoint and exit code 3 on every rank"

# ---- 2. SIGKILL ----
start_run "$W/out2"
P=$(pid_of_rank 1); [ -n "$P" ] || fail "rank 1 not found"
t0=$(date +%s)
kill -KILL "$P"
for _ in $(seq 1 120); do kill -0 $MPIRUN 2>/dev/null || break; sleep 0.5; done
t1=$(date +%s)
kill -0 $MPIRUN 2>/dev/null && fail "ranks still running 60 s after rank 1 was killed"
left=$(pgrep -f "$W/out2" | wc -l)
[ "$left" -eq 0 ] || fail "$left styleforge processes left"
grep -Eq "rank 1 .*(exited on signal 9|Killed)|no heartbeat from rank 1" "$W/out2.log" || fail "the log does not name rank 1"
CKPT=$(ls "$W"/out2/*/network-snapshot-*.h5 | tail -1)
"$BIN" generate --network "$CKPT" --seeds 0-1 --outdir "$W/gen" --threads 1 >/dev/null || fail "last checkpoint does not load"
echo "ok: SIGKILL of rank 1 -> all ranks gone in $((t1 - t0)) s, rank 1 named, $(basename "$CKPT") loads"
# ---- 3. parameter server ----
start_run "$W/out3" --metrics-rank none --param-servers 1
grep -q "2 trainers, 1 parameter server" "$W/out3.log" || fail "topology without the parameter server ($W/out3.log)"
P=$(pid_of_rank 2); [ -n "$P" ] || fail "server rank 2 not found"
kill -USR1 "$P"
wait $MPIRUN; rc=$?
grep -q "Stop requested" "$W/out3.log" || fail "the server's stop did not reach the trainers"
grep -q "parameter server rank 2\] training finished (exit code 3)" "$W/out3.log" || fail "server did not get exit code 3"
[ $rc -eq 3 ] || fail "mpirun exit code $rc, expected 3 (requeue)"
echo "ok: 2 trainers + parameter server trained to a checkpoint; SIGUSR1 to the server -> exit code 3 on every rank"
# ---- 4. stopped rank 0 ----
TIMEOUT=8 start_run "$W/out4"
P=$(pid_of_rank 0); [ -n "$P" ] || fail "rank 0 not found"
kill -STOP "$P"
t0=$(date +%s)
for _ in $(seq 1 120); do kill -0 $MPIRUN 2>/dev/null || break; sleep 0.5; done
t1=$(date +%s)
kill -0 $MPIRUN 2>/dev/null && { kill -KILL "$P"; fail "ranks still running 60 s after rank 0 was stopped"; }
wait $MPIRUN; rc=$?
[ $rc -ne 0 ] || fail "mpirun exit code 0 after rank 0 was stopped"
grep -q "no heartbeat from rank 0" "$W/out4.log" || fail "the log does not name rank 0 ($(tail -5 "$W/out4.log"))"
echo "ok: SIGSTOP of rank 0 -> job ended in $((t1 - t0)) s (exit $rc), rank 0 named as silent"
echo "4 passed, 0 failed"
