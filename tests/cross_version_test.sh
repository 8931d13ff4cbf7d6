#!/usr/bin/env bash
# Checkpoints across libtorch versions (1.13 and 2.11): each build writes a checkpoint, both
# builds restore both files bit for bit (`vae_ddp inspect`: every tensor's SHA-256, the Adam
# step, scaler and progress), each continues the other's run for one epoch within TOL of the
# writer's own continuation, and `eval` of one file agrees across the builds.
#   cross_version_test.sh OTHER_BINARY THIS_BINARY DATA_DIR
# Why a tolerance at all: the training step is vae_ddp's own (the CPU fast path on Debian's
# oneDNN in both builds), but the test-set evaluation and the rest of libtorch run on each
# build's own kernels (OpenBLAS under Debian's libtorch, MKL in PyTorch's wheel), whose
# float32 sums round differently in the last bits.
set -euo pipefail
OTHER=$1 THIS=$2 DATA=$3
TOL=${TOL:-1e-5}   # relative, on losses of order 100
[ -x "$OTHER" ] || { echo "skipped: no other build at $OTHER (./launch/test builds both)"; exit 77; }
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
common=(--device cpu --data-dir "$DATA" --train-limit 2000 --log-every 0 --sample-every 0 --threads 1)
"$OTHER" "${common[@]}" --out-dir "$OUT/A" --epochs 1 >"$OUT/A.log" 2>&1
"$THIS" "${common[@]}" --out-dir "$OUT/B" --epochs 1 >"$OUT/B.log" 2>&1
echo "A: $OTHER ($(grep -o -m1 'libtorch [^ ]*' "$OUT/A.log"))"
echo "B: $THIS ($(grep -o -m1 'libtorch [^ ]*' "$OUT/B.log"))"

# 1. Bit for bit: each file restored by both builds.
for w in A B; do
  f=$OUT/$w/checkpoints/last.pt
  "$OTHER" inspect --checkpoint "$f" | sed 1,2d >"$OUT/$w.by_A.json"
  "$THIS" inspect --checkpoint "$f" | sed 1,2d >"$OUT/$w.by_B.json"
  diff "$OUT/$w.by_A.json" "$OUT/$w.by_B.json" >/dev/null ||
    { diff "$OUT/$w.by_A.json" "$OUT/$w.by_B.json" | head -20; echo "FAIL: $w's checkpoint restores differently"; exit 1; }
  echo "$w's checkpoint: both builds restore the same $(grep -c sha256 "$OUT/$w.by_A.json") tensors," \
       "adam_step $(grep -o '"adam_step": [0-9]*' "$OUT/$w.by_A.json" | cut -d' ' -f2)"
done

# 2. Training goes on in the other build: epoch 2 from each file, in both builds.
row2() { awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i } NR == 3 { print $col["train_loss"], $col["test_loss"] }' "$1/metrics.csv"; }
close() { awk -v a="$1" -v b="$2" -v tol="$TOL" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= tol * (a < 0 ? -a : a)) }'; }
for w in A B; do
  for r in A B; do
    cp -r "$OUT/$w" "$OUT/$w.cont$r"
    bin=$OTHER; [ $r = B ] && bin=$THIS
    "$bin" "${common[@]}" --out-dir "$OUT/$w.cont$r" --epochs 2 >/dev/null
  done
  read -r ta sa <<<"$(row2 "$OUT/$w.contA")"
  read -r tb sb <<<"$(row2 "$OUT/$w.contB")"
  echo "$w's checkpoint, epoch 2: train loss $ta (A) / $tb (B), test loss $sa (A) / $sb (B)"
  close "$ta" "$tb" && close "$sa" "$sb" || { echo "FAIL: continuations differ by more than $TOL relative"; exit 1; }
done

# 3. eval of one checkpoint in both builds.
ea=$("$OTHER" eval --device cpu --checkpoint "$OUT/A/checkpoints/last.pt" --data-dir "$DATA" --json | grep -o '"test_loss": *[0-9.e+-]*' | awk '{print $2}')
eb=$("$THIS" eval --device cpu --checkpoint "$OUT/A/checkpoints/last.pt" --data-dir "$DATA" --json | grep -o '"test_loss": *[0-9.e+-]*' | awk '{print $2}')
echo "eval of A's checkpoint: test loss $ea (A) / $eb (B)"
close "$ea" "$eb" || { echo "FAIL: eval differs by more than $TOL relative"; exit 1; }
echo "checkpoints cross libtorch versions both ways (tolerance $TOL relative)"
