#include "vae_ddp/train/evaluate.h"

#include <cmath>
#include <limits>
#include <vector>

#include "vae_ddp/base/rng.h"
#include "vae_ddp/model/loss.h"
#include "vae_ddp/parallel/data_parallel.h"
#include "vae_ddp/train/batch.h"  // to_device_async

namespace vae {

EvalResult evaluate(VAE& model, const Dataset& data, int64_t seed, torch::Device device, Communicator& comm,
                    bool binarize) {
  EvalMode eval(model);
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
    if (binarize) x = binarize_images(x, shard_rows(torch::arange(start, start + rows), rank, world), seed);
    const ForwardExtras labels{shard_rows(data.labels.slice(/*dim=*/0, start, start + rows), rank, world)};
    auto out = model->forward(x, shard_rows(eps, rank, world).to(device), labels);
    auto terms = loss_terms(out.logits, x, out.mu, out.logvar, model->options().recon_loss == ReconLoss::kMse);
    sums[0] += terms.bce.to(torch::kFloat64).sum();
    sums[1] += terms.kld.to(torch::kFloat64).sum();
  }
  comm.allreduce_sum(sums);
  const auto host = sums.to(torch::kCPU);
  EvalResult r;
  r.images = n;
  r.bce = n > 0 ? host[0].item<double>() / static_cast<double>(n) : 0.0;
  r.kld = n > 0 ? host[1].item<double>() / static_cast<double>(n) : 0.0;
  r.loss = r.bce + r.kld;
  return r;
}

namespace {

constexpr int64_t kRowsPerDecode = 4096;          // decoder rows per chunk: images x samples
constexpr int64_t kNoiseFloatsPerCopy = 1 << 24;  // 64 MB of noise per host-to-device copy

// log w [images, samples] for images x with posterior (mu, logvar) and noise eps
// [images, samples, latent]; the 2*pi terms of p(z) and q(z|x) cancel.
torch::Tensor log_weights(VAE& model, const torch::Tensor& x, const torch::Tensor& mu, const torch::Tensor& logvar,
                          const torch::Tensor& eps, const torch::Tensor& labels) {
  const int64_t m = eps.size(0), s = eps.size(1), latent = eps.size(2);
  auto z = mu.unsqueeze(1) + torch::exp(0.5 * logvar).unsqueeze(1) * eps;  // [m, s, L]
  const ForwardExtras repeated{labels.repeat_interleave(s)};               // each image's label for its s samples
  auto logits = model->decode(z.reshape({m * s, latent}), repeated).reshape({m, s, kImagePixels});
  auto target = x.unsqueeze(1).expand({m, s, kImagePixels});
  auto bce =
      torch::nn::functional::binary_cross_entropy_with_logits(
          logits, target, torch::nn::functional::BinaryCrossEntropyWithLogitsFuncOptions().reduction(torch::kNone))
          .sum(2);  // [m, s]: -log p(x|z)
  return -bce - 0.5 * z.square().sum(2) + 0.5 * eps.square().sum(2) + 0.5 * logvar.sum(1, /*keepdim=*/true);
}

}  // namespace

double importance_weighted_nll(VAE& model, const Dataset& data, int64_t seed, int64_t samples, torch::Device device,
                               Communicator& comm, bool binarize, const EvalProgress& progress) {
  EvalMode eval(model);
  const int rank = comm.world().rank, world = comm.world().size;
  const int64_t n = data.size(), latent = model->latent_dim();
  const int64_t chunk = std::min(samples, kRowsPerDecode);                 // samples per decode
  const int64_t per_batch = std::max<int64_t>(1, kRowsPerDecode / chunk);  // images per decode
  // Images whose noise is drawn on the host together and copied to the device at once.
  const int64_t per_draw = std::max(per_batch, kNoiseFloatsPerCopy / (samples * latent));
  auto total = torch::zeros({1}, torch::dtype(torch::kFloat64).device(device));
  const auto mine = torch::arange(rank, n, world, torch::kInt64);  // this rank's images, on the host
  const auto mine_there = mine.to(data.images.device());
  for (int64_t d = 0; d < mine.size(0); d += per_draw) {
    const int64_t d_end = std::min(mine.size(0), d + per_draw);
    // [images, samples, latent]: image i's chunk c comes from (seed, i, c) whatever the batching.
    std::vector<torch::Tensor> per_image;
    for (int64_t i = d; i < d_end; ++i) {
      std::vector<torch::Tensor> chunks;
      for (int64_t start = 0, c = 0; start < samples; start += chunk, ++c) {
        auto gen = make_generator(seed, Stream::kImportance, mine[i].item<int64_t>(), c);
        chunks.push_back(torch::randn({std::min(chunk, samples - start), latent}, gen, torch::kFloat32));
      }
      per_image.push_back(torch::cat(chunks));
    }
    const auto noise = to_device_async(torch::stack(per_image), device);
    for (int64_t b = d; b < d_end; b += per_batch) {
      const int64_t b_end = std::min(d_end, b + per_batch);
      const auto idx = mine_there.slice(/*dim=*/0, b, b_end);
      auto x = data.images.index_select(0, idx).to(device);  // [m, 784]
      if (binarize) x = binarize_images(x, mine.slice(/*dim=*/0, b, b_end), seed);
      const auto labels = data.labels.index_select(0, idx.to(data.labels.device())).to(device);
      auto [mu, logvar] = model->encode(x, ForwardExtras{labels});
      const int64_t m = x.size(0);
      auto acc =
          torch::full({m}, -std::numeric_limits<double>::infinity(), torch::dtype(torch::kFloat64).device(device));
      for (int64_t start = 0; start < samples; start += chunk) {
        const auto eps = noise.slice(/*dim=*/0, b - d, b_end - d).slice(/*dim=*/1, start, start + chunk);  // [m, s, L]
        auto lw = log_weights(model, x, mu, logvar, eps, labels);                                          // [m, s]
        acc = torch::logaddexp(acc, torch::logsumexp(lw.to(torch::kFloat64), /*dim=*/1));
      }
      total += (acc - std::log(static_cast<double>(samples))).sum();
    }
    // This rank's share done, scaled to the whole test set (the ranks move in step).
    if (progress) progress(std::min(n, d_end * world), n);
  }
  comm.allreduce_sum(total);
  return n > 0 ? -total.item<double>() / static_cast<double>(n) : 0.0;
}

}  // namespace vae
