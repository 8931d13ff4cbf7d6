// A sum across the processes that share one computation. It is what a layer whose
// statistics span the global batch (SyncBatchNorm) needs from the distributed layer, so
// the model depends on this interface and not on the communicators that implement it.
#pragma once

#include <torch/torch.h>

namespace vae {

class SumReducer {
 public:
  virtual ~SumReducer() = default;
  // In place: every process ends with the elementwise sum of every process's `t`.
  // Collective: every process calls it in the same order.
  virtual void allreduce_sum(torch::Tensor& t) = 0;
};

}  // namespace vae
