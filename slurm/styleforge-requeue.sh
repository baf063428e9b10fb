#!/usr/bin/env bash
# Runs `styleforge train` as the step of a Slurm batch job that survives preemption and time limits.
# The sbatch templates beside this file `exec` it, so it *is* the batch shell and receives the
# signal of `#SBATCH --signal=B:USR1@120`.
#
#   styleforge-requeue.sh [styleforge train options...]      (inside `sbatch`)
#
# Flow:
#   1. The run directory is keyed by the job id: ${SF_RUN_DIR:-$SF_OUTDIR/slurm-$SLURM_JOB_ID}.
#      A requeued job keeps its id, so the restarted script finds the same directory, and when it
#      holds a checkpoint (network-snapshot-*.h5) adds `--resume latest`: training continues from
#      it exactly, kimg numbering included.
#   2. The step is started in the background (srun, mpirun or directly) and the script waits.
#   3. USR1 (Slurm's warning before the time limit, or `scancel --signal=USR1 --batch JOBID` from
#      an admin) and TERM are forwarded to the step as USR1: every rank finishes its iteration,
#      rank 0 writes a checkpoint, and styleforge exits with code 3 ("requeue me").
#   4. Exit code 3 after USR1: `scontrol requeue $SLURM_JOB_ID` puts the job back in the queue.
#      After TERM (scancel, or preemption, where Slurm's PreemptMode=REQUEUE requeues by itself)
#      the script does not requeue, so a cancelled job stays cancelled. SF_REQUEUE_ON_TERM=1
#      requeues after TERM too.
#
# Environment (the templates set the first ones):
#   SF_OUTDIR       folder of run directories (required unless SF_RUN_DIR is set)
#   SF_RUN_DIR      the run directory (default $SF_OUTDIR/slurm-$SLURM_JOB_ID)
#   STYLEFORGE      the styleforge binary (default: styleforge on PATH)
#   SF_LAUNCHER     srun (default) | mpirun (Open MPI inside the allocation) | none (one process)
#   SF_SRUN_MPI     srun's --mpi plugin (default pmix; `srun --mpi=list` shows what a cluster has)
#   SF_MPIRUN_ARGS  extra mpirun arguments (e.g. "--mca btl_tcp_if_include ib0")
set -u

log() { echo "[styleforge-requeue $(date '+%F %T')] $*"; }

: "${SLURM_JOB_ID:?styleforge-requeue.sh runs inside a Slurm batch job (sbatch)}"
STYLEFORGE=${STYLEFORGE:-styleforge}
if [ -z "${SF_RUN_DIR:-}" ]; then
  : "${SF_OUTDIR:?set SF_OUTDIR (the folder of run directories) or SF_RUN_DIR}"
  SF_RUN_DIR=$SF_OUTDIR/slurm-$SLURM_JOB_ID
fi
LAUNCHER=${SF_LAUNCHER:-srun}

mkdir -p "$SF_RUN_DIR"
log "job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on ${SLURM_JOB_NODELIST:-?}: run dir $SF_RUN_DIR"
case "$LAUNCHER" in
  srun|mpirun|none) ;;
  *) log "unknown SF_LAUNCHER '$LAUNCHER' (srun, mpirun or none)"; exit 2 ;;
esac

# The step's command line; `--resume latest` once the run directory holds a checkpoint.
build_step() {
  local resume=()
  if compgen -G "$SF_RUN_DIR/network-snapshot-*.h5" >/dev/null; then resume=(--resume latest); fi
  local train=("$STYLEFORGE" train --run-dir "$SF_RUN_DIR" "${resume[@]}" "$@")
  case "$LAUNCHER" in
    srun)
      # One task per rank as the allocation says; --kill-on-bad-exit ends the step when a rank fails.
      step=(srun --mpi="${SF_SRUN_MPI:-pmix}" --kill-on-bad-exit=1 "${train[@]}") ;;
    mpirun)
      # Open MPI reads the Slurm allocation and starts its daemons with srun itself.
      # shellcheck disable=SC2206
      step=(mpirun -np "${SLURM_NTASKS:-1}" --bind-to none
            -x NCCL_SOCKET_IFNAME -x NCCL_IB_HCA -x HDF5_USE_FILE_LOCKING -x OMP_NUM_THREADS -x STYLEFORGE_PROM_DIR
            ${SF_MPIRUN_ARGS:-} "${train[@]}") ;;
    none)
      step=("${train[@]}") ;;
  esac
}

stop_signal=""
child=""
forward() {
  stop_signal=$1
  log "received SIG$1: asking the training step to checkpoint and exit"
  [ -n "$child" ] && kill -USR1 "$child" 2>/dev/null || true
}
trap 'forward USR1' USR1
trap 'forward TERM' TERM
trap 'forward INT' INT

run_state() { sed -n 's/^ *"state": *"\([a-z]*\)".*/\1/p' "$SF_RUN_DIR/status.json" 2>/dev/null | head -1; }

# srun can exit 0 without having run anything (e.g. "task 0 launch failed" right after a requeue,
# while the node still cleans up the previous incarnation): a step counts as finished only when
# the run says so in status.json; otherwise it is launched again, up to SF_LAUNCH_TRIES times.
tries=${SF_LAUNCH_TRIES:-3}
for try in $(seq "$tries"); do
  build_step "$@"
  log "starting: ${step[*]}"
  "${step[@]}" &
  child=$!
  # `wait` returns early (status > 128) when a trapped signal arrives; wait again until the step is gone.
  while kill -0 "$child" 2>/dev/null; do wait "$child"; done
  wait "$child"
  rc=$?
  child=""
  if [ "$rc" -ne 0 ] || [ -n "$stop_signal" ] || [ "$(run_state)" = done ]; then break; fi
  log "the step exited 0 but the run is not done (status: $(run_state)); launch $try of $tries failed"
  rc=1
  [ "$try" -lt "$tries" ] && sleep 10
done
trap - USR1 TERM INT

case "$rc" in
  0)
    log "training finished"
    exit 0 ;;
  3)
    if [ "$stop_signal" = USR1 ] || { [ -n "$stop_signal" ] && [ "${SF_REQUEUE_ON_TERM:-0}" = 1 ]; } || [ -z "$stop_signal" ]; then
      log "checkpoint written (exit 3): requeueing job $SLURM_JOB_ID"
      if scontrol requeue "$SLURM_JOB_ID"; then exit 0; fi
      log "scontrol requeue failed (was the job submitted with --requeue?); resubmit it to continue"
      exit 3
    fi
    log "checkpoint written after SIG$stop_signal; not requeueing (SF_REQUEUE_ON_TERM=1 would)"
    exit 3 ;;
  *)
    log "training step failed with exit code $rc"
    # A rank killed from outside (OOM killer, node failure) cannot say so itself.
    "$STYLEFORGE" status --set-state failed --no-header "$SF_RUN_DIR" || true
    exit "$rc" ;;
esac
