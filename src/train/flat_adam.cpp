#include "vae_ddp/train/flat_adam.h"

#include <cmath>

namespace vae {

namespace {

// The fused update on the CPU: one pass reading p, g, m, v and writing p, m, v. Built for
// AVX-512, AVX2 and baseline x86-64; the loader picks the best this CPU runs.
__attribute__((target_clones("avx512f", "avx2", "default"))) void adam_cpu(float* p, const float* g, float* m, float* v,
                                                                           int64_t n, float beta1, float beta2,
                                                                           float eps, float step_size, float sqrt_bc2) {
  const float one_minus_b1 = 1.0f - beta1, one_minus_b2 = 1.0f - beta2;
#pragma omp parallel for simd schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    const float mi = m[i] * beta1 + one_minus_b1 * g[i];
    const float vi = v[i] * beta2 + one_minus_b2 * g[i] * g[i];
    m[i] = mi;
    v[i] = vi;
    p[i] -= step_size * (mi / (std::sqrt(vi) / sqrt_bc2 + eps));
  }
}

}  // namespace

FlatAdam::FlatAdam(torch::Tensor params, torch::Tensor grads, AdamOptions options)
    : options_(options),
      flat_params_(std::move(params)),
      flat_grads_(std::move(grads)),
      exp_avg_(torch::zeros_like(flat_params_)),
      exp_avg_sq_(torch::zeros_like(flat_params_)) {
  TORCH_CHECK(flat_params_.dim() == 1 && flat_params_.sizes() == flat_grads_.sizes(),
              "FlatAdam: parameters and gradients must be flat buffers of one size");
}

void FlatAdam::load_state(const torch::Tensor& exp_avg, const torch::Tensor& exp_avg_sq, int64_t steps) {
  TORCH_CHECK(exp_avg.numel() == exp_avg_.numel() && exp_avg_sq.numel() == exp_avg_sq_.numel(), "Adam state holds ",
              exp_avg.numel(), " and ", exp_avg_sq.numel(), " values, the parameters ", exp_avg_.numel());
  TORCH_CHECK(steps >= 0, "Adam step count ", steps, " is negative");
  torch::NoGradGuard no_grad;
  exp_avg_.copy_(exp_avg.reshape({-1}));
  exp_avg_sq_.copy_(exp_avg_sq.reshape({-1}));
  step_ = steps;
}

void FlatAdam::step() {
  torch::NoGradGuard no_grad;
  const double beta1 = options_.beta1, beta2 = options_.beta2, lr = options_.lr;
  ++step_;
  const double bc1 = 1 - std::pow(beta1, static_cast<double>(step_));
  const double bc2 = 1 - std::pow(beta2, static_cast<double>(step_));
  const double step_size = lr / bc1;
  if (options_.weight_decay > 0) {
    if (options_.decoupled) {
      flat_params_.mul_(1 - lr * options_.weight_decay);  // AdamW: decay the weights themselves
    } else {
      flat_grads_.add_(flat_params_, options_.weight_decay);  // Adam: L2 penalty folded into the gradient
    }
  }
  if (flat_params_.device().is_cpu()) {
    adam_cpu(flat_params_.data_ptr<float>(), flat_grads_.data_ptr<float>(), exp_avg_.data_ptr<float>(),
             exp_avg_sq_.data_ptr<float>(), flat_params_.numel(), static_cast<float>(beta1), static_cast<float>(beta2),
             static_cast<float>(options_.eps), static_cast<float>(step_size), static_cast<float>(std::sqrt(bc2)));
    return;
  }
  // Elsewhere (CUDA): torch::optim::Adam's ops, once over the whole flat buffers.
  exp_avg_.mul_(beta1).add_(flat_grads_, 1 - beta1);
  exp_avg_sq_.mul_(beta2).addcmul_(flat_grads_, flat_grads_, 1 - beta2);
  auto denom = (exp_avg_sq_.sqrt() / std::sqrt(bc2)).add_(options_.eps);
  flat_params_.addcdiv_(exp_avg_, denom, -step_size);
}

torch::Tensor clip_grad_norm(torch::Tensor grads, double max_norm) {
  torch::NoGradGuard no_grad;
  auto norm = grads.norm();
  grads.mul_(torch::clamp_max(max_norm / (norm + 1e-6), 1.0));
  return norm;
}

}  // namespace vae
