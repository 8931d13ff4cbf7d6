#!/usr/bin/env bash
# Starts `MPIRUN -np NP BINARY ARGS...` in the background, waits until WAIT_FOR appears
# (a file path), kills rank RANK with SIGKILL, and waits up to 60 s for the job to end.
# Prints "exit=<code> seconds=<s> leftover=<n>" (leftover: processes whose command line
# contains MARKER, e.g. the run's out-dir, still alive afterwards).
# Usage: kill_rank.sh MPIRUN NP RANK WAIT_FOR MARKER BINARY ARGS...
set -uo pipefail
MPIRUN="$1" NP="$2" RANK="$3" WAIT_FOR="$4" MARKER="$5"
shift 5
# shellcheck disable=SC2086
$MPIRUN -q -np "$NP" "$@" >/dev/null 2>&1 &
JOB=$!
for _ in $(seq 600); do [ -e "$WAIT_FOR" ] && break; sleep 0.1; done
[ -e "$WAIT_FOR" ] || { echo "exit=-1 seconds=0 leftover=0 (never saw $WAIT_FOR)"; kill -9 $JOB; exit 0; }
# The rank's process: a child of mpirun whose environment names the rank.
VICTIM=""
for pid in $(pgrep -f -- "$MARKER"); do
  if tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$RANK"; then VICTIM=$pid; break; fi
done
[ -n "$VICTIM" ] || { echo "exit=-1 seconds=0 leftover=0 (rank $RANK not found)"; kill -9 $JOB; exit 0; }
START=$(date +%s.%N)
kill -9 "$VICTIM"
for _ in $(seq 600); do kill -0 $JOB 2>/dev/null || break; sleep 0.1; done
if kill -0 $JOB 2>/dev/null; then kill -9 $JOB; fi
wait $JOB; CODE=$?
END=$(date +%s.%N)
sleep 0.5
LEFT=0
for pid in $(pgrep -x vae_ddp) $(pgrep -x mpirun) $(pgrep -x orterun); do
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$MARKER" && LEFT=$((LEFT + 1))
done
echo "exit=$CODE seconds=$(awk -v a="$START" -v b="$END" 'BEGIN { printf "%.1f", b - a }') leftover=$LEFT"
