#include "vae_ddp/evaluate.h"

#include "vae_ddp/data_parallel.h"
#include "vae_ddp/loss.h"
#include "vae_ddp/rng.h"

namespace vae {

EvalResult evaluate(VAE& model, const Dataset& data, int64_t seed, torch::Device device, Communicator& comm) {
  torch::NoGradGuard no_grad;
  const bool was_training = model->is_training();
  model->eval();
  const int rank = comm.world().rank, world = comm.world().size;
  const int64_t n = data.size();
  // [bce, kld] sums in float64 over this rank's images, summed across ranks at the end.
  auto sums = torch::zeros({2}, torch::dtype(torch::kFloat64).device(device));
  for (int64_t start = 0, k = 0; start < n; start += kEvalBatch, ++k) {
    const int64_t rows = std::min(kEvalBatch, n - start);
    auto gen = make_generator(seed, Stream::kEval, k);
    auto eps = torch::randn({rows, model->latent_dim()}, gen, torch::kFloat32);  // [rows, latent], the whole batch's
    if (shard_size(rows, rank, world) == 0) continue;
    auto x = shard_rows(data.images.slice(/*dim=*/0, start, start + rows), rank, world).to(device);  // [mine, 784]
    auto out = model->forward(x, shard_rows(eps, rank, world).to(device));
    auto terms = loss_terms(out.logits, x, out.mu, out.logvar);
    sums[0] += terms.bce.to(torch::kFloat64).sum();
    sums[1] += terms.kld.to(torch::kFloat64).sum();
  }
  comm.allreduce_sum(sums);
  model->train(was_training);
  const auto host = sums.to(torch::kCPU);
  EvalResult r;
  r.images = n;
  r.bce = n > 0 ? host[0].item<double>() / static_cast<double>(n) : 0.0;
  r.kld = n > 0 ? host[1].item<double>() / static_cast<double>(n) : 0.0;
  r.loss = r.bce + r.kld;
  return r;
}

}  // namespace vae
