#include "vae_ddp/flat_adam.h"

#include <cmath>

#include <c10/util/string_utils.h>

namespace vae {

namespace {

// torch::optim::Adam keys its per-parameter state by the parameter's TensorImpl address.
std::string state_key(const torch::Tensor& p) { return c10::guts::to_string(p.unsafeGetTensorImpl()); }

// The fused update on the CPU: one pass reading p, g, m, v and writing p, m, v. Built for
// AVX-512, AVX2 and baseline x86-64; the loader picks the best this CPU runs.
__attribute__((target_clones("avx512f", "avx2", "default"))) void adam_cpu(float* p, const float* g, float* m, float* v, int64_t n, float beta1, float beta2, float eps,
              float step_size, float sqrt_bc2) {
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

FlatAdam::FlatAdam(torch::optim::Adam& adam, std::vector<torch::Tensor> params, torch::Tensor flat_grads,
                   bool decoupled_weight_decay)
    : adam_(adam), params_(std::move(params)), flat_grads_(std::move(flat_grads)), decoupled_(decoupled_weight_decay) {
  int64_t n = 0;
  for (const auto& p : params_) n += p.numel();
  TORCH_CHECK(n == flat_grads_.numel(), "FlatAdam: gradient buffer size does not match the parameters");
  flat_params_ = torch::empty({n}, flat_grads_.options());
  exp_avg_ = torch::zeros({n}, flat_grads_.options());
  exp_avg_sq_ = torch::zeros({n}, flat_grads_.options());
  attach();
}

void FlatAdam::attach() {
  torch::NoGradGuard no_grad;
  auto& state = adam_.state();
  int64_t offset = 0;
  step_ = 0;
  for (auto& p : params_) {
    const int64_t k = p.numel();
    auto view = [&](torch::Tensor& flat) { return flat.narrow(/*dim=*/0, offset, k).view(p.sizes()); };
    view(flat_params_).copy_(p);
    p.set_data(view(flat_params_));
    auto it = state.find(state_key(p));
    auto fresh = std::make_unique<torch::optim::AdamParamState>();
    if (it != state.end()) {
      auto& loaded = static_cast<torch::optim::AdamParamState&>(*it->second);
      view(exp_avg_).copy_(loaded.exp_avg());
      view(exp_avg_sq_).copy_(loaded.exp_avg_sq());
      fresh->step(loaded.step());
    } else {
      view(exp_avg_).zero_();
      view(exp_avg_sq_).zero_();
    }
    fresh->exp_avg(view(exp_avg_));
    fresh->exp_avg_sq(view(exp_avg_sq_));
    step_ = std::max(step_, fresh->step());
    state[state_key(p)] = std::move(fresh);
    offset += k;
  }
}

void FlatAdam::step() {
  torch::NoGradGuard no_grad;
  const auto& opts = static_cast<const torch::optim::AdamOptions&>(adam_.param_groups().front().options());
  const double beta1 = std::get<0>(opts.betas()), beta2 = std::get<1>(opts.betas());
  ++step_;
  for (auto& p : params_) {
    static_cast<torch::optim::AdamParamState&>(*adam_.state().at(state_key(p))).step(step_);
  }
  const double bc1 = 1 - std::pow(beta1, static_cast<double>(step_));
  const double bc2 = 1 - std::pow(beta2, static_cast<double>(step_));
  const double step_size = opts.lr() / bc1;
  if (opts.weight_decay() > 0) {
    if (decoupled_) {
      flat_params_.mul_(1 - opts.lr() * opts.weight_decay());  // AdamW: decay the weights themselves
    } else {
      flat_grads_.add_(flat_params_, opts.weight_decay());  // Adam: L2 penalty folded into the gradient
    }
  }
  if (flat_params_.device().is_cpu()) {
    adam_cpu(flat_params_.data_ptr<float>(), flat_grads_.data_ptr<float>(), exp_avg_.data_ptr<float>(),
             exp_avg_sq_.data_ptr<float>(), flat_params_.numel(), static_cast<float>(beta1),
             static_cast<float>(beta2), static_cast<float>(opts.eps()), static_cast<float>(step_size),
             static_cast<float>(std::sqrt(bc2)));
    return;
  }
  // Elsewhere (CUDA): torch::optim::Adam's ops, once over the whole flat buffers.
  exp_avg_.mul_(beta1).add_(flat_grads_, 1 - beta1);
  exp_avg_sq_.mul_(beta2).addcmul_(flat_grads_, flat_grads_, 1 - beta2);
  auto denom = (exp_avg_sq_.sqrt() / std::sqrt(bc2)).add_(opts.eps());
  flat_params_.addcdiv_(exp_avg_, denom, -step_size);
}

torch::Tensor clip_grad_norm(torch::Tensor grads, double max_norm) {
  torch::NoGradGuard no_grad;
  auto norm = grads.norm();
  grads.mul_(torch::clamp_max(max_norm / (norm + 1e-6), 1.0));
  return norm;
}

}  // namespace vae
