// Checkpoints: model, optimizer, progress, RNG state and the config, in one file that
// is written atomically (temp file, fsync, rename, fsync of the directory), so a crash
// at any moment leaves either the old or the new file, never a broken one.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

#include "vae_ddp/base/config.h"
#include "vae_ddp/model/model.h"
#include "vae_ddp/train/amp.h"
#include "vae_ddp/train/flat_adam.h"

namespace vae {

struct TrainProgress {
  int64_t epoch = 0;        // epochs completed
  int64_t global_step = 0;  // optimizer steps completed: the KL schedule's position
  ScalerState scaler;       // fp16 loss scale; carried through fp32/bf16 runs unchanged
  // A run stopped mid-epoch (preemption): the steps of epoch + 1 already done, and their
  // sums over all ranks (objective, bce, kld, images) and training seconds, so the resumed
  // epoch continues at the next step and reports the whole epoch.
  int64_t step_in_epoch = 0;
  std::array<double, 4> partial_sums{};
  double partial_seconds = 0;
};

// Writes `path` atomically. Throws std::runtime_error naming the path on I/O failure
// (the previous file at `path`, if any, is left as it was).
void save_checkpoint(const std::string& path, VAE& model, const FlatAdam& adam, const TrainProgress& progress,
                     const Config& config, const std::function<void()>& before_rename = {});

// A checkpoint read into memory. Throws UsageError naming the file when it is missing,
// truncated, corrupt or not a vae_ddp checkpoint.
class Checkpoint {
 public:
  // Tensors are loaded onto `device`.
  explicit Checkpoint(const std::string& path, torch::Device device = torch::kCPU);
  // From the file's bytes, read elsewhere (rank 0 reads, MPI broadcasts); `path` names
  // it in messages.
  Checkpoint(const std::string& path, const std::string& bytes, torch::Device device);

  const std::string& path() const { return path_; }
  const Config& config() const { return config_; }
  const TrainProgress& progress() const { return progress_; }

  // Copies the weights into `model`'s parameters, in place (their storage is kept).
  // Throws UsageError naming the file when the model's architecture differs.
  void restore_model(VAE& model) const;
  // Replaces `adam`'s moments and step count (format 3's own keys, or format 2's
  // torch::optim layout). Throws UsageError naming the file when they do not fit.
  void restore_optimizer(FlatAdam& adam) const;
  // Restores the default CPU generator to its state at save time.
  void restore_rng() const;

 private:
  std::string path_;
  int64_t version_ = 0;  // the file's format_version
  Config config_;
  TrainProgress progress_;
  std::shared_ptr<torch::serialize::InputArchive> archive_;
};

// The model stored in a checkpoint, on `device`, in eval mode.
VAE open_model(const Checkpoint& ckpt, torch::Device device);

// Where a training run resumes from: the checkpoint's path and bytes, read and verified.
struct ResumeSource {
  std::string path, bytes;  // path "" = start afresh
  std::string note;         // a warning to print (a fallback was taken), or ""
};
// --resume (none | auto | a path) for `c`: auto takes out_dir's checkpoints/last.pt or,
// when that is damaged, the newest epoch_NNN.pt that verifies (and says so in `note`); it
// never starts afresh over damaged checkpoints. Throws UsageError naming the file otherwise.
ResumeSource find_resume(const Config& c);

// The epoch_NNN.pt files in `dir` as (epoch, path), newest first; none if `dir` is absent.
std::vector<std::pair<int64_t, std::string>> epoch_checkpoints(const std::string& dir);
// Deletes the epoch_NNN.pt files in `dir` beyond the newest `keep` (0 keeps them all);
// last.pt and other files stay.
void prune_checkpoints(const std::string& dir, int64_t keep);

// The whole file. Throws UsageError naming it when it cannot be read.
std::string read_checkpoint_bytes(const std::string& path);

// Throws UsageError naming the checkpoint when `config` asks for another architecture
// than the checkpoint holds (the weights would not fit).
void check_resumable(const Checkpoint& ckpt, const Config& config);

// Throws UsageError naming the flag and the checkpoint when `config` changes a setting a
// resumed run cannot change: the data (dataset, train-limit, binarize), the batch size and
// seed (the order of the batches and the position inside the epoch depend on them), the
// objective (recon-loss). What `vae_ddp train` checks before it resumes a run.
void check_unchanged_on_resume(const Checkpoint& ckpt, const Config& config);

// A setting of a resumed run that differs from the run that wrote the checkpoint.
struct SettingChange {
  std::string name, was, now;  // flag name without "--"; values as config.yaml writes them
};
// The settings that change what is trained from here on (lr, the KL schedule, precision,
// the optimizer, epochs, ...): they may change on resume, and are reported. Settings that only
// shape the run itself (out-dir, logging, threads, device, world, step, ...) are left out.
std::vector<SettingChange> changed_settings(const Config& was, const Config& now);

}  // namespace vae
