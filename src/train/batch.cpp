#include "vae_ddp/train/batch.h"

#include "vae_ddp/base/rng.h"
#include "vae_ddp/dist/data_parallel.h"

namespace vae {

BatchMaker::BatchMaker(const Config& c, Dataset train, std::vector<int64_t> hidden_widths, torch::Device device)
    : config_(c), train_(std::move(train)), widths_(std::move(hidden_widths)), device_(device) {}

void BatchMaker::begin_epoch(int64_t epoch) {
  epoch_ = epoch;
  perm_ = epoch_permutation(train_.size(), config_.seed, epoch).to(device_);
  std::vector<torch::Tensor> steps;
  for (int64_t step = 0; step < steps_per_epoch(); ++step) {
    const int64_t rows = global_batch_rows(train_.size(), config_.batch_size, step);
    auto gen = make_generator(config_.seed, Stream::kNoise, epoch, step);
    steps.push_back(torch::randn({rows, config_.latent_dim}, gen, torch::kFloat32));
  }
  noise_ = torch::cat(steps).to(device_);
}

Batch BatchMaker::make(int64_t step, int rank, int world) const {
  TORCH_CHECK(epoch_ > 0, "BatchMaker: begin_epoch first");
  Batch b;
  const int64_t start = step * config_.batch_size;
  b.global_rows = global_batch_rows(train_.size(), config_.batch_size, step);
  const auto global = perm_.slice(/*dim=*/0, start, start + b.global_rows);
  b.indices = shard_rows(global, rank, world);
  if (config_.binarize == Binarize::kDynamic) {
    auto pixels = train_.images.index_select(/*dim=*/0, global);
    b.x = shard_rows(binarize_batch(pixels, config_.seed, epoch_, step), rank, world).contiguous();
  } else {
    b.x = train_.images.index_select(/*dim=*/0, b.indices);  // [mine, 784]
  }
  b.eps = shard_rows(noise_.slice(/*dim=*/0, start, start + b.global_rows), rank, world);
  if (config_.conditional) b.extras.labels = train_.labels.index_select(/*dim=*/0, b.indices);
  for (auto& m : dropout_masks(widths_, config_.dropout, b.global_rows, config_.seed, epoch_, step)) {
    b.extras.dropout.push_back(shard_rows(m, rank, world).to(device_));
  }
  return b;
}

}  // namespace vae
