#include "vae_ddp/model/loss.h"

namespace vae {

namespace F = torch::nn::functional;

namespace {

// bf16/fp16 -> fp32; fp32 and fp64 as they are.
torch::Tensor at_least_fp32(const torch::Tensor& t) { return t.element_size() < 4 ? t.to(torch::kFloat32) : t; }

}  // namespace

torch::Tensor kl_divergence(const torch::Tensor& mu, const torch::Tensor& logvar) {
  // KL(N(mu, s^2) || N(0, 1)) = -1/2 * (1 + log s^2 - mu^2 - s^2), per latent dim.
  return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(/*dim=*/1);
}

torch::Tensor bernoulli_nll(const torch::Tensor& logits, const torch::Tensor& x) {
  return F::binary_cross_entropy_with_logits(logits, x,
                                             F::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kNone))
      .sum(/*dim=*/1);
}

torch::Tensor squared_error(const torch::Tensor& logits, const torch::Tensor& x) {
  return (torch::sigmoid(logits) - x).square().sum(/*dim=*/1);
}

LossTerms loss_terms(const torch::Tensor& logits, const torch::Tensor& x, const torch::Tensor& mu,
                     const torch::Tensor& logvar, bool mse) {
  const auto l = at_least_fp32(logits);
  return {mse ? squared_error(l, x) : bernoulli_nll(l, x), kl_divergence(at_least_fp32(mu), at_least_fp32(logvar))};
}

torch::Tensor objective(const LossTerms& t, double beta, int64_t global_batch) {
  return (t.bce + beta * t.kld).sum() / static_cast<double>(global_batch);
}

torch::Tensor objective(const LossTerms& t, const torch::Tensor& beta, int64_t global_batch) {
  return (t.bce + beta * t.kld).sum() / static_cast<double>(global_batch);
}

}  // namespace vae
