#include "vae_ddp/train/batch.h"

#include "vae_ddp/base/rng.h"
#include "vae_ddp/parallel/data_parallel.h"

namespace vae {

BatchMaker::BatchMaker(const Config& c, Dataset train, std::vector<int64_t> hidden_widths, torch::Device device)
    : config_(c), train_(std::move(train)), widths_(std::move(hidden_widths)), device_(device) {}

torch::Tensor to_device_async(const torch::Tensor& host, torch::Device device) {
  if (device.is_cpu()) return host;
  // Pinned, so the copy is a DMA that does not block the host; the caching host allocator
  // keeps the pinned block until the copy has finished, even after `host` goes away.
  return host.pin_memory().to(device, /*non_blocking=*/true);
}

void BatchMaker::begin_epoch(int64_t epoch) {
  epoch_ = epoch;
  perm_ = to_device_async(epoch_permutation(train_.size(), config_.seed, epoch), device_);
  // Every draw of the epoch, made on the host step by step from (seed, epoch, step) as the
  // world-size rule wants, then copied once: the steps only slice them.
  std::vector<torch::Tensor> noise, uniforms;
  std::vector<std::vector<torch::Tensor>> keep(config_.dropout > 0 ? widths_.size() : 0);
  for (int64_t step = 0; step < steps_per_epoch(); ++step) {
    const int64_t rows = global_batch_rows(train_.size(), config_.batch_size, step);
    auto gen = make_generator(config_.seed, Stream::kNoise, epoch, step);
    noise.push_back(torch::randn({rows, config_.latent_dim}, gen, torch::kFloat32));
    if (config_.binarize == Binarize::kDynamic) {
      uniforms.push_back(binarize_draws(rows, train_.images.size(1), config_.seed, epoch, step));
    }
    const auto kept = dropout_keep(widths_, config_.dropout, rows, config_.seed, epoch, step);  // [rows, width] bool
    for (size_t l = 0; l < kept.size(); ++l) keep[l].push_back(kept[l]);
  }
  noise_ = to_device_async(torch::cat(noise), device_);
  uniforms_ = uniforms.empty() ? torch::Tensor() : to_device_async(torch::cat(uniforms), device_);
  keep_.clear();
  for (const auto& layer : keep) keep_.push_back(to_device_async(torch::cat(layer), device_));
}

Batch BatchMaker::make(int64_t step, int rank, int world, bool with_pixels) const {
  TORCH_CHECK(epoch_ > 0, "BatchMaker: begin_epoch first");
  Batch b;
  const int64_t start = step * config_.batch_size;
  b.global_rows = global_batch_rows(train_.size(), config_.batch_size, step);
  const auto rows_of = [&](const torch::Tensor& epoch_draws) {  // this rank's rows of the step's draws
    return shard_rows(epoch_draws.slice(/*dim=*/0, start, start + b.global_rows), rank, world);
  };
  b.indices = rows_of(perm_);
  if (!with_pixels) {
    b.eps = rows_of(noise_);
    return b;
  }
  b.x = train_.images.index_select(/*dim=*/0, b.indices);                         // [mine, 784]
  if (uniforms_.defined()) b.x = (rows_of(uniforms_) < b.x).to(torch::kFloat32);  // as binarize_batch does
  b.eps = rows_of(noise_);
  if (config_.conditional) b.extras.labels = train_.labels.index_select(/*dim=*/0, b.indices);
  for (const auto& keep : keep_) {
    b.extras.dropout.push_back(dropout_mask(rows_of(keep), config_.dropout));
  }
  return b;
}

}  // namespace vae
