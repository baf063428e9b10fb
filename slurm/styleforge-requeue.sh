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
# Ranks (checked before anything starts; one line `ranks: ...` in the job output says the result):
#   GPU jobs (the allocation has GPUs, or SF_GPUS_PER_NODE=G): one trainer per GPU, so
#     trainers T = GPUs per node x nodes, and the other ranks are added as extra tasks: S for
#     `--param-servers S`, 1 for the metrics rank (only when asked for, as with `styleforge train
#     --gpus N`: `--metrics NAMES` on the command line or `--metrics-rank on`; otherwise trainer
#     rank 0 computes the metrics, by default fid50k_full, at snapshots). The step gets
#     T + S + 1 tasks whatever --ntasks-per-node says; trainers fill each node's GPUs (ranks
#     0..T-1, G per node), parameter servers go round-robin over the nodes, the metrics rank
#     (the last rank) onto the last node; more tasks on a node than the allocation holds share
#     its cores (srun --overcommit). slurm/styleforge-task.sh binds each trainer to one GPU
#     (CUDA_VISIBLE_DEVICES from its local rank) and passes --device cuda; the metrics rank gets a
#     spare GPU of its node if there is one, else the CPU; parameter servers run on the CPU.
#     GPUs requested but none visible (nvidia-smi -L, /dev/nvidia*, CUDA_VISIBLE_DEVICES): refused.
#   CPU jobs: one rank per task of the allocation (--ntasks); the metrics rank and S servers come
#     out of them, the rest are trainers.
#   Either way the batch (--batch, else the run's training_options.json on a resume, else the
#   --cfg preset from `styleforge train --dry-run`) must be divisible by T; otherwise the job
#   stops here with one line, exit code 2, before any rank starts.
#
# Environment (the templates set the first ones):
#   SF_OUTDIR       folder of run directories (required unless SF_RUN_DIR is set)
#   SF_RUN_DIR      the run directory (default $SF_OUTDIR/slurm-$SLURM_JOB_ID)
#   STYLEFORGE      the styleforge binary (default: styleforge on PATH)
#   SF_LAUNCHER     srun (default) | mpirun (Open MPI inside the allocation) | none (one process)
#   SF_SRUN_MPI     srun's --mpi plugin (default pmix; `srun --mpi=list` shows what a cluster has)
#   SF_MPIRUN_ARGS  extra mpirun arguments (e.g. "--mca btl_tcp_if_include ib0")
#   SF_GPUS_PER_NODE  auto (default: the GPUs Slurm allocated per node; none: a CPU job) | G
#                   (G trainers per node, one GPU each) | 0 (a CPU job even with GPUs allocated)
#   SF_REQUIRE_GPUS 1: refuse to run without GPUs in the allocation (the GPU templates set it)
#   SF_DEVICE       --device of the trainers in a GPU job (default cuda; not added when the
#                   command line has --device)
#   SF_FAKE_GPUS    F: CPU tasks stand in for F GPUs per node (tests on machines without GPUs):
#                   the same ranks, layout and binding lines, no GPU check, SF_DEVICE default cpu
#                   (with SF_GPUS_PER_NODE=G < F, the metrics rank gets a spare stand-in GPU)
#   SF_PLAN_ONLY    1: check and print the `ranks:` and `layout:` lines, then exit 0 without
#                   starting anything
set -u

log() { echo "[styleforge-requeue $(date '+%F %T')] $*"; }

: "${SLURM_JOB_ID:?styleforge-requeue.sh runs inside a Slurm batch job (sbatch)}"
STYLEFORGE=${STYLEFORGE:-styleforge}
if [ -z "${SF_RUN_DIR:-}" ]; then
  : "${SF_OUTDIR:?set SF_OUTDIR (the folder of run directories) or SF_RUN_DIR}"
  SF_RUN_DIR=$SF_OUTDIR/slurm-$SLURM_JOB_ID
fi
LAUNCHER=${SF_LAUNCHER:-srun}

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

log "job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on ${SLURM_JOB_NODELIST:-?}: run dir $SF_RUN_DIR"
case "$LAUNCHER" in
  srun|mpirun|none) ;;
  *) log "unknown SF_LAUNCHER '$LAUNCHER' (srun, mpirun or none)"; exit 2 ;;
esac

# A configuration that cannot work: one line, exit code 2 (no requeue), before any rank starts.
refuse() { echo "[styleforge-requeue $(date '+%F %T')] error: $*" >&2; exit 2; }
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

# The last value of `--NAME V` or `--NAME=V` among the train options, or $2 when absent.
opt_value() {
  local name=$1 v=$2
  shift 2
  while [ $# -gt 0 ]; do
    case "$1" in
      --"$name") v=${2-}; [ $# -ge 2 ] && shift ;;
      --"$name"=*) v=${1#*=} ;;
    esac
    shift
  done
  printf '%s' "$v"
}
has_opt() { local a; for a in "${@:2}"; do [[ $a == --$1 || $a == --$1=* ]] && return 0; done; return 1; }

# GPUs per node that Slurm allocated (0: none). SLURM_GPUS_ON_NODE covers --gpus-per-node,
# --gres=gpu:G and --gpus; the others are for older Slurm versions.
slurm_gpus_per_node() {
  local v=${SLURM_GPUS_ON_NODE:-}
  if ! is_uint "$v" && [ -n "${SLURM_GPUS_PER_NODE:-}" ]; then v=${SLURM_GPUS_PER_NODE##*:}; fi
  if ! is_uint "$v" && [ -n "${SLURM_JOB_GPUS:-}" ]; then v=$(tr ',' '\n' <<<"$SLURM_JOB_GPUS" | grep -c .); fi
  is_uint "$v" && echo "$v" || echo 0
}

# GPUs this shell can use: CUDA_VISIBLE_DEVICES (set by Slurm) when set, but none at all when
# neither nvidia-smi nor /dev/nvidia* shows a device.
visible_gpus() {
  local hw cvd
  if command -v nvidia-smi >/dev/null 2>&1; then
    hw=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')
  else
    hw=$(compgen -G '/dev/nvidia[0-9]*' | grep -c .)
  fi
  if [ "${CUDA_VISIBLE_DEVICES+set}" = set ] && [ "$hw" -gt 0 ]; then
    cvd=$(tr ',' '\n' <<<"$CUDA_VISIBLE_DEVICES" | grep -v -E '^(|NoDevFiles|-1)$' | grep -c .)
    [ "$cvd" -lt "$hw" ] && hw=$cvd
  fi
  echo "$hw"
}

# ---- The ranks: trainers, parameter servers, metrics rank; the batch split.
nodes=${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-1}}
servers=$(opt_value param-servers 0 "$@")
is_uint "$servers" || refuse "--param-servers '$servers' is not a number"
# The metrics rank, decided as styleforge decides it: --metrics-rank on, or --metrics given (auto).
metrics_on=0
metrics_rank_mode=$(opt_value metrics-rank auto "$@")
if [ "$metrics_rank_mode" = on ] || { [ "$metrics_rank_mode" = auto ] && has_opt metrics "$@"; }; then
  for m in $(tr ',' ' ' <<<"$(opt_value metrics fid50k_full "$@")"); do [ "$m" != none ] && metrics_on=1; done
fi
standin=0
gpn=${SF_GPUS_PER_NODE:-auto}
if [ -n "${SF_FAKE_GPUS:-}" ]; then
  is_uint "$SF_FAKE_GPUS" || refuse "SF_FAKE_GPUS='$SF_FAKE_GPUS' is not a number"
  [ "$gpn" = auto ] && gpn=$SF_FAKE_GPUS
  standin=1
  is_uint "$gpn" && [ "$gpn" -le "$SF_FAKE_GPUS" ] || refuse "SF_GPUS_PER_NODE=$gpn but SF_FAKE_GPUS=$SF_FAKE_GPUS stand-in GPUs"
elif [ "$gpn" = auto ]; then
  gpn=$(slurm_gpus_per_node)
fi
is_uint "$gpn" || refuse "SF_GPUS_PER_NODE='$gpn' must be auto, 0 or a number of GPUs per node"
[ "$LAUNCHER" = none ] && gpn=0
if [ "${SF_REQUIRE_GPUS:-0}" = 1 ] && [ "$gpn" -eq 0 ]; then
  refuse "this job script starts one trainer per GPU, but the allocation has no GPUs (submit with --gpus-per-node=G or --gres=gpu:G)"
fi
if [ "$gpn" -gt 0 ]; then
  mapfile -t hosts < <(scontrol show hostnames "${SLURM_JOB_NODELIST:-$(hostname -s)}" 2>/dev/null)
  [ ${#hosts[@]} -gt 0 ] || hosts=("$(hostname -s)")
  nodes=${#hosts[@]}
  trainers=$((gpn * nodes))
  metrics=$metrics_on
  tasks=$((trainers + servers + metrics))
  if [ "$standin" = 0 ]; then
    vis=$(visible_gpus)
    [ "$vis" -gt 0 ] || refuse "$gpn GPU(s) per node requested but none is visible on $(hostname -s) (CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset}; nvidia-smi -L and /dev/nvidia* show no device): not starting trainers on the CPU"
    [ "$vis" -ge "$gpn" ] || refuse "$gpn GPU(s) per node requested but only $vis visible on $(hostname -s) (CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset})"
  fi
  device=${SF_DEVICE:-$([ "$standin" = 1 ] && echo cpu || echo cuda)}
  where="one per GPU: $gpn per node x $nodes node(s)$([ "$standin" = 1 ] && echo ", CPU tasks standing in (SF_FAKE_GPUS)")"
else
  tasks=1
  [ "$LAUNCHER" != none ] && tasks=${SLURM_NTASKS:-1}
  metrics=0
  [ "$metrics_on" = 1 ] && [ "$tasks" -ge 2 ] && metrics=1
  trainers=$((tasks - servers - metrics))
  [ "$trainers" -ge 1 ] || refuse "$tasks task(s) leave no trainer after $servers parameter server(s)$([ "$metrics" = 1 ] && echo " and the metrics rank"): submit with more tasks (--ntasks)"
  where="CPU ranks, one per task"
fi

# The batch: --batch, else the resumed run's options, else the --cfg preset (the dry run resolves
# it for one trainer; `--cfg auto` scales with the trainers, as trainer/train_options.cpp does).
batch=$(opt_value batch "" "$@")
batch_from="--batch"
if [ -z "$batch" ] && compgen -G "$SF_RUN_DIR/network-snapshot-*.h5" >/dev/null && [ -f "$SF_RUN_DIR/training_options.json" ]; then
  batch=$(sed -n 's/^ *"batch_size": *\([0-9]*\).*/\1/p' "$SF_RUN_DIR/training_options.json" | head -1)
  batch_from="the run's training_options.json"
fi
if [ -z "$batch" ]; then
  cfg=$(opt_value cfg auto "$@")
  dry=$("$STYLEFORGE" train --dry-run "$@" 2>&1)
  rc=$?
  [ "$rc" -eq 0 ] || refuse "styleforge train --dry-run refused the options (exit $rc): $(grep . <<<"$dry" | tail -1)"
  batch=$(sed -n 's/^ *"batch_size": *\([0-9]*\).*/\1/p' <<<"$dry" | head -1)
  res=$(sed -n 's/^ *"resolution": *\([0-9]*\).*/\1/p' <<<"$dry" | head -1)
  if [ "$cfg" = auto ] && is_uint "$res" && [ "$res" -gt 0 ]; then
    per=$((4096 / res)); [ "$per" -gt 32 ] && per=32
    batch=$((trainers * per)); [ "$batch" -gt 64 ] && batch=64; [ "$batch" -lt "$trainers" ] && batch=$trainers
  fi
  batch_from="--cfg $cfg"
fi
if is_uint "$batch" && [ "$batch" -gt 0 ]; then
  log "ranks: trainers=$trainers ($where) servers=$servers metrics=$metrics tasks=$tasks; batch=$batch ($batch_from)$([ $((batch % trainers)) -eq 0 ] && echo " per_trainer=$((batch / trainers))")"
  [ $((batch % trainers)) -eq 0 ] ||
    refuse "batch $batch ($batch_from) is not divisible by $trainers trainers ($where): choose --batch as a multiple of $trainers or another number of GPUs"
else
  # e.g. --resume of a network file: styleforge checks the batch itself once the ranks are up.
  log "ranks: trainers=$trainers ($where) servers=$servers metrics=$metrics tasks=$tasks; batch not known here"
fi

# Which node each rank of a GPU job runs on (srun --distribution=arbitrary reads SLURM_HOSTFILE):
# G trainers per node in node order, servers round-robin over the nodes, the metrics rank last
# on the last node. Local ranks follow global ranks, so each trainer's local rank is its GPU.
hostfile=""
overcommit=0
if [ "$gpn" -gt 0 ]; then
  layout=()
  for h in "${hosts[@]}"; do for _ in $(seq "$gpn"); do layout+=("$h"); done; done
  for s in $(seq 0 $((servers - 1))); do layout+=("${hosts[$((s % nodes))]}"); done
  [ "$metrics" = 1 ] && layout+=("${hosts[$((nodes - 1))]}")
  # More tasks on a node than the allocation gave it: they share its cores (srun --overcommit).
  per_node=${SLURM_TASKS_PER_NODE:-}
  per_node=${SLURM_NTASKS_PER_NODE:-${per_node%%[(,]*}}
  is_uint "${per_node:-}" || per_node=$(( ${SLURM_NTASKS:-1} / nodes ))
  most=$(printf '%s\n' "${layout[@]}" | sort | uniq -c | sort -rn | awk 'NR==1{print $1}')
  [ "$most" -gt "$per_node" ] && overcommit=1
  # One line: each node's ranks, consecutive ones as a range (trainers first, then the extras).
  log "layout: $(printf '%s\n' "${layout[@]}" | awk '
    { if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 }
      r = NR - 1
      if (last[$1] == r - 1 && ($1 in cur)) { end[$1] = r } else {
        if ($1 in cur) txt[$1] = txt[$1] (txt[$1] == "" ? "" : ",") span(cur[$1], end[$1])
        cur[$1] = r; end[$1] = r }
      last[$1] = r }
    function span(a, b) { return a == b ? a : a "-" b }
    END { for (i = 1; i <= n; i++) { h = order[i]
            t = txt[h] (txt[h] == "" ? "" : ",") span(cur[h], end[h])
            printf "%s%s ranks %s", (i > 1 ? " | " : ""), h, t } }')$([ "$overcommit" = 1 ] && echo " (more tasks than the allocation's $per_node per node: --overcommit)")"
  if [ "${SF_PLAN_ONLY:-0}" = 1 ]; then log "SF_PLAN_ONLY=1: not starting anything"; exit 0; fi
  hostfile=$(mktemp "${TMPDIR:-/tmp}/styleforge-hosts.XXXXXX")
  printf '%s\n' "${layout[@]}" >"$hostfile"
  trap 'rm -f "$hostfile"' EXIT
  # What each rank needs to bind itself (slurm/styleforge-task.sh).
  export SF_TASK_TRAINERS=$trainers SF_TASK_GPUS_PER_NODE=$gpn SF_TASK_DEVICE=$device SF_TASK_STANDIN=$standin
  SF_TASK_METRICS_RANK=-1
  [ "$metrics" = 1 ] && SF_TASK_METRICS_RANK=$((tasks - 1))
  SF_TASK_SET_DEVICE=1
  has_opt device "$@" && SF_TASK_SET_DEVICE=0
  export SF_TASK_METRICS_RANK SF_TASK_SET_DEVICE
  unset SF_TASK_GPU_LIST
  if [ "$standin" = 1 ]; then SF_TASK_GPU_LIST=$(seq -s, 0 $((SF_FAKE_GPUS - 1))); export SF_TASK_GPU_LIST; fi
fi
if [ "${SF_PLAN_ONLY:-0}" = 1 ]; then log "SF_PLAN_ONLY=1: not starting anything"; exit 0; fi
mkdir -p "$SF_RUN_DIR"

# The step's command line; `--resume latest` once the run directory holds a checkpoint.
build_step() {
  local resume=()
  if compgen -G "$SF_RUN_DIR/network-snapshot-*.h5" >/dev/null; then resume=(--resume latest); fi
  local train=("$STYLEFORGE" train --run-dir "$SF_RUN_DIR" "${resume[@]}" "$@")
  case "$LAUNCHER:$gpn" in
    srun:0)
      # One task per rank as the allocation says; --kill-on-bad-exit ends the step when a rank fails.
      step=(srun --mpi="${SF_SRUN_MPI:-pmix}" --kill-on-bad-exit=1 "${train[@]}") ;;
    srun:*)
      # GPU job: exactly $tasks tasks placed by the hostfile, each bound by styleforge-task.sh. The
      # step gets all the job's GPUs (no per-task GPU options: the extra ranks need none); the
      # allocation's per-node and per-task GPU counts must not constrain it.
      local opts=(--mpi="${SF_SRUN_MPI:-pmix}" --kill-on-bad-exit=1 --ntasks="$tasks" --distribution=arbitrary)
      [ -n "${SLURM_CPUS_PER_TASK:-}" ] && opts+=(--cpus-per-task="$SLURM_CPUS_PER_TASK")
      [ "$overcommit" = 1 ] && opts+=(--overcommit)
      step=(env -u SLURM_NTASKS_PER_NODE -u SLURM_GPUS_PER_TASK -u SLURM_GPU_BIND SLURM_HOSTFILE="$hostfile"
            srun "${opts[@]}" bash "$SCRIPT_DIR/styleforge-task.sh" "${train[@]}") ;;
    mpirun:*)
      # Open MPI reads the Slurm allocation and starts its daemons with srun itself. In a GPU job
      # its slot order puts the trainers first on every node (keep --ntasks-per-node = GPUs per
      # node); the extra ranks oversubscribe.
      local wrap=() np=${SLURM_NTASKS:-1} more=()
      if [ "$gpn" -gt 0 ]; then
        wrap=(bash "$SCRIPT_DIR/styleforge-task.sh")
        np=$tasks
        more=(--oversubscribe -x SF_TASK_TRAINERS -x SF_TASK_GPUS_PER_NODE -x SF_TASK_DEVICE -x SF_TASK_STANDIN
              -x SF_TASK_METRICS_RANK -x SF_TASK_SET_DEVICE)
        [ "$standin" = 1 ] && more+=(-x SF_TASK_GPU_LIST)
      fi
      # shellcheck disable=SC2206
      step=(mpirun -np "$np" --bind-to none "${more[@]}"
            -x NCCL_SOCKET_IFNAME -x NCCL_IB_HCA -x HDF5_USE_FILE_LOCKING -x OMP_NUM_THREADS -x STYLEFORGE_PROM_DIR
            ${SF_MPIRUN_ARGS:-} "${wrap[@]}" "${train[@]}") ;;
    none:*)
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
