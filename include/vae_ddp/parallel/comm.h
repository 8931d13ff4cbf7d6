// The gradient communicator: sums and broadcasts tensors across ranks on the device
// that holds them. Backends: NCCL for CUDA tensors, MPI for CPU tensors, and "local"
// for a single process (every call is the identity).
//
// Calls are collective: every rank makes the same calls in the same order. A call that
// does not complete within the timeout (a peer stopped answering) or an NCCL error ends
// the whole job with one error line (watchdog thread -> ncclCommAbort / MPI_Abort).
#pragma once

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>

#include <torch/torch.h>

#include "vae_ddp/base/config.h"  // Backend
#include "vae_ddp/base/reducer.h"
#include "vae_ddp/parallel/world.h"

namespace vae {

class Communicator : public SumReducer {
 public:
  virtual ~Communicator() = default;
  // In place: every rank ends with the elementwise sum of every rank's `t`.
  // `t` must be contiguous, on this communicator's device, float32/float64/int64.
  void allreduce_sum(torch::Tensor& t) override = 0;
  // In place: every rank ends with rank `root`'s `t`.
  virtual void broadcast(torch::Tensor& t, int root) = 0;
  // allreduce_sum for a stream being captured into a CUDA graph: the collective alone,
  // without the events the watchdog follows (watch_begin/watch_end then bracket the
  // graph's replays instead). Elsewhere the same as allreduce_sum.
  virtual void allreduce_sum_captured(torch::Tensor& t) { allreduce_sum(t); }
  // Around work queued on the current stream that holds a collective the watchdog cannot
  // see (a graph's replay): a deadline for the whole of it, as for one collective.
  virtual void watch_begin() {}
  virtual void watch_end(const char* what) { (void)what; }
  virtual std::string name() const = 0;  // "nccl", "mpi" or "local"
  const World& world() const { return world_; }

 protected:
  explicit Communicator(World w) : world_(std::move(w)) {}
  World world_;
};

// `backend`: auto picks NCCL for a CUDA device, MPI for
// CPU, and "local" when the world is one process without a launcher (NCCL with world 1
// still builds a real NCCL communicator when asked for by name). Throws UsageError when
// the backend does not fit the device or is not in this build.
std::unique_ptr<Communicator> make_communicator(const World& w, Backend backend, torch::Device device,
                                                std::chrono::seconds timeout);

// True when this binary was built with the NCCL backend.
bool built_with_nccl();
// The NCCL library's version as "2.x.y", or "" without NCCL.
std::string nccl_version();

// A backend's code for the dtype of `t`: one of the three dtypes the collectives carry.
// Throws std::invalid_argument naming `backend` for any other.
template <typename Code>
Code dtype_code(const torch::Tensor& t, const char* backend, Code f32, Code f64, Code i64) {
  switch (t.scalar_type()) {
    case torch::kFloat32: return f32;
    case torch::kFloat64: return f64;
    case torch::kInt64: return i64;
    default:
      throw std::invalid_argument(std::string(backend) + " backend: unsupported dtype " +
                                  std::string(t.dtype().name()));
  }
}

// Backend factories, one per source file.
std::unique_ptr<Communicator> make_local_communicator(const World& w);
std::unique_ptr<Communicator> make_mpi_communicator(const World& w, std::chrono::seconds timeout);
std::unique_ptr<Communicator> make_nccl_communicator(const World& w, torch::Device device,
                                                     std::chrono::seconds timeout);

}  // namespace vae
