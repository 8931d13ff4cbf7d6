#!/usr/bin/env bash
# TensorBoard event files read by the tensorboard package itself (tests/tensorboard_package_check.py):
# a run of 2 epochs resumed to 3 (two event files) must read back and match metrics.csv, and a
# copy with one flipped byte in an event file must not. Exit 77 (skipped) when PYTHON has no
# tensorboard package.   Usage: tensorboard_package_test.sh BINARY SOURCE_DIR DATA_DIR PYTHON
set -euo pipefail
BIN=$1 SRC=$2 DATA=$3 PY=$4
CHECK=$SRC/tests/tensorboard_package_check.py
"$PY" -c "import tensorboard" 2>/dev/null || {
  echo "skipped: $PY has no tensorboard package (pip install tensorboard; launch/setup with VAE_PYTORCH=1 installs it)"
  exit 77
}
echo "tensorboard $("$PY" -c 'import tensorboard; print(tensorboard.__version__)') ($PY)"
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
common=(--device cpu --data-dir "$DATA" --out-dir "$OUT/run" --train-limit 1000 --log-every 4 --threads 1)
"$BIN" "${common[@]}" --epochs 2 --resume none >/dev/null
"$BIN" "${common[@]}" --epochs 3 >/dev/null
"$PY" "$CHECK" "$OUT/run"
# The check must be able to fail: one flipped byte in the middle of the first event file.
mkdir -p "$OUT/bad"
cp -r "$OUT/run/tb" "$OUT/run/metrics.csv" "$OUT/bad/"
f=$(ls "$OUT/bad/tb/" | head -1)
size=$(stat -c %s "$OUT/bad/tb/$f")
printf '\xff' | dd of="$OUT/bad/tb/$f" bs=1 seek=$((size / 2)) conv=notrunc status=none
if "$PY" "$CHECK" "$OUT/bad" >"$OUT/bad.log" 2>&1; then
  cat "$OUT/bad.log"; echo "FAIL: a damaged event file passed the check"; exit 1
fi
grep -q "missing\|disagrees" "$OUT/bad.log" || { cat "$OUT/bad.log"; echo "FAIL: not the expected failure"; exit 1; }
echo "damaged copy rejected: $(grep -m1 'missing' "$OUT/bad.log" | sed 's/^ *//')"
