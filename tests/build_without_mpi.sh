#!/usr/bin/env bash
# The smallest build, a laptop's: configures and builds vae_ddp with VAE_WITH_MPI=OFF (no MPI,
# no NCCL) and without the optional features (VAE_WITH_PLOTS=OFF: no cairo,
# VAE_WITH_DOWNLOAD=OFF: no libcurl) in its own build tree, against the same libtorch as the
# build that runs the test; then checks that it trains in one process, refuses to pretend it
# can run under a launcher, and refuses the missing features with one line each.
# Usage: build_without_mpi.sh SOURCE_DIR BUILD_DIR DATA_DIR [CMAKE_PREFIX_PATH]
set -euo pipefail
SRC="$1" BUILD="$2" DATA="$3" PREFIX="${4:-}"
cmake -S "$SRC" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DVAE_WITH_MPI=OFF -DVAE_BUILD_TESTS=OFF \
  -DVAE_WITH_PLOTS=OFF -DVAE_WITH_DOWNLOAD=OFF \
  ${PREFIX:+-DCMAKE_PREFIX_PATH="$PREFIX"} >/dev/null
cmake --build "$BUILD" --target vae_ddp -- --quiet
# The binary's own dependencies (a CUDA libtorch itself depends on NCCL, so not ldd's list).
if readelf -d "$BUILD/vae_ddp" | grep NEEDED | grep -Eq 'libmpi|libnccl|libcairo|libcurl'; then
  echo "FAIL: the smallest binary links MPI, NCCL, cairo or libcurl" >&2; exit 1
fi
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
"$BUILD/vae_ddp" --device cpu --data-dir "$DATA" --out-dir "$OUT/run" --train-limit 500 --epochs 1 --log-every 0 >/dev/null
test -f "$OUT/run/checkpoints/last.pt" || { echo "FAIL: no checkpoint written" >&2; exit 1; }
test ! -e "$OUT/run/loss_curves.png" || { echo "FAIL: loss curves drawn without cairo" >&2; exit 1; }
# refused ARGS PATTERN: vae_ddp ARGS exits 2 with one line that matches PATTERN.
refused() {
  local rc=0
  "$BUILD/vae_ddp" $1 >/dev/null 2>"$OUT/err" || rc=$?
  [ "$rc" -eq 2 ] && [ "$(wc -l <"$OUT/err")" -eq 1 ] && grep -q "$2" "$OUT/err" ||
    { echo "FAIL: vae_ddp $1 gave $rc: $(cat "$OUT/err")" >&2; exit 1; }
}
refused "--device cpu --world 2" "mpirun -np 2"
refused "latent-map --device cpu --checkpoint $OUT/run/checkpoints/last.pt --data-dir $DATA --out $OUT/l.png" "without cairo"
refused "--device cpu --download --data-dir $OUT/empty --out-dir $OUT/dl" "without libcurl"
echo "the smallest build trains in one process and refuses --world 2, latent-map and --download"
