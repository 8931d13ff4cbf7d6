#include "vae_ddp/parallel/host_staging.h"

namespace vae {

torch::Tensor HostStaging::to_host(const torch::Tensor& t) {
  if (!needs_staging(t)) return t;
  const bool pinned = t.is_cuda();
  torch::Tensor& buffer = buffers_[{t.scalar_type(), pinned}];
  if (!buffer.defined() || buffer.numel() < t.numel()) {
    buffer = torch::empty({t.numel()}, torch::TensorOptions().dtype(t.scalar_type()).pinned_memory(pinned));
  }
  torch::Tensor host = buffer.narrow(0, 0, t.numel()).view(t.sizes());
  // From a GPU: a copy on the current stream, then a wait for it (MPI reads the host buffer).
  // The previous call's copy back was queued on that same stream, so it has finished reading
  // the buffer before this copy writes it.
  host.copy_(t);
  return host;
}

void HostStaging::from_host(torch::Tensor& t, const torch::Tensor& host) {
  if (host.data_ptr() == t.data_ptr()) return;  // reduced in place: nothing was staged
  t.copy_(host, /*non_blocking=*/t.is_cuda());
}

}  // namespace vae
