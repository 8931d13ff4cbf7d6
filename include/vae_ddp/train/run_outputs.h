// What a training run leaves behind and shows, written by rank 0 at the trainer's log,
// epoch and stop points: metrics.csv, TensorBoard events, the progress bar or log lines,
// the sample and reconstruction grids and the latent-space pictures, and the checkpoints
// (last.pt, epoch_NNN.pt, pruned to --keep-checkpoints).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <torch/torch.h>

#include "vae_ddp/base/config.h"
#include "vae_ddp/data/mnist.h"
#include "vae_ddp/io/metrics.h"
#include "vae_ddp/io/progress.h"
#include "vae_ddp/io/tensorboard.h"
#include "vae_ddp/model/model.h"
#include "vae_ddp/train/checkpoint.h"
#include "vae_ddp/train/evaluate.h"
#include "vae_ddp/train/flat_adam.h"

namespace vae {

struct EpochStats;  // trainer.h: one epoch of training, what end_epoch reports

// Per image, over the images since the last log line, all ranks.
struct StepLosses {
  double loss = 0, bce = 0, kld = 0, beta = 0;
};

class RunOutputs {
 public:
  // Writes only when `writer` (rank 0); elsewhere the log lines alone are printed (and
  // shown when that rank's log level lets them). The references must outlive it.
  RunOutputs(bool writer, const Config& c, VAE& model, const FlatAdam& adam, const TrainProgress& progress,
             const Dataset& test);

  // Opens metrics.csv, keeping the rows of the epochs done; when `training` (some epochs
  // are left), the TensorBoard event file in <out_dir>/tb too.
  void begin_run(bool training);
  // The progress bar of `epoch`, drawn when this is rank 0 on a terminal.
  void begin_epoch(int64_t epoch, int64_t images);
  bool bar_due() const { return bar_ && bar_->due(); }
  void draw_bar(int64_t done_images, double loss) {
    if (bar_) bar_->draw(done_images, loss);
  }
  void finish_bar() {
    if (bar_) bar_->finish();
  }
  // Every --log-every steps: TensorBoard's step scalars, and a log line when there is no bar.
  void log_step(int64_t epoch, int64_t done_images, int64_t global_step, const StepLosses& l);
  // After the epoch's evaluation: pictures, metrics row, plots, scalars, checkpoints, and the
  // epoch's summary line.
  void end_epoch(int64_t epoch, const EpochStats& train, const EvalResult& test);
  // A stop signal ended `epoch` early: checkpoints/last.pt, to resume from.
  void save_last(int64_t epoch);

 private:
  void write_images(int64_t epoch);
  void write_checkpoints(int64_t epoch);
  void save(const std::string& path, int64_t epoch);

  bool writer_;
  const Config& config_;
  VAE& model_;
  const FlatAdam& adam_;
  const TrainProgress& progress_;
  const Dataset& test_;
  std::string recon_;       // the reconstruction term's name, bce or mse, as the lines and columns say it
  torch::Tensor sample_z_;  // [64, latent]: fixed noise for the per-epoch sample grid
  std::unique_ptr<MetricsWriter> metrics_;
  std::unique_ptr<EventWriter> tb_;
  std::unique_ptr<ProgressBar> bar_;  // only while rank 0 draws one on a terminal
  int64_t epoch_images_ = 0;          // images in an epoch, all ranks: the log lines' 100 %
};

}  // namespace vae
