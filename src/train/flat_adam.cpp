#include "vae_ddp/train/flat_adam.h"

#include <cmath>

#include <torch/version.h>

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
      exp_avg_sq_(torch::zeros_like(flat_params_)),
      step_(torch::zeros({}, flat_params_.options().dtype(torch::kFloat32))) {
  TORCH_CHECK(flat_params_.dim() == 1 && flat_params_.sizes() == flat_grads_.sizes(),
              "FlatAdam: parameters and gradients must be flat buffers of one size");
}

int64_t FlatAdam::steps() const { return static_cast<int64_t>(step_.item<double>()); }

void FlatAdam::load_state(const torch::Tensor& exp_avg, const torch::Tensor& exp_avg_sq, int64_t steps) {
  TORCH_CHECK(exp_avg.numel() == exp_avg_.numel() && exp_avg_sq.numel() == exp_avg_sq_.numel(), "Adam state holds ",
              exp_avg.numel(), " and ", exp_avg_sq.numel(), " values, the parameters ", exp_avg_.numel());
  TORCH_CHECK(steps >= 0, "Adam step count ", steps, " is negative");
  torch::NoGradGuard no_grad;
  exp_avg_.copy_(exp_avg.reshape({-1}));
  exp_avg_sq_.copy_(exp_avg_sq.reshape({-1}));
  step_.fill_(static_cast<double>(steps));
}

void FlatAdam::step(const torch::Tensor& skip) {
  torch::NoGradGuard no_grad;
  if (flat_params_.device().is_cpu() && !skip.defined()) {
    step_cpu();
  } else {
    step_aten(skip);
  }
}

void FlatAdam::step_cpu() {
  const double beta1 = options_.beta1, beta2 = options_.beta2, lr = options_.lr;
  step_ += 1;
  const double t = step_.item<double>();  // a CPU tensor: a read, no wait
  const double step_size = lr / (1 - std::pow(beta1, t));
  const double sqrt_bc2 = std::sqrt(1 - std::pow(beta2, t));
  if (options_.weight_decay > 0) {
    if (options_.decoupled) {
      flat_params_.mul_(1 - lr * options_.weight_decay);  // AdamW: decay the weights themselves
    } else {
      flat_grads_.add_(flat_params_, options_.weight_decay);  // Adam: L2 penalty folded into the gradient
    }
  }
  adam_cpu(flat_params_.data_ptr<float>(), flat_grads_.data_ptr<float>(), exp_avg_.data_ptr<float>(),
           exp_avg_sq_.data_ptr<float>(), flat_params_.numel(), static_cast<float>(beta1), static_cast<float>(beta2),
           static_cast<float>(options_.eps), static_cast<float>(step_size), static_cast<float>(sqrt_bc2));
}

void FlatAdam::step_aten(const torch::Tensor& skip) {
  const double beta1 = options_.beta1, beta2 = options_.beta2, lr = options_.lr, wd = options_.weight_decay;
  // keep: 0-dim bool, false for a step fp16 skips. The step count and the bias corrections
  // are 0-dim tensors on the device (0-dim: float64 does not promote the float32 buffers).
  const torch::Tensor keep = skip.defined() ? skip.reshape({}).eq(0) : torch::Tensor();
  if (keep.defined()) {
    step_ += keep.to(torch::kFloat32);
  } else {
    step_ += 1;
  }
  const auto t = step_.to(torch::kFloat64);
  const auto step_size = (lr / (1 - torch::pow(beta1, t))).to(torch::kFloat32);
  const auto sqrt_bc2 = (1 - torch::pow(beta2, t)).sqrt().to(torch::kFloat32);
  auto g = flat_grads_;
  if (wd > 0 && !options_.decoupled) g = g + wd * flat_params_;  // Adam: L2 penalty folded into the gradient
  auto m = exp_avg_ * beta1 + (1 - beta1) * g;
  auto v = exp_avg_sq_ * beta2 + (1 - beta2) * g * g;
  auto p = wd > 0 && options_.decoupled ? flat_params_ * (1 - lr * wd) : flat_params_;  // AdamW
  p = p - step_size * (m / (v.sqrt() / sqrt_bc2 + options_.eps));
  if (keep.defined()) {  // a skipped step leaves every value as it was
    m = torch::where(keep, m, exp_avg_);
    v = torch::where(keep, v, exp_avg_sq_);
    p = torch::where(keep, p, flat_params_);
  }
  exp_avg_.copy_(m);
  exp_avg_sq_.copy_(v);
  flat_params_.copy_(p);
}

// libtorch 2.4 added the fused kernel's CPU version (CUDA had it before): from there on the
// same call runs in the CPU tests.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define VAE_FUSED_ADAM 1
#endif

bool FlatAdam::fused_available() {
#ifdef VAE_FUSED_ADAM
  return true;
#else
  return false;
#endif
}

void FlatAdam::step_fused(const torch::Tensor& grad_scale, const torch::Tensor& found_inf) {
#ifdef VAE_FUSED_ADAM
  torch::NoGradGuard no_grad;
  const std::optional<torch::Tensor> scale =
      grad_scale.defined() ? std::optional<torch::Tensor>(grad_scale) : std::nullopt;
  const std::optional<torch::Tensor> found =
      found_inf.defined() ? std::optional<torch::Tensor>(found_inf) : std::nullopt;
  // As torch.optim.Adam(fused=True): the count first, the kernel reads it; a skipped step takes it back.
  step_.add_(1);
  const AdamOptions& o = options_;
  if (o.decoupled) {
    at::_fused_adamw_({flat_params_}, {flat_grads_}, {exp_avg_}, {exp_avg_sq_}, {}, {step_}, o.lr, o.beta1, o.beta2,
                      o.weight_decay, o.eps, /*amsgrad=*/false, /*maximize=*/false, scale, found);
  } else {
    at::_fused_adam_({flat_params_}, {flat_grads_}, {exp_avg_}, {exp_avg_sq_}, {}, {step_}, o.lr, o.beta1, o.beta2,
                     o.weight_decay, o.eps, /*amsgrad=*/false, /*maximize=*/false, scale, found);
  }
  if (found) step_.sub_(found->reshape({}));
#else
  (void)grad_scale;
  (void)found_inf;
  TORCH_CHECK(false, "FlatAdam::step_fused: needs libtorch 2.4 or later (its fused Adam kernel)");
#endif
}

torch::Tensor clip_grad_norm(torch::Tensor grads, double max_norm) {
  torch::NoGradGuard no_grad;
  auto norm = grads.norm();
  grads.mul_(torch::clamp_max(max_norm / (norm + 1e-6), 1.0));
  return norm;
}

}  // namespace vae
