#!/usr/bin/env bash
# TensorBoard event files, decoded by an independent reader (tests/tensorboard_check.py):
# a run of 2 epochs resumed to 3 (two event files) must decode and match metrics.csv, and
# a copy with one flipped byte must be rejected. Exit 77 (skipped) without the reader's
# modules (python3-protobuf, python3-crc32c; ./launch/test installs them).
set -euo pipefail
BIN=$1 SRC=$2 DATA=$3
CHECK=$SRC/tests/tensorboard_check.py
/usr/bin/python3 -c "import crc32c, google.protobuf" 2>/dev/null || {
  echo "skipped: python3-protobuf and python3-crc32c are needed (apt-get install python3-protobuf python3-crc32c)"
  exit 77
}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
common=(--device cpu --data-dir "$DATA" --out-dir "$OUT/run" --train-limit 1000 --log-every 4 --threads 1)
"$BIN" "${common[@]}" --epochs 2 --resume none >/dev/null
"$BIN" "${common[@]}" --epochs 3 >/dev/null
/usr/bin/python3 "$CHECK" "$OUT/run"
# The reader must be able to fail: one flipped byte in the middle of an event file.
mkdir -p "$OUT/bad/tb"
cp "$OUT/run/metrics.csv" "$OUT/bad/"
f=$(ls "$OUT/run/tb/" | head -1)
cp "$OUT/run/tb/$f" "$OUT/bad/tb/$f"
size=$(stat -c %s "$OUT/bad/tb/$f")
printf '\xff' | dd of="$OUT/bad/tb/$f" bs=1 seek=$((size / 2)) conv=notrunc status=none
if /usr/bin/python3 "$CHECK" "$OUT/bad" >"$OUT/bad.log" 2>&1; then
  echo "FAIL: a corrupted event file passed the check"; exit 1
fi
grep -q "CRC mismatch\|truncated" "$OUT/bad.log" || { cat "$OUT/bad.log"; echo "FAIL: not a CRC error"; exit 1; }
echo "corrupted copy rejected: $(grep -o '[a-z]* CRC mismatch' "$OUT/bad.log" | head -1)"
