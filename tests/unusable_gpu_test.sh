#!/usr/bin/env bash
# Every kind of `gpu` test must fail, not skip, where nvidia-smi lists a GPU that libtorch
# cannot use. Here a stand-in nvidia-smi (tests/fake_gpu) lists one on a machine without a
# usable GPU; each binary runs one of its GPU cases (gpu_test and the device-generic ones
# with VAE_DDP_TEST_DEVICE=cuda).
#   unusable_gpu_test.sh CUDA_PROBE_TEST GPU_TEST CLI_TEST DIST_TEST
set -uo pipefail
probe=$1 gpu=$2 cli=$3 dist=$4
if nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
  echo "skipped: a real GPU is listed here (the gpu-labelled tests check it)"; exit 77
fi
fake="$(dirname "$0")/fake_gpu"
failures=0
for run in "$probe --gtest_filter=CudaProbeTest.GpusTheDriverListsAreUsable" \
           "$gpu --gtest_filter=GpuTest.Fp32EpochMatchesTheCpu" \
           "$cli --gtest_filter=CliTest.ResumeGivesBitIdenticalWeights" \
           "$dist --gtest_filter=DistTest.BroadcastCopiesTheRootsBuffer"; do
  # shellcheck disable=SC2086
  out=$(PATH="$fake:$PATH" VAE_DDP_TEST_DEVICE=cuda $run 2>&1)
  rc=$?
  name="${run##*/}"
  if [ $rc -eq 0 ]; then
    echo "FAIL: $name passed (or skipped) with a listed GPU that libtorch cannot use"; failures=$((failures + 1))
  elif ! echo "$out" | grep -q "nvidia-smi lists 1 GPU(s), but libtorch cannot use any"; then
    echo "FAIL: $name failed without naming the reason:"; echo "$out" | tail -5; failures=$((failures + 1))
  else
    echo "ok: $name fails, naming the reason"
  fi
done
[ $failures -eq 0 ] || exit 1
echo "ok: a listed but unusable GPU fails every kind of gpu test, with the reason"
