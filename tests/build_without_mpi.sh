#!/usr/bin/env bash
# The laptop build: configures and builds vae_ddp with VAE_WITH_MPI=OFF (no MPI, no NCCL)
# in its own build tree, then checks that it trains in one process and refuses to pretend
# it can run under a launcher, against the same libtorch as the build that runs the test.
# Usage: build_without_mpi.sh SOURCE_DIR BUILD_DIR DATA_DIR [CMAKE_PREFIX_PATH]
set -euo pipefail
SRC="$1" BUILD="$2" DATA="$3" PREFIX="${4:-}"
cmake -S "$SRC" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DVAE_WITH_MPI=OFF -DVAE_BUILD_TESTS=OFF \
  ${PREFIX:+-DCMAKE_PREFIX_PATH="$PREFIX"} >/dev/null
cmake --build "$BUILD" --target vae_ddp -- --quiet
# The binary's own dependencies (a CUDA libtorch itself depends on NCCL, so not ldd's list).
if readelf -d "$BUILD/vae_ddp" | grep NEEDED | grep -Eq 'libmpi|libnccl'; then
  echo "FAIL: the VAE_WITH_MPI=OFF binary links MPI or NCCL" >&2; exit 1
fi
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
"$BUILD/vae_ddp" --data-dir "$DATA" --out-dir "$OUT/run" --train-limit 500 --epochs 1 --log-every 0 >/dev/null
test -f "$OUT/run/checkpoints/last.pt" || { echo "FAIL: no checkpoint written" >&2; exit 1; }
set +e
"$BUILD/vae_ddp" --world 2 2>"$OUT/err"; rc=$?
set -e
[ "$rc" -eq 2 ] && grep -q "mpirun -np 2" "$OUT/err" || { echo "FAIL: --world 2 gave $rc: $(cat "$OUT/err")" >&2; exit 1; }
echo "VAE_WITH_MPI=OFF build trains in one process and rejects --world 2"
