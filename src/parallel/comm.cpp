#include "vae_ddp/parallel/comm.h"

#include <fmt/format.h>

#include "vae_ddp/base/errors.h"

namespace vae {

namespace {

class LocalCommunicator : public Communicator {
 public:
  explicit LocalCommunicator(const World& w) : Communicator(w) {}
  void allreduce_sum(torch::Tensor&) override {}
  void broadcast(torch::Tensor&, int) override {}
  std::string name() const override { return "local"; }
};

}  // namespace

std::unique_ptr<Communicator> make_local_communicator(const World& w) { return std::make_unique<LocalCommunicator>(w); }

std::unique_ptr<Communicator> make_communicator(const World& w, Backend backend, torch::Device device,
                                                std::chrono::seconds timeout) {
  const bool cuda = device.is_cuda();
  // One GPU reduces nothing: it needs no NCCL (unless NCCL is asked for by name).
  if (cuda && w.size == 1 && backend == Backend::kAuto) return make_local_communicator(w);
  if (backend == Backend::kNccl || (backend == Backend::kAuto && cuda)) {
    if (!cuda)
      throw UsageError("--backend nccl: NCCL reduces CUDA tensors; use --device cuda, or --backend mpi on CPU");
    if (!built_with_nccl()) {
      throw UsageError(
          "--backend nccl: this vae_ddp was built without NCCL (configure with the CUDA toolkit "
          "or NCCL_ROOT; docs/building.md)");
    }
    return make_nccl_communicator(w, device, timeout);
  }
  // mpi (or auto on CPU); with CUDA tensors it stages them through pinned host memory
  // (host_staging.h), so that several ranks can share one GPU.
  if (!w.launched) return make_local_communicator(w);
  return make_mpi_communicator(w, timeout);
}

}  // namespace vae
