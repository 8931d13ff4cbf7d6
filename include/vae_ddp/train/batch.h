// One rank's share of a global training batch, and everything drawn for it: the one place
// the world-size-invariance rule lives. Every draw (the epoch's order, the noise, the
// dropout masks, dynamic binarization) is made for the whole global batch from (seed,
// epoch, step), then sharded (parallel/data_parallel.h), so an image gets the same draws at
// any world size.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "vae_ddp/base/config.h"
#include "vae_ddp/data/mnist.h"
#include "vae_ddp/model/model.h"
#include "vae_ddp/parallel/data_parallel.h"

namespace vae {

struct Batch {
  torch::Tensor indices;    // [mine] int64: the training-set rows
  torch::Tensor x;          // [mine, 784] pixels in [0,1] (0 or 1 when binarized), contiguous
  torch::Tensor eps;        // [mine, latent]: the reparameterization noise
  ForwardExtras extras;     // labels (conditional models) and dropout masks, [mine] / [mine, width]
  int64_t global_rows = 0;  // rows of the whole global batch: the objective's divisor
  int64_t rows() const { return indices.size(0); }
};

class BatchMaker {
 public:
  // `train` on `device`, where the batches are made; `hidden_widths`: the model's (the
  // dropout masks' shapes).
  BatchMaker(const Config& c, Dataset train, std::vector<int64_t> hidden_widths, torch::Device device);

  // Draws `epoch`'s (1-based) permutation, noise, dynamic binarization and dropout masks:
  // one pinned, asynchronous host-to-device copy each, so that the steps only slice them
  // (no host read or pageable copy per step).
  void begin_epoch(int64_t epoch);
  int64_t steps_per_epoch() const { return vae::steps_per_epoch(train_.size(), config_.batch_size); }
  // Rank `rank` of `world`'s rows of global batch `step` of the current epoch: rows
  // rank, rank + world, ... of the global batch (possibly none). Without `with_pixels`,
  // x (and the labels and dropout masks) stay undefined: the device step gathers the rows
  // itself from the indices.
  Batch make(int64_t step, int rank, int world, bool with_pixels = true) const;

 private:
  Config config_;
  Dataset train_;
  std::vector<int64_t> widths_;
  torch::Device device_;
  int64_t epoch_ = 0;
  torch::Tensor perm_;               // [n] int64 on the device: the epoch's order
  torch::Tensor noise_;              // [n, latent] on the device: the epoch's noise, global batches in step order
  torch::Tensor uniforms_;           // [n, 784]: --binarize dynamic's draws, in the same order (else undefined)
  std::vector<torch::Tensor> keep_;  // per hidden layer [n, width] bool: dropout's kept units (p > 0)
};

// `host` (a CPU tensor) on `device`: itself on the CPU, else a pinned, non-blocking copy.
torch::Tensor to_device_async(const torch::Tensor& host, torch::Device device);

}  // namespace vae
