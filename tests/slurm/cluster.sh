#!/usr/bin/env bash
# A throw-away Slurm cluster (munge + slurmctld + slurmd, as root) in DIR, on this machine.
#   cluster.sh start DIR        -> one node: this machine itself
#   cluster.sh start DIR N      -> N nodes vn1..vnN (N >= 2), each a network namespace with its
#                                  own address on a bridge (a veth pair each), its own hostname
#                                  (UTS namespace) and its own /etc/hosts, running its own
#                                  slurmd; slurmctld and munged stay here, at the bridge's address
#     both print "export SLURM_CONF=..." and fail, with the daemons' logs, if the nodes are not
#     idle within 30 s
#   cluster.sh stop DIR         -> kills every daemon and process the cluster started, removes
#                                  its namespaces and bridge (safe to run twice, or after a failed start)
#   cluster.sh node-down DIR vnK -> the node loses power: its link goes down first (its peers get
#                                  no FIN or RST), then every process in it is killed (-9)
#   cluster.sh node-up DIR vnK   -> the link comes back and its slurmd starts again
#   cluster.sh on DIR vnK CMD... -> CMD runs inside node vnK's network namespace
#   cluster.sh pids DIR vnK      -> the PIDs of the processes inside node vnK
# Only this machine's own namespaces are touched: the bridge has no uplink and no route out.
set -euo pipefail
ACTION="${1:-}" D="$(readlink -f "${2:-.}")"
STATE="$D/cluster.env"   # TAG, NODES, NET: what stop needs to find everything again

kill_pidfile() {
  local f="$1" pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f"); kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}
ns() { echo "vae${TAG}$1"; }           # node vnK's network namespace
veth() { echo "vae${TAG}h${1#vn}"; }   # the host end of its veth pair
bridge() { echo "vae${TAG}br"; }

# kill_node vnK: kill -9 every process inside the node, again while any is left (a step may
# fork while we kill).
kill_node() {
  local pids
  for _ in 1 2 3; do
    pids=$(ip netns pids "$(ns "$1")" 2>/dev/null || true)
    [ -n "$pids" ] || break
    kill -9 $pids 2>/dev/null || true
    sleep 0.2
  done
}

stop() {
  local n
  TAG="" NODES=0
  # shellcheck disable=SC1090
  [ -f "$STATE" ] && source "$STATE"
  for n in $(seq "$NODES"); do
    ip netns list 2>/dev/null | grep -qw "$(ns vn"$n")" || continue
    kill_node "vn$n"
    ip netns del "$(ns vn"$n")" 2>/dev/null || true
  done
  [ -n "$TAG" ] && ip link del "$(bridge)" 2>/dev/null || true
  kill_pidfile "$D/slurmd.pid"
  kill_pidfile "$D/slurmctld.pid"
  kill_pidfile "$D/munged.pid"
}

fail() {
  echo "slurm test cluster did not come up: $*" >&2
  for log in "$D"/munged.log "$D"/slurmctld.log "$D"/slurmd*.log; do
    [ -f "$log" ] && { echo "--- $log" >&2; tail -n 30 "$log" >&2; }
  done
  stop
  exit 1
}

# start_slurmd vnK: the node boots. slurmd runs inside the node's network namespace, with a
# hostname (UTS namespace) and a mount namespace of its own: the cluster's /etc/hosts, and a
# /tmp and /dev/shm in its own memory, as a diskless node has; its spool (job scripts, Slurm's
# PMIx sockets) is in that /tmp. All of it is gone when the node loses power, and a node that
# comes back starts clean; the shared file system (DIR, the checkout) is the same everywhere.
start_slurmd() {
  nsenter --net="/run/netns/$(ns "$1")" unshare --uts --mount sh -c \
    "hostname $1 && mount --bind '$D/hosts' /etc/hosts && mount -t tmpfs -o size=1g,mode=1777 tmpfs /tmp &&
     mount -t tmpfs -o size=1g,mode=1777 tmpfs /dev/shm && mkdir -m 755 /tmp/slurmd && exec slurmd -f '$SLURM_CONF'"
}

start() {
  local nodes="${1:-0}" host port cpus mem n addr node_lines
  case "$nodes" in 0|[2-9]) ;; *) echo "cluster.sh: N must be 2..9" >&2; exit 2 ;; esac
  mkdir -p "$D/munge" "$D/state"
  chmod 755 "$D" "$D/munge"
  mungekey --create --keyfile "$D/munge.key" --force >/dev/null
  chmod 600 "$D/munge.key"
  munged --key-file "$D/munge.key" --socket "$D/munge/munge.socket.2" --pid-file "$D/munged.pid" \
    --log-file "$D/munged.log" --seed-file "$D/munged.seed" --force || fail "munged"
  host=$(hostname -s)
  port=$(( 20000 + RANDOM % 20000 ))
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
  local ctld="$host" per_node="" params=""
  if [ "$nodes" = 0 ]; then
    cpus=$(nproc)
    mkdir -p "$D/spool"
    node_lines="NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN"
    per_node="SlurmdSpoolDir=$D/spool
SlurmdPidFile=$D/slurmd.pid
SlurmdLogFile=$D/slurmd.log"
    echo "NODES=0" > "$STATE"
  else
    case "$D" in /tmp|/tmp/*|/dev/shm/*) fail "DIR must not be under /tmp or /dev/shm: each node has its own" ;; esac
    # A free private /24 and a tag that names this cluster's interfaces and namespaces.
    TAG=$(printf '%04x' $(( RANDOM % 65536 )))
    local net
    for _ in $(seq 20); do
      net="10.$(( 100 + RANDOM % 100 )).$(( RANDOM % 250 ))"
      ip -4 addr show | grep -q "inet $net\." || break
    done
    printf 'TAG=%s\nNODES=%s\nNET=%s\n' "$TAG" "$nodes" "$net" > "$STATE"
    ip link add "$(bridge)" type bridge || fail "cannot create a bridge (needs root and CAP_NET_ADMIN)"
    ip addr add "$net.1/24" dev "$(bridge)"
    ip link set "$(bridge)" up
    printf '127.0.0.1 localhost\n%s.1 %s\n' "$net" "$host" > "$D/hosts"
    for n in $(seq "$nodes"); do echo "$net.$((10 + n)) vn$n" >> "$D/hosts"; done
    # Every node is given 2 CPUs and 2 GiB, whatever this machine has (config_overrides): the
    # nodes share its cores. And 2 "GPUs" (character devices with /dev/null's numbers: gres/gpu
    # wants device files), so that the GPU batch scripts' --gpus-per-node is scheduled as on a
    # GPU cluster; their ranks run --device cpu.
    cpus=2 mem=2048 node_lines=""
    for n in $(seq "$nodes"); do
      addr="$net.$((10 + n))"
      ip netns add "$(ns vn"$n")" || fail "cannot create a network namespace"
      ip link add "$(veth vn"$n")" type veth peer name eth0 netns "$(ns vn"$n")"
      ip link set "$(veth vn"$n")" master "$(bridge)" up
      ip -n "$(ns vn"$n")" addr add "$addr/24" dev eth0
      ip -n "$(ns vn"$n")" link set eth0 up
      ip -n "$(ns vn"$n")" link set lo up
      node_lines+="NodeName=vn$n NodeAddr=$addr NodeHostname=vn$n CPUs=$cpus RealMemory=$mem Gres=gpu:2 State=UNKNOWN"$'\n'
    done
    mknod "$D/gpu0" c 1 3 && mknod "$D/gpu1" c 1 3 || fail "cannot make device files in $D"
    echo "Name=gpu File=$D/gpu[0-1]" > "$D/gres.conf"
    ctld="$host($net.1)"
    per_node="SlurmdSpoolDir=/tmp/slurmd
SlurmdPidFile=$D/slurmd-%n.pid
SlurmdLogFile=$D/slurmd-%n.log
SlurmdParameters=config_overrides
GresTypes=gpu
SlurmdTimeout=10
SlurmctldTimeout=10
MessageTimeout=5
KillWait=5
UnkillableStepTimeout=30"
    node_lines="${node_lines%$'\n'}"
  fi
  local names
  names=$([ "$nodes" = 0 ] && echo "$host" || echo "vn[1-$nodes]")
  cat > "$D/slurm.conf" <<CONF
ClusterName=vaetest
SlurmctldHost=$ctld
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$port
SlurmdPort=$((port + 1))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$D/munge/munge.socket.2,cred_expire=10
StateSaveLocation=$D/state
SlurmctldPidFile=$D/slurmctld.pid
SlurmctldLogFile=$D/slurmctld.log
$per_node
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
$node_lines
PartitionName=debug Nodes=$names Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF
  export SLURM_CONF="$D/slurm.conf"
  slurmctld -f "$SLURM_CONF" || fail "slurmctld"
  if [ "$nodes" = 0 ]; then
    slurmd -f "$SLURM_CONF" || fail "slurmd"
  else
    for n in $(seq "$nodes"); do start_slurmd "vn$n" || fail "slurmd on vn$n"; done
  fi
  local want=$(( nodes == 0 ? 1 : nodes ))
  for _ in $(seq 300); do
    if [ "$(sinfo -h -N -o %t 2>/dev/null | grep -cx idle)" = "$want" ]; then
      echo "export SLURM_CONF=$SLURM_CONF"; return 0
    fi
    sleep 0.1
  done
  fail "$want node(s) not idle after 30 s: $(sinfo -h -N 2>&1 | head -5)"
}

node() {
  # shellcheck disable=SC1090
  source "$STATE"
  [ "${NODES:-0}" -ge 2 ] || { echo "cluster.sh: $D is not a multi-node cluster" >&2; exit 2; }
  case "$1" in vn[1-9]) [ "${1#vn}" -le "$NODES" ] || { echo "cluster.sh: no node $1" >&2; exit 2; } ;;
               *) echo "cluster.sh: no node $1" >&2; exit 2 ;; esac
}

case "$ACTION" in
  start) start "${3:-0}" ;;
  stop) stop ;;
  node-down)
    node "$3"
    ip link set "$(veth "$3")" down
    kill_node "$3" ;;
  node-up)
    node "$3"
    export SLURM_CONF="$D/slurm.conf"
    ip link set "$(veth "$3")" up
    start_slurmd "$3" ;;
  on) node "$3"; ns_name=$(ns "$3"); shift 3; exec ip netns exec "$ns_name" "$@" ;;
  pids) node "$3"; ip netns pids "$(ns "$3")" ;;
  *) echo "usage: cluster.sh start DIR [N] | stop DIR | node-down|node-up|pids DIR vnK | on DIR vnK CMD..." >&2; exit 2 ;;
esac
