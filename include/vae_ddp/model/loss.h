// The VAE objective, per image, in nats.
#pragma once

#include <torch/torch.h>

namespace vae {

struct LossTerms {
  torch::Tensor bce;  // [B]: the reconstruction term summed over the 784 pixels: Bernoulli negative
                      // log-likelihood (or, with mse, the squared error of sigmoid(logits))
  torch::Tensor kld;  // [B]: KL(N(mu, sigma^2) || N(0, I)) summed over latent dims
};

// Closed-form KL of a diagonal Gaussian from the standard normal; mu, logvar [B, L] -> [B].
torch::Tensor kl_divergence(const torch::Tensor& mu, const torch::Tensor& logvar);

// Reconstruction term from logits (stable, autocast-safe), x in [0,1]; both [B, 784] -> [B].
torch::Tensor bernoulli_nll(const torch::Tensor& logits, const torch::Tensor& x);

// sum over pixels of (sigmoid(logits) - x)^2; [B, 784] -> [B] (--recon-loss mse).
torch::Tensor squared_error(const torch::Tensor& logits, const torch::Tensor& x);

// Both terms at least fp32: under autocast the model's outputs are bf16/fp16, the loss
// is computed from them upcast to fp32. mse: squared_error instead of bernoulli_nll.
LossTerms loss_terms(const torch::Tensor& logits, const torch::Tensor& x, const torch::Tensor& mu,
                     const torch::Tensor& logvar, bool mse = false);

// The optimised scalar: sum over these rows of (bce + beta * kld), divided by the number
// of images in the whole global batch (which, across ranks, may exceed the rows here).
torch::Tensor objective(const LossTerms& t, double beta, int64_t global_batch);
// The same with beta as a [1] tensor on the device (the value rank 0 broadcast), so the
// host never waits for it.
torch::Tensor objective(const LossTerms& t, const torch::Tensor& beta, int64_t global_batch);

}  // namespace vae
