// Adam over parameters, gradients and moments that each live in one flat buffer, so a
// step is one fused pass (CPU: one OpenMP SIMD loop) or a handful of whole-buffer ops
// (other devices) instead of about ten ops per parameter tensor. The math is
// torch::optim::Adam's (no amsgrad), with its weight_decay option as an L2 term added to
// the gradient, or, decoupled, as torch::optim::AdamW's decay of the weights (AdamW). The torch::optim::Adam stays the
// owner of the state as the checkpoint sees it: its per-parameter exp_avg/exp_avg_sq are
// views into the flat moments, so checkpoints keep their format.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>

namespace vae {

class FlatAdam {
 public:
  // `params` are `adam`'s parameters; `flat_grads` [numel] holds their gradients in the
  // same order (GradBuffer::grads()). Moves the parameters into one flat buffer.
  // decoupled_weight_decay: AdamW (w *= 1 - lr * weight_decay before the Adam update).
  FlatAdam(torch::optim::Adam& adam, std::vector<torch::Tensor> params, torch::Tensor flat_grads,
           bool decoupled_weight_decay = false);

  // One Adam update of every parameter.
  void step();
  // Call after parameters or optimizer state were loaded from a checkpoint (loading
  // rebinds their storage): copies them back into the flat buffers and re-points them.
  void attach();
  int64_t steps() const { return step_; }

 private:
  torch::optim::Adam& adam_;
  std::vector<torch::Tensor> params_;
  torch::Tensor flat_params_, flat_grads_, exp_avg_, exp_avg_sq_;  // each [numel]
  bool decoupled_ = false;
  int64_t step_ = 0;
};

// Gradient-norm clipping as torch::nn::utils::clip_grad_norm_ does it: scales `grads`
// (all gradients, flat) by min(1, max_norm / (||grads||_2 + 1e-6)) in place, without a
// host sync. Returns the norm before clipping (a 0-d tensor on grads' device).
torch::Tensor clip_grad_norm(torch::Tensor grads, double max_norm);

}  // namespace vae
