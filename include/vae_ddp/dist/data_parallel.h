// What keeps the replicas on every rank identical: the data order each rank takes,
// one flat gradient buffer reduced once per step, the start-up parameter broadcast, and
// a parameter checksum compared across ranks.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "vae_ddp/dist/comm.h"
#include "vae_ddp/dist/world.h"

namespace vae {

// --- sharding (world-size invariance) ---
// The permutation of [0, n) used in `epoch` (1-based): a function of (seed, epoch) only,
// identical on every rank.
torch::Tensor epoch_permutation(int64_t n, int64_t seed, int64_t epoch);
// Global batch b is rows [b*B, min((b+1)*B, n)) of the permutation; the last one may be
// partial. Rank r of W takes the global batch's rows r, r+W, r+2W, ... of `global`
// (dim 0), possibly none.
torch::Tensor shard_rows(const torch::Tensor& global, int rank, int world);
// How many rows shard_rows gives rank r of a global batch of `rows`.
int64_t shard_size(int64_t rows, int rank, int world);

// --- one contiguous gradient buffer ---
// Owns every parameter's gradient: each p.grad() is a view into it (like DDP's
// gradient_as_bucket_view), so autograd accumulates straight into the buffer and one
// all-reduce per step sums them all. A few control slots ride along in the same
// all-reduce, so per-step flags cost no extra collective.
class GradBuffer {
 public:
  enum Slot : int64_t {
    kFoundInf = 0,  // fp16: how many ranks saw inf/NaN in their gradients
    kNextBeta = 1,  // rank 0 writes the next step's beta, the others 0: the sum broadcasts it
    kStop = 2,      // ranks that received a stop signal (preemption): all stop together
    kNonFinite = 3, // fp32/bf16: ranks whose loss was NaN or inf
    kSlots = 4,
  };

  // `params` must be float32 and contiguous, all on one device.
  explicit GradBuffer(const std::vector<torch::Tensor>& params);

  torch::Tensor& flat() { return flat_; }   // [numel + kSlots]
  torch::Tensor grads() const { return flat_.slice(/*dim=*/0, 0, numel_); }  // [numel]
  torch::Tensor slot(Slot s) const { return flat_.slice(/*dim=*/0, numel_ + s, numel_ + s + 1); }  // [1]
  int64_t numel() const { return numel_; }
  // Zeroes gradients and slots (one memset); the views stay attached.
  void zero() { flat_.zero_(); }

 private:
  torch::Tensor flat_;
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
