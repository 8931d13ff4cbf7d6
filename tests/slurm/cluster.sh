#!/usr/bin/env bash
# A throw-away single-node Slurm cluster (munge + slurmctld + slurmd as root) in DIR.
#   cluster.sh start DIR   -> writes DIR/slurm.conf; prints "export SLURM_CONF=..."; fails with
#                             the daemons' logs if the node is not idle within 30 s
#   cluster.sh stop DIR    -> stops the daemons by their PID files
set -euo pipefail
ACTION="$1" D="$(readlink -f "$2")"

stop() {
  local f pid
  for f in "$D"/slurmd.pid "$D"/slurmctld.pid "$D"/munged.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f"); kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
}

fail() {
  echo "slurm test cluster did not come up: $*" >&2
  for log in "$D"/munged.log "$D"/slurmctld.log "$D"/slurmd.log; do
    [ -f "$log" ] && { echo "--- $log" >&2; tail -n 30 "$log" >&2; }
  done
  stop
  exit 1
}

start() {
  mkdir -p "$D/munge" "$D/state" "$D/spool"
  chmod 755 "$D" "$D/munge"
  mungekey --create --keyfile "$D/munge.key" --force >/dev/null
  chmod 600 "$D/munge.key"
  munged --key-file "$D/munge.key" --socket "$D/munge/munge.socket.2" --pid-file "$D/munged.pid" \
    --log-file "$D/munged.log" --seed-file "$D/munged.seed" --force || fail "munged"
  local host port cpus mem
  host=$(hostname -s)
  port=$(( 20000 + RANDOM % 20000 ))
  cpus=$(nproc)
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
  cat > "$D/slurm.conf" <<CONF
ClusterName=vaetest
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$D/munge/munge.socket.2,cred_expire=10
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/slurmctld.log
SlurmdLogFile=$D/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmix
MailProg=/bin/true
ReturnToService=2
JobRequeue=1
SchedulerParameters=sched_interval=2,bf_interval=2
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
  export SLURM_CONF="$D/slurm.conf"
  slurmctld -f "$SLURM_CONF" || fail "slurmctld"
  slurmd -f "$SLURM_CONF" || fail "slurmd"
  for _ in $(seq 300); do
    if sinfo -h -o %t 2>/dev/null | grep -qx idle; then echo "export SLURM_CONF=$SLURM_CONF"; return 0; fi
    sleep 0.1
  done
  fail "node not idle after 30 s: $(sinfo -h 2>&1 | head -3)"
}

case "$ACTION" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: cluster.sh start|stop DIR" >&2; exit 2 ;;
esac
