// The training loop: each step is batch (batch.h) -> forward/backward (step.h) -> one
// all-reduce (parallel/data_parallel.h) -> update (flat_adam.h); each epoch ends with the
// evaluation and rank 0's outputs (run_outputs.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <torch/torch.h>

#include "vae_ddp/base/config.h"
#include "vae_ddp/base/fault_injection.h"
#include "vae_ddp/base/profiler.h"
#include "vae_ddp/data/mnist.h"
#include "vae_ddp/model/model.h"
#include "vae_ddp/parallel/comm.h"
#include "vae_ddp/parallel/data_parallel.h"
#include "vae_ddp/train/amp.h"
#include "vae_ddp/train/batch.h"
#include "vae_ddp/train/checkpoint.h"
#include "vae_ddp/train/device_step.h"
#include "vae_ddp/train/flat_adam.h"
#include "vae_ddp/train/gpu_audit.h"
#include "vae_ddp/train/kl_schedule.h"
#include "vae_ddp/train/run_outputs.h"
#include "vae_ddp/train/step.h"

namespace vae {

// One epoch of training, summed over every rank.
struct EpochStats {
  double loss = 0, bce = 0, kld = 0;  // per image over all ranks; loss = bce + beta_step * kld averaged
  double beta = 0;                    // beta of the epoch's last step
  double first_beta = 0;              // beta of its first step (differs under a KL schedule)
  int64_t images = 0;                 // images of the whole epoch, all ranks together
  int64_t skipped_steps = 0;          // fp16: steps skipped for inf/NaN gradients
  double seconds = 0;
  bool stopped = false;  // a stop signal ended the epoch early (see TrainProgress)
};

// How run() ended.
enum class RunEnd { kFinished, kStopped };

// What one step consumed and produced, for the parity test against PyTorch.
struct StepRecord {
  torch::Tensor indices;  // [rows] int64: training-set rows of the batch
  torch::Tensor eps;      // [rows, latent]: the reparameterisation noise
  double beta = 0;
  double loss = 0;  // the objective: (bce + beta * kld) summed / rows
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
  // Which forward/backward runs, and why: "CPU fast path (oneDNN GEMMs)", "autograd (...)".
  const std::string& step_description() const { return step_.description; }
  // Throws when the ranks' parameters differ (see check_replicas_agree). Collective.
  void check_replicas(const std::string& when);

 private:
  bool is_root() const { return comm_.world().rank == 0; }
  // One optimizer step on global batch `step` (fp16 may skip it, on the device); adds this
  // rank's sums to `acc`.
  void train_step(int64_t step, torch::Tensor& acc, StepRecord* record = nullptr);
  // This rank's rows of global batch `step` (a `nan` fault poisons them).
  Batch make_batch(int64_t step, FaultAction fault);
  // train_step through the device step (--step graph): the whole step in one call.
  void device_train_step(int64_t step, torch::Tensor& acc, FaultAction fault, StepRecord* record);
  // Builds device_step_ (its beta table from rank 0's schedule). Collective.
  void make_device_step();
  // Adds a step's objective, terms and image count to `acc` (on the device).
  void add_sums(torch::Tensor& acc, const StepResult& r, const Batch& batch);
  // The one all-reduce of the step: gradients and the control slots (FlatParameters::Slot).
  void reduce_gradients();
  // Unscales, clips and applies the summed gradient (fp16 skips it on the device).
  void update_parameters();
  // Reads the step's agreed control slots (stop, non-finite); throws on a non-finite loss.
  // Returns true when every rank must stop now.
  bool must_stop(int64_t epoch, int64_t step);
  // Sets up `epoch`: train mode, its batches, beta if not yet known.
  void begin_epoch(int64_t epoch);
  // The bar and the --log-every lines after `step`.
  void show_progress(int64_t epoch, int64_t step, torch::Tensor& total, torch::Tensor& interval);
  // A stop signal after `step`: the epoch's sums so far into progress_, to resume from.
  EpochStats pause_epoch(int64_t step, torch::Tensor& total, double seconds);
  // The epoch's summed statistics, once every step is done.
  EpochStats finish_epoch(int64_t epoch, torch::Tensor& total, double seconds);
  // Rank 0's beta for the current global step, on every rank.
  void broadcast_beta();
  void log_interval(int64_t epoch, int64_t done, torch::Tensor& interval);

  Config config_;
  Dataset train_, test_;
  torch::Device device_;
  Communicator& comm_;
  Precision precision_;
  VAE model_{nullptr};
  std::unique_ptr<FlatParameters> flat_;  // the parameters' and gradients' storage
  std::unique_ptr<FlatAdam> adam_;        // the moments; updates flat_ in place, fused
  LossScaler scaler_;
  Profiler profiler_;
  KLSchedule schedule_;
  TrainProgress progress_;
  std::unique_ptr<BatchMaker> batches_;
  StepChoice step_;                              // forward and backward: autograd or a fast path
  std::unique_ptr<DeviceStep> device_step_;      // or the whole step (--step graph), when step_.kind says so
  torch::Tensor total_, interval_;               // an epoch's sums and the current log interval's (new_sums)
  torch::Tensor beta_;                           // [1] on the device: the current step's beta, rank 0's value
  torch::Tensor skipped_;                        // 0-dim on the device: fp16 steps skipped this epoch (in place)
  int sync_debug_ = sync_debug_mode_from_env();  // VAE_DDP_SYNC_DEBUG (gpu_audit.h)
  bool ops_counted_ = false;                     // GPU operations counted once a run
  std::unique_ptr<RunOutputs> outputs_;
};

}  // namespace vae
