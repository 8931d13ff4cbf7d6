// The training loop: sharded steps, per-epoch evaluation, and (rank 0) images, metrics
// and checkpoints.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <torch/torch.h>

#include "vae_ddp/amp.h"
#include "vae_ddp/checkpoint.h"
#include "vae_ddp/comm.h"
#include "vae_ddp/config.h"
#include "vae_ddp/cpu_step.h"
#include "vae_ddp/data_parallel.h"
#include "vae_ddp/flat_adam.h"
#include "vae_ddp/kl_schedule.h"
#include "vae_ddp/mnist.h"
#include "vae_ddp/model.h"
#include "vae_ddp/profiler.h"
#include "vae_ddp/progress.h"
#include "vae_ddp/tensorboard.h"

namespace vae {

struct EpochStats {
  double loss = 0, bce = 0, kld = 0;  // per image over all ranks; loss = bce + beta_step * kld averaged
  double beta = 0;                    // beta of the epoch's last step
  int64_t images = 0;                 // images of the whole epoch, all ranks together
  int64_t skipped_steps = 0;          // fp16: steps skipped for inf/NaN gradients
  double seconds = 0;
  bool stopped = false;               // a stop signal ended the epoch early (see TrainProgress)
};

// How run() ended.
enum class RunEnd { kFinished, kStopped };

// What one step consumed and produced, for the parity test against PyTorch.
struct StepRecord {
  torch::Tensor indices;  // [rows] int64: training-set rows of the batch
  torch::Tensor eps;      // [rows, latent]: the reparameterisation noise
  double beta = 0;
  double loss = 0;        // the objective: (bce + beta * kld) summed / rows
};

class Trainer {
 public:
  // `config` must be valid. Builds the model (initialised from the seed; then rank 0's
  // weights are broadcast) and optimizer on `device`; the datasets are moved there once.
  // Every rank holds the whole dataset and takes its rows of each global batch.
  // Collective: every rank constructs its Trainer together.
  Trainer(Config config, Dataset train, Dataset test, torch::Device device, Communicator& comm);

  // Loads a checkpoint into model, optimizer, scaler and progress, then broadcasts rank
  // 0's weights. Throws UsageError if its architecture differs from the config's.
  void resume_from(const Checkpoint& ckpt);

  // Runs epochs progress().epoch+1 .. config.epochs; rank 0 writes every output in out_dir.
  // A stop signal (stop_signal.h) on any rank ends it at the next step boundary on every
  // rank, after rank 0 has written checkpoints/last.pt: kStopped. Throws
  // std::runtime_error naming the epoch and step when an fp32/bf16 loss is NaN or inf
  // (nothing is saved after the last good checkpoint).
  RunEnd run();

  // The steps of `epoch` (1-based) from progress().step_in_epoch on; updates the weights.
  // Returns early, with stopped set, when a stop signal arrived. Collective.
  EpochStats train_epoch(int64_t epoch);

  // Runs the first `steps` steps of epoch 1 from a fresh trainer and records each one.
  std::vector<StepRecord> trace(int64_t steps);

  VAE& model() { return model_; }
  const FlatAdam& optimizer() const { return *adam_; }
  const TrainProgress& progress() const { return progress_; }
  int64_t steps_per_epoch() const;
  // Throws when the ranks' parameters differ (see check_replicas_agree). Collective.
  void check_replicas(const std::string& when);

 private:
  bool is_root() const { return comm_.world().rank == 0; }
  // One optimizer step on global batch `step` of `perm`; adds this rank's sums to `acc`.
  // Returns false when fp16 scaling skipped it.
  bool train_step(const torch::Tensor& perm, int64_t step, torch::Tensor& acc,
                  StepRecord* record = nullptr);
  // Reads the step's agreed control slots (stop, non-finite); throws on a non-finite loss.
  // Returns true when every rank must stop now.
  bool must_stop(int64_t epoch, int64_t step);
  // Sets up `epoch` (train mode, its noise, beta if not yet known); returns its
  // permutation on the device.
  torch::Tensor begin_epoch(int64_t epoch);
  // Draws the epoch's reparameterisation noise, step by step from (seed, epoch, step),
  // into epoch_noise_ on the device: the steps then slice it, with no copy per step.
  void prepare_noise(int64_t epoch);
  // Rank 0's beta for the current global step, on every rank.
  void broadcast_beta();
  void log_interval(int64_t epoch, int64_t done, torch::Tensor& interval);
  void write_images(int64_t epoch);
  void write_checkpoints(int64_t epoch);
  void save(const std::string& path, int64_t epoch);

  Config config_;
  Dataset train_, test_;
  torch::Device device_;
  Communicator& comm_;
  Precision precision_;
  VAE model_{nullptr};
  std::unique_ptr<FlatAdam> adam_;  // owns the Adam state; updates, fused, on flat buffers
  std::unique_ptr<GradBuffer> grads_;
  std::unique_ptr<CpuStep> cpu_step_;  // the CPU fp32 fast path, when enabled
  LossScaler scaler_;
  Profiler profiler_;
  KLSchedule schedule_;
  TrainProgress progress_;
  int64_t epoch_ = 0;          // the epoch being trained (1-based)
  torch::Tensor epoch_noise_;  // [n, latent]: the epoch's noise, global batches in step order
  torch::Tensor beta_;      // [1] on the device: the current step's beta, rank 0's value
  torch::Tensor sample_z_;  // [64, latent]: fixed noise for the per-epoch sample grid
  std::unique_ptr<EventWriter> tb_;  // rank 0, in run(): <out_dir>/tb
  std::unique_ptr<ProgressBar> bar_; // the current epoch's (drawn by rank 0 on a terminal)
};

}  // namespace vae
