#!/usr/bin/env bash
# Against a real Slurm cluster of two nodes made on this machine (tests/slurm/cluster.sh start
# DIR 2: each node a network namespace with its own address on a bridge, its own hostname, its
# own /tmp, /dev/shm and slurmd; the file system shared), cluster/slurm/multinode.sbatch with
# --device cpu, 2 ranks per node:
#   1. 4 ranks over 2 nodes train as one process does (eval within 1e-5); Open MPI sends
#      between the nodes through its TCP BTL (its own bml lines), shared memory only within a
#      node, and at least one gradient per step crosses the link (the node's byte counters);
#   2. node loss: vn2 loses power mid-epoch (link down, then every process on it killed): the
#      job ends within 60 s with vn2 named in the log and no process of it left on vn1; Slurm
#      requeues it; vn2 comes back; the restarted job resumes from the last checkpoint and ends
#      with the parameters of run 1 (eval identical, metrics identical);
#   3. preemption: SIGUSR1 to the batch shell mid-epoch: every rank on both nodes stops at the
#      same step, rank 0 writes one checkpoint and requeues the job, which comes back, resumes
#      inside the epoch and ends exactly like run 1.
# Needs root (namespaces, Slurm's daemons): skipped (77) without it; fails, with the daemons'
# logs, if the cluster cannot start. Usage: multinode_test.sh SOURCE_DIR BINARY DATA_DIR
set -euo pipefail
SRC="$1" BIN="$2" DATA="$3"
[ "$(id -u)" = 0 ] || { echo "skipped: needs root (network namespaces, Slurm's daemons)"; exit 77; }
# Not under /tmp: each node has its own /tmp, and DIR is the file system they share.
D="$(mktemp -d /var/tmp/vae_ddp-multinode.XXXXXX)"
CLUSTER="$SRC/tests/slurm/cluster.sh"
cleanup() { "$CLUSTER" stop "$D" || true; rm -rf "$D"; }
trap cleanup EXIT
started=$("$CLUSTER" start "$D" 2)   # fails the test (set -e) if the cluster does not come up
eval "$started"
mkdir -p "$D/jobs"
cd "$D/jobs"
t_start=$(date +%s)
say() { echo "[$(( $(date +%s) - t_start )) s] $*"; }
COMMON=(--device cpu --data-dir "$DATA" --train-limit 12000 --batch-size 100 --hidden-dims 128 --latent-dim 8
        --epochs 4 --log-every 0 --sample-every 0)
STEPS=$(( 4 * 12000 / 100 ))
# The GPU script as a user submits it, on 2 nodes × 2 ranks; the test cluster's nodes have 2
# "GPUs" each, and --device cpu makes the ranks train on the CPUs and all-reduce through MPI.
# EXTRA_ENV=NAME=VALUE adds to the job's environment.
submit() {
  sbatch --parsable --chdir="$D/jobs" --nodes=2 --ntasks-per-node=2 --gpus-per-node=2 --cpus-per-task=1 \
    --export=ALL,VAE_DDP_ROOT="$SRC",VAE_DDP="$BIN"${EXTRA_ENV:+,$EXTRA_ENV} "$@"
}
fail() {
  echo "FAIL: $*" >&2
  for f in "$D"/jobs/*.log; do echo "--- $f" >&2; grep -v '^\[vn[0-9]:' "$f" | tail -n 40 >&2; done
  echo "--- sinfo" >&2; sinfo -N >&2 || true
  tail -n 20 "$D/slurmctld.log" >&2
  exit 1
}
# shellcheck source=jobs.sh
source "$SRC/tests/slurm/jobs.sh"
# wait_restarted_and_done JOB SECONDS: until the job has COMPLETED after at least one restart.
wait_restarted_and_done() {
  local state
  for _ in $(seq $(( $2 * 5 ))); do
    state=$(job_field "$1" JobState)
    [ "$state" = COMPLETED ] && [ "$(job_field "$1" Restarts)" -ge 1 ] && return 0
    case "$state" in FAILED|CANCELLED|TIMEOUT) fail "job $1 ended $state" ;; esac
    sleep 0.2
  done
  fail "job $1 did not complete after its requeue within $2 s ($(job_field "$1" JobState))"
}
wait_for_epoch() {  # wait_for_epoch DIR N: until DIR's checkpoint of epoch N is written
  for _ in $(seq 600); do [ -f "$1/checkpoints/epoch_$(printf %03d "$2").pt" ] && return 0; sleep 0.1; done
  fail "no checkpoint of epoch $2 in $1 after 60 s"
}
# Processes of a job left on a node: anything there but its slurmd.
leftovers() {
  local p
  for p in $("$CLUSTER" pids "$D" "$1"); do
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = slurmd ] || cat "/proc/$p/comm" 2>/dev/null || true
  done
}
link_bytes() {  # bytes received + sent by node $1's interface
  "$CLUSTER" on "$D" "$1" cat /proc/net/dev | awk '$1 == "eth0:" { print $2 + $10 }'
}

# --- 1. 4 ranks on 2 nodes, TCP between them, the same run as one process ---
bytes0=$(link_bytes vn2)
JOB=$(EXTRA_ENV=OMPI_MCA_btl_base_verbose=1 submit --wait "$SRC/cluster/slurm/multinode.sbatch" "${COMMON[@]}" --out-dir straight) || fail "the multinode.sbatch job failed"
LOG="vae_ddp-multi-$JOB.log"
bytes=$(( $(link_bytes vn2) - bytes0 ))
grep -q "start (restart 0) on vn\[1-2\]: 4 rank(s)" "$LOG" || fail "the job did not run 4 ranks on vn[1-2]"
grep -q "· 4 rank(s) on 2 nodes (vn1, vn2) ·" "$LOG" || fail "vae_ddp does not see its ranks on 2 nodes"
[ "$(wc -l < straight/metrics.csv)" -eq 5 ] || fail "metrics.csv should have 4 epochs"
for pair in "vn1 vn2" "vn2 vn1"; do
  set -- $pair
  grep -q "^\[$1:[0-9]*\] mca: bml: Using tcp btl for send to .* on node $2\$" "$LOG" \
    || fail "no TCP sends from $1 to $2 in the log"
  ! grep -q "^\[$1:[0-9]*\] mca: bml: Using \(vader\|sm\) btl for send to .* on node $2\$" "$LOG" \
    || fail "shared memory between $1 and $2"
done
grep -q "^\[vn1:[0-9]*\] mca: bml: Using vader btl for send to .* on node vn1\$" "$LOG" \
  || fail "no shared memory between the ranks of vn1"
# Each all-reduce across the two nodes moves at least one gradient (4 bytes a parameter) each way.
params=$(sed -n 's/^model .*(\([0-9]*\) parameters).*/\1/p' "$LOG")
[ "$bytes" -ge $(( 2 * STEPS * params * 4 )) ] || fail "only $bytes bytes crossed vn2's link for $STEPS steps of $params parameters"
say "ok: job $JOB: $(grep -m1 -o '4 rank(s) on 2 nodes (vn1, vn2)' "$LOG"); Open MPI: $(grep -m1 -o 'mca: bml: Using tcp btl for send to .* on node vn2' "$LOG") (from vn1), vader within a node; $(( bytes / 1000000 )) MB through vn2's link in $STEPS steps (≥ $(( 2 * STEPS * params * 4 / 1000000 )) MB: a gradient each way per step)"
"$BIN" "${COMMON[@]}" --out-dir one >/dev/null 2>one.err || { cat one.err >&2; fail "the one-process run failed"; }
four=$(eval_json straight/checkpoints/last.pt)
one=$(eval_json one/checkpoints/last.pt)
loss() { sed -n 's/.*"test_loss": \([0-9.e+-]*\).*/\1/p' <<< "$1"; }
awk -v a="$(loss "$four")" -v b="$(loss "$one")" 'BEGIN { d = (a - b) / b; if (d < 0) d = -d; exit !(d < 1e-5) }' \
  || fail "4 ranks on 2 nodes: test loss $(loss "$four"), one process: $(loss "$one") (relative tolerance 1e-5)"
say "ok: test loss 4 ranks on 2 nodes $(loss "$four"), one process $(loss "$one")"

# --- 2. node loss mid-epoch, requeue, the node comes back, the run resumes ---
JOB=$(submit "$SRC/cluster/slurm/multinode.sbatch" "${COMMON[@]}" --out-dir lost)
LOG="vae_ddp-multi-$JOB.log"
wait_for_epoch lost 1
sleep 1
[ "$(job_field "$JOB" JobState)" = RUNNING ] || fail "job $JOB is not running in epoch 2"
"$CLUSTER" node-down "$D" vn2
t0=$(date +%s)
say "vn2 lost power (link down, every process killed) while job $JOB was in epoch 2"
ended=""
while [ $(( $(date +%s) - t0 )) -le 60 ]; do
  if [ "$(job_field "$JOB" JobState)" != RUNNING ] && [ -z "$(leftovers vn1)" ]; then ended=$(( $(date +%s) - t0 )); break; fi
  sleep 0.5
done
[ -n "$ended" ] || fail "60 s after vn2's loss job $JOB is $(job_field "$JOB" JobState), on vn1: $(leftovers vn1 | tr '\n' ' ')"
grep -q "Node failure on vn2" "$LOG" || fail "the log does not name the lost node"
before=$(sed -n '/(restart 0)/,/Node failure/p' "$LOG")
grep -q "epoch 1/4" <<< "$before" && ! grep -q "epoch 2/4" <<< "$before" || fail "vn2 was not lost inside epoch 2"
say "ok: job $JOB ended $ended s after the loss, nothing of it left on vn1: $(grep -m1 -o 'srun: error: Node failure on vn2' "$LOG"); $(grep -m1 -o 'requeue job JobId=[0-9]* due to failure of node vn2' "$D/slurmctld.log")"
[ "$(job_field "$JOB" Restarts)" -ge 1 ] || fail "Slurm did not requeue job $JOB"
"$CLUSTER" node-up "$D" vn2
say "vn2 is back"
wait_restarted_and_done "$JOB" 180
grep -q "(restart 1)" "$LOG" || fail "the requeued job did not restart"
resumed=$(grep -m1 -o "resuming from .*" "$LOG") || fail "the restart did not resume"
[ "$(strip straight/metrics.csv)" = "$(strip lost/metrics.csv)" ] || fail "metrics differ from the uninterrupted run"
say "ok: job $JOB restarted, $resumed, and ends like the uninterrupted run: $(same_eval straight/checkpoints/last.pt lost/checkpoints/last.pt)"

# --- 3. preemption mid-epoch: one checkpoint, every rank on both nodes stops, the job comes back ---
JOB=$(submit "$SRC/cluster/slurm/multinode.sbatch" "${COMMON[@]}" --out-dir preempted)
LOG="vae_ddp-multi-$JOB.log"
wait_for_epoch preempted 1
sleep 1
scancel --signal=USR1 --batch "$JOB"
say "sent SIGUSR1 to job $JOB's batch shell"
wait_restarted_and_done "$JOB" 180
first=$(sed -n '/(restart 0)/,/(restart 1)/p' "$LOG")
[ "$(grep -c 'stop requested: saved' <<< "$first")" -eq 1 ] || fail "the stop should write one checkpoint: $(grep 'stop requested' <<< "$first")"
grep -q "stop requested: saved .* at epoch 2, step" <<< "$first" || fail "the stop was not inside epoch 2"
grep -q "stopped by SIGUSR1; requeued Slurm job $JOB" <<< "$first" || fail "no stop + requeue in the log"
grep -q "job $JOB ranks exited with 0" <<< "$first" || fail "not every rank stopped cleanly"
! grep -q "^srun: error" <<< "$first" || fail "srun reported errors: $(grep '^srun: error' <<< "$first")"
[ -z "$(leftovers vn1)$(leftovers vn2)" ] || fail "processes left after the job: $(leftovers vn1) $(leftovers vn2)"
[ "$(strip straight/metrics.csv)" = "$(strip preempted/metrics.csv)" ] || fail "metrics differ from the uninterrupted run"
say "ok: job $JOB: $(grep -m1 -o 'stop requested: saved.*' "$LOG"), once; all 4 ranks exited 0; $(grep -m1 -o 'resuming from .*' "$LOG"); ends like the uninterrupted run: $(same_eval straight/checkpoints/last.pt preempted/checkpoints/last.pt)"
