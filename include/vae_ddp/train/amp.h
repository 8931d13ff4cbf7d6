// Mixed precision: autocast around forward and loss, and dynamic loss scaling for fp16.
// Master weights, gradients and optimizer state stay fp32.
#pragma once

#include <cstdint>
#include <string>

#include <torch/torch.h>

#include "vae_ddp/base/config.h"  // Precision

namespace vae {

// While alive, ops on `device`'s type run under autocast in the precision's dtype
// (nothing happens for fp32). Works with libtorch 1.13 and 2.x. The outermost guard
// clears autocast's cast cache on exit, as Python's context manager does, so casts of
// weights are not reused after the optimizer has changed them.
class AutocastGuard {
 public:
  AutocastGuard(torch::Device device, Precision precision);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool active_ = false;
  torch::DeviceType type_;
  bool prev_enabled_ = false;
  torch::ScalarType prev_dtype_;
};

// Dynamic loss scaling (PyTorch's GradScaler): the loss is multiplied by `scale` before
// backward; after the all-reduce the gradients are divided by it. A step whose summed
// gradients hold inf/NaN (some rank's did) is skipped on every rank and the scale halves;
// after `growth_interval` good steps in a row it doubles. State and the skip decision stay
// on the device: scaling, unscaling and skipping never wait for the host.
struct ScalerState {
  double scale = 65536.0;      // 2^16
  int64_t growth_tracker = 0;  // good steps since the last change
};

class LossScaler {
 public:
  LossScaler(bool enabled, torch::Device device, ScalerState state = {}, double growth_factor = 2.0,
             double backoff_factor = 0.5, int64_t growth_interval = 2000);

  bool enabled() const { return enabled_; }
  // loss * scale (loss itself when disabled).
  torch::Tensor scale(const torch::Tensor& loss) const;
  // After the all-reduce, `grads` the sum over ranks: unscales them in place, updates the
  // scale and returns `found`, a 0-dim float32 tensor on the device, 1 when the step must be
  // skipped (for FlatAdam::step), else 0. Reads nothing on the host. Disabled: undefined.
  torch::Tensor unscale_and_update(torch::Tensor& grads);

  // The same check, unscale and update through ATen's in-place AMP kernels
  // (_amp_foreach_non_finite_check_and_unscale_, _amp_update_scale_; on the CPU from
  // libtorch 2.4), allocating nothing, so a CUDA graph can capture it: `found` ([1] float32)
  // is set to 1 or 0, `inv_scale` ([1] float32) is scratch. Disabled: nothing happens.
  void unscale_and_update_in_place(const torch::Tensor& grads, torch::Tensor& found, torch::Tensor& inv_scale);
  // The current scale, [1] float32 on the device: read by the device step each step.
  const torch::Tensor& scale_tensor() const { return scale_; }

  // Reads the scale on the host (checkpoints, epoch ends).
  ScalerState state() const;
  // Writes a saved state into the scaler's tensors, which stay where they are.
  void load_state(const ScalerState& state);

 private:
  bool enabled_;
  torch::Tensor scale_;           // [1] float32
  torch::Tensor growth_tracker_;  // [1] int32
  double growth_factor_, backoff_factor_;
  int64_t growth_interval_;
};

}  // namespace vae
