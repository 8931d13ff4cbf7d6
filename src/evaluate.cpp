#include "vae_ddp/evaluate.h"

#include "vae_ddp/loss.h"
#include "vae_ddp/rng.h"

namespace vae {

EvalResult evaluate(VAE& model, const Dataset& data, int64_t seed, torch::Device device) {
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  const int64_t n = data.size();
  auto bce_sum = torch::zeros({}, torch::kFloat64);
  auto kld_sum = torch::zeros({}, torch::kFloat64);
  for (int64_t start = 0, k = 0; start < n; start += kEvalBatch, ++k) {
    const int64_t rows = std::min(kEvalBatch, n - start);
    auto x = data.images.slice(/*dim=*/0, start, start + rows).to(device);  // [rows, 784]
    auto gen = make_generator(seed, Stream::kEval, k);
    auto eps = torch::randn({rows, model->latent_dim()}, gen, torch::kFloat32).to(device);
    auto out = model->forward(x, eps);
    auto terms = loss_terms(out.logits, x, out.mu, out.logvar);
    bce_sum += terms.bce.sum().to(torch::kCPU, torch::kFloat64);
    kld_sum += terms.kld.sum().to(torch::kCPU, torch::kFloat64);
  }
  model->train(was_training);
  EvalResult r;
  r.images = n;
  r.bce = n > 0 ? bce_sum.item<double>() / static_cast<double>(n) : 0.0;
  r.kld = n > 0 ? kld_sum.item<double>() / static_cast<double>(n) : 0.0;
  r.loss = r.bce + r.kld;
  return r;
}

}  // namespace vae
