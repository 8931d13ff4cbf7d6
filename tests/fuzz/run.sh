#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs each for SECONDS (default 60)
# from a seed corpus: real MNIST-style IDX files, the shipped YAML configs, and a small
# checkpoint written by vae_ddp. Fails on any crash or sanitizer report.
# Usage: run.sh SOURCE_DIR BUILD_DIR VAE_DDP_BINARY DATA_DIR [SECONDS]
set -euo pipefail
SRC="$1" BUILD="$2" BIN="$3" DATA="$4" SECONDS_EACH="${5:-60}"
if [ ! -f "$BUILD/build.ninja" ]; then
  CC=clang CXX=clang++ cmake -S "$SRC/tests/fuzz" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$BUILD" -- --quiet
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/idx" "$WORK/config" "$WORK/checkpoint"
# Seeds: the head of each MNIST file (a valid header, a short payload) and tiny whole files.
for f in "$DATA"/*-ubyte; do head -c 4096 "$f" > "$WORK/idx/$(basename "$f")"; done
printf '\x00\x00\x08\x01\x00\x00\x00\x03\x01\x02\x03' > "$WORK/idx/labels3"
printf '\x00\x00\x08\x03\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00\x02\xff\x00\x00\xff' > "$WORK/idx/image2x2"
cp "$SRC"/configs/*.yaml "$WORK/config/"
"$BIN" --device cpu --data-dir "$DATA" --out-dir "$WORK/run" --train-limit 64 --epochs 1 --hidden-dims 4 --latent-dim 2 \
  --sample-every 0 --log-every 0 >/dev/null
cp "$WORK/run/checkpoints/last.pt" "$WORK/checkpoint/tiny.pt"
export ASAN_OPTIONS="detect_leaks=0:detect_container_overflow=0:allocator_may_return_null=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
for t in idx config checkpoint; do
  echo "[fuzz] ${t}_fuzz for ${SECONDS_EACH} s"
  "$BUILD/${t}_fuzz" -max_total_time="$SECONDS_EACH" -max_len=65536 -rss_limit_mb=4096 -print_final_stats=1 \
    -artifact_prefix="$BUILD/${t}-" "$WORK/$t" 2>"$WORK/$t.log" \
    || { tail -n 60 "$WORK/$t.log"; echo "FAIL: ${t}_fuzz found a problem (input saved under $BUILD/${t}-*)"; exit 1; }
  grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$WORK/$t.log" | tr '\n' ' '; echo
done
echo "ok: every fuzz target ran clean"
