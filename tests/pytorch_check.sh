#!/usr/bin/env bash
# vae_ddp against Python PyTorch (tests/oracle/reference.py) with the same libtorch as the build:
# $VAE_PYTHON (tests/CMakeLists.txt: .venv-pytorch's python for the 2.11 build, else Debian's
# python3 with python3-torch 1.13). Skipped (exit 77) when it cannot import torch.
#   pytorch_check.sh parity BINARY SOURCE_DIR DATA_DIR [vae_ddp flags...]
#       vae_ddp writes 20 steps (weights, batches, noise, beta, loss); PyTorch replays them
#       and fails when a step's loss differs by more than 1e-4 relative.
#   pytorch_check.sh export BINARY SOURCE_DIR DATA_DIR [vae_ddp flags...]
#       a short run's checkpoint goes through `vae_ddp export`; torch.load(weights_only=True) reads it into
#       the reference model, whose decoded posterior means must match vae_ddp's (1e-5).
set -euo pipefail
MODE="$1" BIN="$2" SRC="$3" DATA="$4"
shift 4
PY="${VAE_PYTHON:-/usr/bin/python3}"
if ! "$PY" -c 'import torch, numpy' 2>/dev/null; then
  echo "SKIP: $PY cannot import torch (install python3-torch) - PyTorch $MODE not checked"
  exit 77
fi
echo "PyTorch $("$PY" -c 'import torch; print(torch.__version__)') ($PY)"
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
case "$MODE" in
  parity)
    "$BIN" trace --device cpu --out "$OUT" --steps 20 --data-dir "$DATA" --threads 1 "$@"
    "$PY" "$SRC/tests/oracle/reference.py" parity "$OUT" --tolerance 1e-4 | tail -1 ;;
  export)
    "$BIN" --device cpu --data-dir "$DATA" --out-dir "$OUT/run" --train-limit 1000 --epochs 1 --log-every 0 --sample-every 0 \
      --threads 1 "$@" >/dev/null
    "$BIN" export --checkpoint "$OUT/run/checkpoints/last.pt" --out "$OUT/weights.pt" --data-dir "$DATA"
    "$PY" "$SRC/tests/oracle/reference.py" check-export "$OUT/weights.pt" --data-dir "$DATA" ;;
  *) echo "usage: pytorch_check.sh parity|export BINARY SOURCE_DIR DATA_DIR [flags...]" >&2; exit 2 ;;
esac
