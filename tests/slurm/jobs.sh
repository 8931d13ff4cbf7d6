# shellcheck shell=bash
# Sourced by slurm_test.sh and multinode_test.sh once they have set BIN (vae_ddp) and DATA
# (MNIST) and defined fail MESSAGE (each prints its own logs before it exits 1).

# job_field JOB FIELD: FIELD of JOB as scontrol shows it ("" once Slurm has forgotten the job).
job_field() { scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }
# strip METRICS_CSV: metrics.csv without its timing columns.
strip() { cut -d, -f1-8 "$1"; }
# eval_json CHECKPOINT: vae_ddp's evaluation of CHECKPOINT on the CPU, one line of JSON.
eval_json() { "$BIN" eval --device cpu --json --data-dir "$DATA" --checkpoint "$1"; }
# same_eval A B: fails unless checkpoints A and B evaluate identically (their paths left out);
# prints the evaluation.
same_eval() {
  local a b
  a=$(eval_json "$1" | sed 's/"checkpoint": "[^"]*", //')
  b=$(eval_json "$2" | sed 's/"checkpoint": "[^"]*", //')
  [ "$a" = "$b" ] || fail "final parameters differ: $a vs $b"
  echo "$b"
}
