// Adam over parameters, gradients and moments that each live in one flat buffer
// (the first two owned by FlatParameters, parallel/data_parallel.h), so a
// step is one fused pass (CPU: one OpenMP SIMD loop) or a handful of whole-buffer ops
// (other devices) instead of about ten ops per parameter tensor. The math is
// torch::optim::Adam's (no amsgrad), with weight decay as an L2 term added to the gradient
// or, decoupled, as torch::optim::AdamW's decay of the weights. FlatAdam owns its state
// (the two moments and the step count, kept on the device); checkpoints store that state under their own keys,
// so the file format does not depend on libtorch's optimizer serialization, which changed
// between libtorch 1.13 and 2.x.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>

namespace vae {

struct AdamOptions {
  double lr = 1e-3;         // learning rate
  double beta1 = 0.9;       // first-moment decay
  double beta2 = 0.999;     // second-moment decay
  double eps = 1e-8;        // added to sqrt of the bias-corrected second moment
  double weight_decay = 0;  // L2 (Adam) or decoupled (AdamW) decay
  bool decoupled = false;   // AdamW: w *= 1 - lr * weight_decay before the update
};

class FlatAdam {
 public:
  // `params` and `grads`, both [numel] (FlatParameters::params() and grads()), are the
  // parameters' storage, updated in place; FlatAdam owns only the moments.
  FlatAdam(torch::Tensor params, torch::Tensor grads, AdamOptions options);

  // One Adam update of every parameter. `skip` (fp16: LossScaler::unscale_and_update's
  // found, a 0-dim or [1] tensor on the device) skips it where it is 1, decided on the
  // device: parameters, moments and step count stay as they were. On the CPU without `skip`:
  // one fused loop; elsewhere (CUDA, or `skip` given) a fixed sequence of whole-buffer ATen
  // ops with the step count on the device, which a CPU test checks against the loop.
  void step(const torch::Tensor& skip = {});
  // The same update as one call of ATen's fused Adam/AdamW kernel (at::_fused_adam_, CUDA,
  // and CPU since libtorch 2.4), which a CUDA graph can capture: the step count stays on the
  // device. The kernel divides the gradients by `grad_scale` ([1] on the device, or
  // undefined: 1) before using them, and skips the update where `found_inf` ([1], or
  // undefined) is 1; the step count then stays as it was too. Throws where the libtorch has
  // no fused kernel (fused_available()).
  void step_fused(const torch::Tensor& grad_scale, const torch::Tensor& found_inf);
  static bool fused_available();
  // The updates applied so far (a host read of the device count: checkpoints, inspect).
  int64_t steps() const;

  // The state as checkpoints store it: both moments flat [numel], in parameter order.
  const torch::Tensor& exp_avg() const { return exp_avg_; }
  const torch::Tensor& exp_avg_sq() const { return exp_avg_sq_; }
  // Replaces the state with a checkpoint's (copied into the flat buffers, which stay
  // where they are). Throws c10::Error when a moment's size differs from the parameters'.
  void load_state(const torch::Tensor& exp_avg, const torch::Tensor& exp_avg_sq, int64_t steps);

 private:
  void step_cpu();
  void step_aten(const torch::Tensor& skip);

  AdamOptions options_;
  torch::Tensor flat_params_, flat_grads_, exp_avg_, exp_avg_sq_;  // each [numel]
  // 0-dim float32 on the parameters' device, as the fused kernel reads it (exact to 2^24
  // steps); the bias corrections are computed from it in float64.
  torch::Tensor step_;
};

// Gradient-norm clipping as torch::nn::utils::clip_grad_norm_ does it: scales `grads`
// (all gradients, flat) by min(1, max_norm / (||grads||_2 + 1e-6)) in place, without a
// host sync. Returns the norm before clipping (a 0-d tensor on grads' device).
torch::Tensor clip_grad_norm(torch::Tensor grads, double max_norm);

}  // namespace vae
