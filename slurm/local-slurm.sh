#!/usr/bin/env bash
# A throwaway single-node Slurm on this machine, for tests: munged + slurmctld + slurmd with a
# minimal slurm.conf in a folder of its own (nothing under /etc is read or changed). It installs
# nothing: scripts/install-deps.sh installs slurm-wlm and munge. Needs root (slurmd starts jobs
# as their users).
#
#   slurm/local-slurm.sh start [DIR]   start it (DIR default: $SF_SLURM_DIR or /tmp/styleforge-slurm-$UID)
#                                      and print `export SLURM_CONF=DIR/slurm.conf`
#   slurm/local-slurm.sh stop [DIR]    stop the three daemons (by their pid files) and remove DIR
#                                      (kept with SF_SLURM_KEEP=1, e.g. to read DIR/log/)
#   slurm/local-slurm.sh env [DIR]     print the export line again
#
# The node is this host under its real short hostname with the CPUs and memory `slurmd -C`
# reports; SelectType=select/cons_tres, ProctrackType=proctrack/linuxproc, TaskPlugin=task/none,
# MpiDefault=pmix when Slurm's mpi_pmix plugin is installed (else none), free TCP ports on
# 127.0.0.1 picked at start. Jobs may be requeued (JobRequeue=1).
#
# For tests of the GPU templates on a machine without GPUs:
#   SF_SLURM_GPUS=G   the node offers G GPUs as generic resources (GresTypes=gpu, Gres=gpu:G, a
#                     gres.conf whose device files are links to /dev/null), so `--gpus-per-node=G`
#                     and `--gres=gpu:G` are accepted and jobs get SLURM_GPUS_* and
#                     CUDA_VISIBLE_DEVICES but no GPU: like a node whose GPUs have gone missing
#   SF_SLURM_CPUS=C   declare C CPUs instead of the ones `slurmd -C` counts (more tasks than cores
#                     on a small machine; SlurmdParameters=config_overrides, task/none binds nothing)
set -euo pipefail

cmd=${1:-}
DIR=${2:-${SF_SLURM_DIR:-/tmp/styleforge-slurm-$(id -u)}}
log() { echo "local-slurm: $*" >&2; }
die() { log "$*"; exit 1; }

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 not found (bash scripts/install-deps.sh installs slurm-wlm and munge)"
}

# A free TCP port on 127.0.0.1 (the kernel picks it; a race with another binder is unlikely).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
    echo $((20000 + RANDOM % 20000))
}

plugin_dir() {
  local d
  for d in /usr/lib/x86_64-linux-gnu/slurm-wlm /usr/lib/aarch64-linux-gnu/slurm-wlm /usr/lib64/slurm /usr/lib/slurm \
           /usr/local/lib/slurm; do
    [ -e "$d/select_cons_tres.so" ] && { echo "$d"; return; }
  done
  echo ""
}

stop_pidfile() {
  local f=$1 name=$2 pid
  [ -s "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && { log "$name ($pid) did not stop; killing it"; kill -9 "$pid" 2>/dev/null || true; }
  fi
  rm -f "$f"
}

do_stop() {
  [ -d "$DIR" ] || return 0
  stop_pidfile "$DIR/slurmd.pid" slurmd
  stop_pidfile "$DIR/slurmctld.pid" slurmctld
  stop_pidfile "$DIR/munge/munged.pid" munged
  if [ "${SF_SLURM_KEEP:-0}" = 1 ]; then log "stopped; logs kept in $DIR/log"; else rm -rf "$DIR"; fi
}

do_start() {
  [ "$(id -u)" -eq 0 ] || die "needs root (slurmd runs jobs as their owners)"
  for p in munged slurmctld slurmd sinfo scontrol; do need "$p"; done
  if [ -s "$DIR/slurmctld.pid" ] && kill -0 "$(cat "$DIR/slurmctld.pid")" 2>/dev/null; then
    log "already running in $DIR"
    echo "export SLURM_CONF=$DIR/slurm.conf"
    return
  fi
  rm -rf "$DIR"
  mkdir -p "$DIR"/{state,spool,log,munge}
  chmod 700 "$DIR" "$DIR/munge"

  # munge: a fresh key and a private socket.
  dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$DIR/munge/munge.key"
  munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.sock" \
    --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed" ||
    die "munged failed to start: $(tail -3 "$DIR/log/munged.log" 2>/dev/null)"

  local host node_line pdir mpi ctld_port slurmd_port
  host=$(hostname -s)
  # `slurmd -C` prints this machine's NodeName=... CPUs=... RealMemory=... line.
  node_line=$(slurmd -C 2>/dev/null | head -1)
  [[ $node_line == NodeName=* ]] || die "slurmd -C printed no node line"
  node_line=${node_line/NodeName=* CPUs=/NodeName=$host NodeAddr=127.0.0.1 CPUs=}
  local extra_conf="" gpus=${SF_SLURM_GPUS:-0} cpus=${SF_SLURM_CPUS:-}
  if [ -n "$cpus" ]; then
    # One socket of C single-thread cores; the memory stays as measured.
    node_line=$(sed -E "s/CPUs=[0-9]+ .*RealMemory=/CPUs=$cpus Boards=1 SocketsPerBoard=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=/" <<<"$node_line")
    extra_conf+="SlurmdParameters=config_overrides"$'\n'
  fi
  if [ "$gpus" -gt 0 ]; then
    extra_conf+="GresTypes=gpu"$'\n'
    node_line+=" Gres=gpu:$gpus"
    # Slurm wants a device file per GPU; links to /dev/null stand in (nothing opens them: no
    # cgroup device constraint here), so jobs get CUDA_VISIBLE_DEVICES=0,1,... and no GPU.
    mkdir -p "$DIR/fakegpu"
    for i in $(seq 0 $((gpus - 1))); do ln -s /dev/null "$DIR/fakegpu/nvidia$i"; done
    echo "NodeName=$host Name=gpu File=$DIR/fakegpu/nvidia[0-$((gpus - 1))]" >"$DIR/gres.conf"
  fi
  pdir=$(plugin_dir)
  mpi=none
  [ -n "$pdir" ] && [ -e "$pdir/mpi_pmix.so" ] && mpi=pmix
  ctld_port=$(free_port)
  slurmd_port=$(free_port)
  while [ "$slurmd_port" = "$ctld_port" ]; do slurmd_port=$(free_port); done

  cat >"$DIR/slurm.conf" <<EOF
# Written by slurm/local-slurm.sh: a single-node Slurm for tests.
ClusterName=styleforge-local
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.sock
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=$mpi
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
JobRequeue=1
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=600
KillWait=30
Waittime=0
${extra_conf}$node_line State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
  export SLURM_CONF=$DIR/slurm.conf
  slurmctld -c -f "$SLURM_CONF" || die "slurmctld failed: $(tail -5 "$DIR/log/slurmctld.log" 2>/dev/null)"
  slurmd -f "$SLURM_CONF" -N "$host" || die "slurmd failed: $(tail -5 "$DIR/log/slurmd.log" 2>/dev/null)"
  local state=""
  for _ in $(seq 60); do
    state=$(sinfo -h -n "$host" -o %t 2>/dev/null || true)
    [[ $state == idle* ]] && break
    sleep 0.5
  done
  if [[ $state != idle* ]]; then
    log "node state '$state' after 30 s; slurmctld log:"
    tail -20 "$DIR/log/slurmctld.log" >&2 || true
    log "slurmd log:"
    tail -20 "$DIR/log/slurmd.log" >&2 || true
    SF_SLURM_KEEP=1 do_stop
    exit 1
  fi
  log "up: node $host ($node_line), MpiDefault=$mpi, slurmctld port $ctld_port, config $SLURM_CONF"
  echo "export SLURM_CONF=$SLURM_CONF"
}

case "$cmd" in
  start) do_start ;;
  stop) do_stop ;;
  env) echo "export SLURM_CONF=$DIR/slurm.conf" ;;
  *) echo "usage: $0 start|stop|env [DIR]" >&2; exit 2 ;;
esac
