#!/usr/bin/env bash
# One rank of a GPU job, started by slurm/styleforge-requeue.sh under srun or mpirun: binds the
# rank to its GPU and execs styleforge (signals reach styleforge directly).
#
#   styleforge-task.sh styleforge train [options...]
#
# Ranks 0..T-1 are trainers, G per node, in rank order on each node, so a trainer's local rank is
# its GPU's index among the node's GPUs (CUDA_VISIBLE_DEVICES as Slurm set it for the step):
# CUDA_VISIBLE_DEVICES becomes that one GPU and `--device $SF_TASK_DEVICE` (cuda) is added. The
# metrics rank takes the node's first GPU after the trainers' when there is one, else the CPU;
# parameter servers run on the CPU (CUDA_VISIBLE_DEVICES empty, --device cpu). A trainer without
# a GPU of its own stops the job with one line instead of training on the CPU.
#
# Environment (set by styleforge-requeue.sh): SF_TASK_TRAINERS (T), SF_TASK_GPUS_PER_NODE (G),
# SF_TASK_METRICS_RANK (-1: none), SF_TASK_DEVICE, SF_TASK_SET_DEVICE (0: the command line has
# --device), SF_TASK_STANDIN=1 with SF_TASK_GPU_LIST (CPU tasks standing in for GPUs: the same
# binding, no device check).
set -u
rank=${OMPI_COMM_WORLD_RANK:-${SLURM_PROCID:-${PMIX_RANK:-0}}}
local_rank=${OMPI_COMM_WORLD_LOCAL_RANK:-${SLURM_LOCALID:-0}}
size=${OMPI_COMM_WORLD_SIZE:-${SLURM_NTASKS:-1}}
host=$(hostname -s)
fail() { echo "styleforge-task: rank $rank ($host): error: $*" >&2; exit 1; }

trainers=${SF_TASK_TRAINERS:?set by styleforge-requeue.sh}
gpn=${SF_TASK_GPUS_PER_NODE:?set by styleforge-requeue.sh}
metrics_rank=${SF_TASK_METRICS_RANK:--1}
device=${SF_TASK_DEVICE:-cuda}
standin=${SF_TASK_STANDIN:-0}
# Under mpirun, the SLURM_NTASKS inherited from the allocation (or from Open MPI's srun of its
# daemons) does not count these ranks; styleforge compares it with the MPI world size.
[ -n "${OMPI_COMM_WORLD_SIZE:-}" ] && export SLURM_NTASKS=$size

# The GPUs this node gives the step.
if [ "$standin" = 1 ]; then
  list=${SF_TASK_GPU_LIST:-}
  note=" (a CPU task standing in)"
else
  note=""
  hw=0
  if command -v nvidia-smi >/dev/null 2>&1; then
    hw=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')
  else
    hw=$(compgen -G '/dev/nvidia[0-9]*' | grep -c .)
  fi
  if [ "$hw" -eq 0 ]; then
    list=""
  elif [ "${CUDA_VISIBLE_DEVICES+set}" = set ]; then
    list=$CUDA_VISIBLE_DEVICES
  else
    list=$(seq -s, 0 $((hw - 1)))
  fi
fi
gpus=()
IFS=, read -r -a all <<<"$list"
for g in "${all[@]}"; do [[ -n $g && $g != NoDevFiles && $g != -1 ]] && gpus+=("$g"); done

gpu=""
if [ "$rank" -lt "$trainers" ]; then
  [ "$local_rank" -lt "${#gpus[@]}" ] ||
    fail "trainer $rank has local rank $local_rank but ${#gpus[@]} GPU(s) are visible on $host (CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset}): not starting it on the CPU"
  gpu=${gpus[$local_rank]}
  role="trainer $rank"
elif [ "$rank" -eq "$metrics_rank" ]; then
  role="metrics rank"
  if [ "$gpn" -lt "${#gpus[@]}" ]; then gpu=${gpus[$gpn]}; else device=cpu; fi
else
  role="parameter server $((rank - trainers))"
  device=cpu
fi
export CUDA_VISIBLE_DEVICES=$gpu
args=("$@")
if [ "${SF_TASK_SET_DEVICE:-1}" = 1 ]; then
  args+=(--device "$device")
  how="--device $device"
else
  how="--device from the command line"
fi
echo "[styleforge-task] rank $rank of $size ($host, local $local_rank): $role, GPU ${gpu:-none}$note, $how"
exec "${args[@]}"
