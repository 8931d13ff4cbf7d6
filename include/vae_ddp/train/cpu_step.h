// The CPU fast path of a training step: the VAE's forward and backward written out by
// hand, its GEMMs on oneDNN (cpu_gemm.h) with bias and ReLU fused in, the elementwise
// work in a few vectorized ATen passes, and no autograd graph. It computes exactly the
// gradient autograd would (tested against it), faster.
#pragma once

#include <cstdint>

#include <torch/torch.h>

#include "vae_ddp/base/profiler.h"
#include "vae_ddp/model/loss.h"
#include "vae_ddp/model/model.h"

namespace vae {

class CpuStep {
 public:
  // `model` must be on the CPU, fp32, with every parameter's .grad() defined and
  // contiguous (FlatParameters views).
  explicit CpuStep(VAE& model);
  // True for the models it implements: ReLU, no BatchNorm, no dropout, unconditional,
  // Bernoulli (BCE) decoder. Other variants train through autograd.
  static bool supports(const ModelOptions& o);

  // For rows x [B, 784] and noise eps [B, latent]: writes (overwrites) into each
  // parameter's .grad() the gradient of  sum_rows (bce + beta * kld) / global_batch,
  // and returns the per-row terms (each [B]).
  // `profiler`, when given, times the forward and backward halves.
  LossTerms run(const torch::Tensor& x, const torch::Tensor& eps, double beta, int64_t global_batch,
                Profiler* profiler = nullptr);

 private:
  VAEImpl::Layers layers_;
  int64_t latent_;
};

}  // namespace vae
