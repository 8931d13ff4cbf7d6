#include "vae_ddp/train/batch.h"

#include "vae_ddp/base/rng.h"
#include "vae_ddp/dist/data_parallel.h"

namespace vae {

BatchMaker::BatchMaker(const Config& c, Dataset train, std::vector<int64_t> hidden_widths, torch::Device device)
    : train_(std::move(train)),
      widths_(std::move(hidden_widths)),
      device_(device),
      batch_size_(c.batch_size),
      seed_(c.seed),
      latent_(c.latent_dim),
      binarize_(c.binarize == Binarize::kDynamic),
      conditional_(c.conditional),
      dropout_(c.dropout) {}

void BatchMaker::begin_epoch(int64_t epoch) {
  epoch_ = epoch;
  perm_ = epoch_permutation(train_.size(), seed_, epoch).to(device_);
  std::vector<torch::Tensor> steps;
  for (int64_t step = 0, start = 0; start < train_.size(); ++step, start += batch_size_) {
    const int64_t rows = std::min(batch_size_, train_.size() - start);
    auto gen = make_generator(seed_, Stream::kNoise, epoch, step);
    steps.push_back(torch::randn({rows, latent_}, gen, torch::kFloat32));
  }
  noise_ = torch::cat(steps).to(device_);
}

Batch BatchMaker::make(int64_t step, int rank, int world) const {
  TORCH_CHECK(epoch_ > 0, "BatchMaker: begin_epoch first");
  Batch b;
  const int64_t start = step * batch_size_;
  b.global_rows = std::min(batch_size_, train_.size() - start);
  const auto global = perm_.slice(/*dim=*/0, start, start + b.global_rows);
  b.indices = shard_rows(global, rank, world);
  if (binarize_) {
    auto pixels = train_.images.index_select(/*dim=*/0, global);
    b.x = shard_rows(binarize_batch(pixels, seed_, epoch_, step), rank, world).contiguous();
  } else {
    b.x = train_.images.index_select(/*dim=*/0, b.indices);  // [mine, 784]
  }
  b.eps = shard_rows(noise_.slice(/*dim=*/0, start, start + b.global_rows), rank, world);
  if (conditional_) b.extras.labels = train_.labels.index_select(/*dim=*/0, b.indices);
  for (auto& m : dropout_masks(widths_, dropout_, b.global_rows, seed_, epoch_, step)) {
    b.extras.dropout.push_back(shard_rows(m, rank, world).to(device_));
  }
  return b;
}

}  // namespace vae
