#!/usr/bin/env bash
# Against a real (throw-away, single-node) Slurm: cluster/slurm/cpu.sbatch runs a job, and a
# preempted job (SIGUSR1 to its batch shell) checkpoints, requeues itself, restarts and ends
# with the same parameters as an uninterrupted one. Fails, with the daemons' logs, if
# Slurm cannot start. Usage: slurm_test.sh SOURCE_DIR BINARY DATA_DIR
set -euo pipefail
SRC="$1" BIN="$2" DATA="$3"
D="$(mktemp -d)"
cleanup() { "$SRC/tests/slurm/cluster.sh" stop "$D" || true; rm -rf "$D"; }
trap cleanup EXIT
started=$("$SRC/tests/slurm/cluster.sh" start "$D")   # fails the test (set -e) if Slurm does not come up
eval "$started"
mkdir -p "$D/jobs"
cd "$D/jobs"
COMMON=(--data-dir "$DATA" --train-limit 12000 --batch-size 100 --hidden-dims 128 --latent-dim 8 --log-every 0
        --sample-every 0)
submit() { sbatch --parsable --chdir="$D/jobs" --export=ALL,VAE_DDP_ROOT="$SRC",VAE_DDP="$BIN" "$@"; }
fail() { echo "FAIL: $*" >&2; for f in "$D"/jobs/*.log; do echo "--- $f" >&2; tail -n 40 "$f" >&2; done; exit 1; }
# shellcheck source=jobs.sh
source "$SRC/tests/slurm/jobs.sh"

# 1. A job through cpu.sbatch: finishes, writes its outputs.
submit --wait "$SRC/cluster/slurm/cpu.sbatch" "${COMMON[@]}" --out-dir "$D/jobs/straight" --epochs 6 >/dev/null \
  || fail "cpu.sbatch job failed"
[ "$(wc -l < "$D/jobs/straight/metrics.csv")" -eq 7 ] || fail "metrics.csv should have 6 epochs"
[ -f "$D/jobs/straight/checkpoints/last.pt" ] || fail "no checkpoint"
echo "ok: cpu.sbatch ran 2 ranks through srun --mpi=pmix"

# 2. The same job, preempted once the first epoch's checkpoint exists.
JOB=$(submit "$SRC/cluster/slurm/cpu.sbatch" "${COMMON[@]}" --out-dir "$D/jobs/preempted" --epochs 6)
for _ in $(seq 600); do [ -f "$D/jobs/preempted/checkpoints/last.pt" ] && break; sleep 0.1; done
[ -f "$D/jobs/preempted/checkpoints/last.pt" ] || fail "job $JOB never wrote a checkpoint"
scancel --signal=USR1 --batch "$JOB"
echo "sent SIGUSR1 to job $JOB"
for _ in $(seq 1200); do
  state=$(job_field "$JOB" JobState)
  [ "$state" = COMPLETED ] && [ "$(job_field "$JOB" Restarts)" -ge 1 ] && break
  case "$state" in FAILED|CANCELLED|TIMEOUT|NODE_FAIL) fail "job $JOB ended $state" ;; esac
  sleep 0.2
done
[ "$(job_field "$JOB" JobState)" = COMPLETED ] || fail "job $JOB did not complete after requeue ($(job_field "$JOB" JobState))"
LOG="$D/jobs/vae_ddp-cpu-$JOB.log"
grep -q "stopped by SIGUSR1; requeued Slurm job $JOB" "$LOG" || fail "no stop + requeue in the log"
grep -q "(restart 1)" "$LOG" || fail "the requeued job did not restart"
grep -q "resuming from" "$LOG" || fail "the restart did not resume"
echo "ok: job $JOB stopped on SIGUSR1, requeued itself, restarted and resumed ($(grep -o 'stop requested.*' "$LOG" | head -1))"

# Same parameters as the uninterrupted job: identical metrics and an identical evaluation.
[ "$(strip "$D/jobs/straight/metrics.csv")" = "$(strip "$D/jobs/preempted/metrics.csv")" ] || fail "metrics differ"
b=$(same_eval "$D/jobs/straight/checkpoints/last.pt" "$D/jobs/preempted/checkpoints/last.pt")
echo "ok: the preempted job ends exactly like the uninterrupted one: $b"
