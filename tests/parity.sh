#!/usr/bin/env bash
# Parity with PyTorch: vae_ddp writes 20 steps (initial weights, batches, noise, beta,
# loss); bench/reference.py replays them in Python PyTorch and fails when a step's loss
# differs by more than 1e-4 relative. Skipped (exit 77) without Debian's python3-torch.
# Usage: parity.sh VAE_DDP_BINARY SOURCE_DIR DATA_DIR [extra vae_ddp flags...]
set -euo pipefail
BIN="$1" SRC="$2" DATA="$3"
shift 3
PY=/usr/bin/python3   # Debian's interpreter: python3-torch is installed for it
if ! "$PY" -c 'import torch, numpy' 2>/dev/null; then
  echo "SKIP: $PY cannot import torch (install python3-torch) - parity with PyTorch not checked"
  exit 77
fi
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT
"$BIN" trace --out "$OUT" --steps 20 --data-dir "$DATA" --threads 1 "$@"
"$PY" "$SRC/bench/reference.py" parity "$OUT" --tolerance 1e-4 | tail -1
