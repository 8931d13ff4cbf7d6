// Two looks at the GPU training step that change nothing in it:
//  - SyncDebugScope: CUDA's sync debug mode (c10::cuda::warning_state, PyTorch's
//    torch.cuda.set_sync_debug_mode) around each step, from VAE_DDP_SYNC_DEBUG=warn|error:
//    with `error`, a step that makes the host wait for the GPU throws, naming the call;
//  - GpuOpCounter: the GPU operations (kernels, copies, memsets) the CUDA profiler (Kineto)
//    sees over a window of steps, printed by --profile and VAE_DDP_SYNC_DEBUG runs.
// (--profile synchronizes at each phase boundary to time the phases: not with the sync check.)
// Both do nothing on the CPU, or in a build against a libtorch without CUDA.
#pragma once

#include <cstdint>
#include <string>

#include <torch/torch.h>

namespace vae {

// The mode VAE_DDP_SYNC_DEBUG names: 0 (unset), 1 (warn) or 2 (error). Throws UsageError
// for another value.
int sync_debug_mode_from_env();

class SyncDebugScope {
 public:
  // `mode` (sync_debug_mode_from_env) for this scope's lifetime, on a CUDA `device`.
  SyncDebugScope(int mode, const torch::Device& device);
  ~SyncDebugScope();
  SyncDebugScope(const SyncDebugScope&) = delete;
  SyncDebugScope& operator=(const SyncDebugScope&) = delete;

 private:
  bool active_ = false;
};

struct GpuOps {
  int64_t kernels = 0, copies = 0, memsets = 0;  // over the counted steps
  int64_t steps = 0;
  std::string error;  // why nothing was counted (the profiler failed to start, say); "" when counted
  // "41.0 GPU operations per step (39.0 kernels, 2.0 copies, 0.0 memsets), over 10 steps"
  std::string describe() const;
};

class GpuOpCounter {
 public:
  // True where counting works: a CUDA device, in a build with libtorch's CUDA profiler.
  static bool available(const torch::Device& device);
  // Before the first counted step and after the last. A profiler that fails is reported in
  // GpuOps::error, never thrown: counting must not end a training run.
  void start();
  GpuOps stop(int64_t steps);

 private:
  bool started_ = false;
  std::string error_;
};

}  // namespace vae
