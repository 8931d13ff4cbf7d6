#!/usr/bin/env bash
# The GPU probe must fail, not skip, where nvidia-smi lists a GPU that libtorch cannot use.
# Here a stand-in nvidia-smi (tests/fake_gpu) lists one on a machine without a usable GPU.
#   unusable_gpu_test.sh CUDA_PROBE_TEST_BINARY
set -uo pipefail
PROBE=$1
if nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
  echo "skipped: a real GPU is listed here (the gpu-labelled cuda_probe tests check it)"; exit 77
fi
out=$(PATH="$(dirname "$0")/fake_gpu:$PATH" "$PROBE" --gtest_filter='CudaProbeTest.GpusTheDriverListsAreUsable' 2>&1)
rc=$?
echo "$out" | grep -E 'nvidia-smi lists|FAILED|SKIPPED' | head -5
[ $rc -ne 0 ] || { echo "FAIL: the probe passed with a listed GPU that libtorch cannot use"; exit 1; }
echo "$out" | grep -q "nvidia-smi lists 1 GPU(s), but libtorch cannot use any" ||
  { echo "FAIL: the probe failed without naming the reason"; exit 1; }
echo "ok: a listed but unusable GPU fails the probe, with the reason"
