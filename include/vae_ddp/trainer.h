// The training loop: data order, steps, per-epoch evaluation, images, metrics, checkpoints.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <torch/torch.h>

#include "vae_ddp/checkpoint.h"
#include "vae_ddp/config.h"
#include "vae_ddp/kl_schedule.h"
#include "vae_ddp/mnist.h"
#include "vae_ddp/model.h"

namespace vae {

struct EpochStats {
  double loss = 0, bce = 0, kld = 0;  // per image; loss = bce + beta_step * kld averaged
  double beta = 0;                    // beta of the epoch's last step
  int64_t images = 0;
  double seconds = 0;
};

// The permutation of [0, n) used in `epoch` (1-based): a function of (seed, epoch) only.
torch::Tensor epoch_permutation(int64_t n, int64_t seed, int64_t epoch);

class Trainer {
 public:
  // `config` must be valid. Builds the model (initialised from the seed) and optimizer on
  // `device`; the datasets are moved there once.
  Trainer(Config config, Dataset train, Dataset test, torch::Device device);

  // Loads a checkpoint into model, optimizer and progress. Throws UsageError if its
  // architecture differs from the config's.
  void resume_from(const Checkpoint& ckpt);

  // Runs epochs progress().epoch+1 .. config.epochs, writing every output in out_dir.
  void run();

  // One pass over the training set for `epoch` (1-based); updates the weights.
  EpochStats train_epoch(int64_t epoch);

  VAE& model() { return model_; }
  torch::optim::Adam& optimizer() { return *optimizer_; }
  const TrainProgress& progress() const { return progress_; }
  int64_t steps_per_epoch() const;

 private:
  void write_images(int64_t epoch);
  void write_checkpoints(int64_t epoch);

  Config config_;
  Dataset train_, test_;
  torch::Device device_;
  VAE model_{nullptr};
  std::unique_ptr<torch::optim::Adam> optimizer_;
  KLSchedule schedule_;
  TrainProgress progress_;
  torch::Tensor sample_z_;  // [64, latent]: fixed noise for the per-epoch sample grid
};

}  // namespace vae
