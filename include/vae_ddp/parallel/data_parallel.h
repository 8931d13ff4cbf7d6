// What keeps the replicas on every rank identical: the data order each rank takes, flat
// parameter and gradient buffers (the gradients reduced once per step), the start-up
// parameter broadcast, and a parameter checksum compared across ranks.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "vae_ddp/parallel/comm.h"
#include "vae_ddp/parallel/world.h"

namespace vae {

// --- sharding (world-size invariance) ---
// An epoch of `n` images in global batches of `batch`: global batch `step` holds rows
// [step*batch, min((step+1)*batch, n)) of the epoch's permutation; the last may be partial.
inline int64_t steps_per_epoch(int64_t n, int64_t batch) { return (n + batch - 1) / batch; }
inline int64_t global_batch_rows(int64_t n, int64_t batch, int64_t step) { return std::min(batch, n - step * batch); }
// The permutation of [0, n) used in `epoch` (1-based): a function of (seed, epoch) only,
// identical on every rank.
torch::Tensor epoch_permutation(int64_t n, int64_t seed, int64_t epoch);
// Rank r of W takes the global batch's rows r, r+W, r+2W, ... of `global`
// (dim 0), possibly none.
torch::Tensor shard_rows(const torch::Tensor& global, int rank, int world);
// How many rows shard_rows gives rank r of a global batch of `rows`.
int64_t shard_size(int64_t rows, int rank, int world);

// --- the parameters' storage: one flat buffer for the values, one for the gradients ---
// The one owner of the parameters' memory. Each parameter becomes a view of params() and
// each p.grad() a view of grads() (like DDP's gradient_as_bucket_view): autograd
// accumulates straight into the buffer, one all-reduce per step sums every gradient, and
// the optimizer (FlatAdam) and checkpoints read and update the same memory, so nothing
// needs re-attaching after a restore. A few control slots ride along after the gradients,
// so per-step flags cost no extra collective.
class FlatParameters {
 public:
  enum Slot : int64_t {
    kNextBeta = 0,   // rank 0 writes the next step's beta, the others 0: the sum broadcasts it
    kStop = 1,       // ranks that received a stop signal (preemption): all stop together
    kNonFinite = 2,  // fp32/bf16: ranks whose loss was NaN or inf (fp16: the summed gradient tells)
    kSlots = 3,
  };

  // `params` must be float32 and contiguous, all on one device. Their values move into
  // the buffer; the tensors stay the same objects (modules keep working).
  explicit FlatParameters(const std::vector<torch::Tensor>& params);

  torch::Tensor params() const { return params_; }    // [numel]
  torch::Tensor& flat() { return grads_and_slots_; }  // [numel + kSlots]: what the step all-reduces
  torch::Tensor grads() const { return grads_and_slots_.slice(/*dim=*/0, 0, numel_); }                        // [numel]
  torch::Tensor slot(Slot s) const { return grads_and_slots_.slice(/*dim=*/0, numel_ + s, numel_ + s + 1); }  // [1]
  int64_t numel() const { return numel_; }
  // Zeroes gradients and slots (one memset); the views stay attached.
  void zero_grads() { grads_and_slots_.zero_(); }
  // Zeroes the slots alone, for a step that overwrites every gradient.
  void zero_slots() { grads_and_slots_.slice(/*dim=*/0, numel_).zero_(); }

 private:
  torch::Tensor params_, grads_and_slots_;
  int64_t numel_ = 0;
};

// --- replica agreement ---
// Overwrites every rank's parameters with rank 0's (one flat broadcast).
void broadcast_parameters(const std::vector<torch::Tensor>& params, Communicator& comm);
// A position-sensitive sum of the parameters' bit patterns: equal exactly when the
// parameters are (up to astronomically unlikely collisions). Reads one value to the host.
int64_t parameter_checksum(const std::vector<torch::Tensor>& params);
// Compares the checksums across ranks; when they differ, rank 0 prints "ranks diverged
// ... <when>" and every rank throws CollectiveFailure (exit 1). Collective.
void check_replicas_agree(const World& w, const std::vector<torch::Tensor>& params, const std::string& when);

}  // namespace vae
