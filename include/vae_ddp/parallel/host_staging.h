// The MPI backend's way to reduce a tensor the MPI library cannot take as it is: a CUDA
// tensor (several ranks sharing one GPU, where NCCL refuses two ranks on one device), or a
// non-contiguous CPU view. The values go to a contiguous host buffer, kept between calls
// and pinned for a CUDA tensor (both copies then run at the bus's full speed), MPI works on
// that buffer in place, and the result is copied back.
//
// Copying a CUDA tensor out waits for the GPU (MPI needs the values on the host): the
// shared-GPU backend syncs once per collective, which NCCL, one GPU per rank, does not.
#pragma once

#include <map>
#include <utility>

#include <torch/torch.h>

namespace vae {

class HostStaging {
 public:
  // A contiguous host tensor holding `t`'s values (a view of a kept buffer, valid until the
  // next call); `t` itself when it is already a contiguous CPU tensor.
  torch::Tensor to_host(const torch::Tensor& t);
  // Copies `host` (what to_host returned, after the collective) back into `t`: queued on the
  // current stream for a CUDA tensor (the pinned buffer outlives the copy), at once on the CPU.
  static void from_host(torch::Tensor& t, const torch::Tensor& host);
  // True when to_host copies (a CUDA or a non-contiguous tensor).
  static bool needs_staging(const torch::Tensor& t) { return !t.device().is_cpu() || !t.is_contiguous(); }

 private:
  std::map<std::pair<torch::ScalarType, bool>, torch::Tensor> buffers_;  // (dtype, pinned) -> the largest yet
};

}  // namespace vae
