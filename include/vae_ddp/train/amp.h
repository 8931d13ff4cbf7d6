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
// backward; after the all-reduce the gradients are divided by it. A step whose
// gradients hold inf/NaN on any rank is skipped on every rank and the scale halves;
// after `growth_interval` good steps in a row it doubles. State stays on the device,
// so scaling and unscaling never wait for the host.
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
  // 1.0 when `grads` hold an inf or NaN, else 0.0: a [1] float32 tensor on the device,
  // to be summed across ranks with the gradients.
  torch::Tensor non_finite(const torch::Tensor& grads) const;
  // After the all-reduce: `found_inf` is the summed flag of every rank. Unscales `grads`
  // in place, updates the scale and returns true when the step must be skipped.
  // Reads one scalar on the host (as GradScaler does). Disabled: returns false.
  bool unscale_and_update(torch::Tensor& grads, const torch::Tensor& found_inf);

  ScalerState state() const;

 private:
  bool enabled_;
  torch::Tensor scale_;           // [1] float32
  torch::Tensor growth_tracker_;  // [1] int32
  double growth_factor_, backoff_factor_;
  int64_t growth_interval_;
};

}  // namespace vae
