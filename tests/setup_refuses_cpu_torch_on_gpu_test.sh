#!/usr/bin/env bash
# launch/setup refuses a CPU-only libtorch where nvidia-smi lists a GPU: exit 2 and one line
# that says how to point at a CUDA one, before it installs or builds anything. A stand-in
# nvidia-smi (tests/fake_gpu) lists the GPU; TORCH_DIR names a libtorch without libtorch_cuda.
#   setup_refuses_cpu_torch_on_gpu_test.sh SOURCE_DIR
set -uo pipefail
SRC=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/libtorch/share/cmake" "$work/libtorch/lib"
out=$(PATH="$SRC/tests/fake_gpu:$PATH" TORCH_DIR="$work/libtorch/share/cmake" VAE_BUILD_DIR="$work/build" \
  timeout 120 "$SRC/launch/setup" 2>&1)
rc=$?
echo "$out"
[ $rc -eq 2 ] || { echo "FAIL: launch/setup exited $rc, not 2"; exit 1; }
echo "$out" | grep -q "error: nvidia-smi lists a GPU, but that libtorch is CPU-only; point at a CUDA one" ||
  { echo "FAIL: no one-line reason"; exit 1; }
[ "$(echo "$out" | grep -c error)" -eq 1 ] || { echo "FAIL: more than one error line"; exit 1; }
[ ! -e "$work/build" ] || { echo "FAIL: it configured a build before refusing"; exit 1; }
echo "ok: a CPU-only libtorch on a GPU node is refused with one line"
