// The CPU fast path of a training step: the VAE's forward and backward written out by
// hand, its GEMMs on oneDNN (cpu_gemm.h) with bias and ReLU fused in, the elementwise
// work in a few vectorized ATen passes, and no autograd graph. It computes exactly the
// gradient autograd would (tested against it), faster.
#pragma once

#include <cstdint>
#include <string>

#include <torch/torch.h>

#include "vae_ddp/base/profiler.h"
#include "vae_ddp/model/loss.h"
#include "vae_ddp/model/model.h"

namespace vae {

struct CpuStepOptions {
  // The GEMMs multiply in bf16 and sum in fp32 (cpu_gemm.h); weights, gradients, the
  // activations between the GEMMs and the elementwise work stay fp32.
  bool bf16 = false;
  // Fewer rows than this per thread, and the GEMMs run short of their speed: the rows are
  // then not split (see run()).
  int64_t rows_per_chunk = 32;
};

class CpuStep {
 public:
  // `model` must be on the CPU, fp32, with every parameter's .grad() defined and
  // contiguous (FlatParameters views).
  explicit CpuStep(VAE& model, CpuStepOptions options = {});
  // True for the models it implements: ReLU, no BatchNorm, no dropout, unconditional,
  // Bernoulli (BCE) decoder. Other variants train through autograd.
  static bool supports(const ModelOptions& o) { return unsupported(o).empty(); }
  // The flag of the first variant it does not implement ("--batch-norm"), "" when none; the
  // device step (device_step.h) implements the same variants.
  static std::string unsupported(const ModelOptions& o);

  // For rows x [B, 784] and noise eps [B, latent]: writes (overwrites) into each
  // parameter's .grad() the gradient of  sum_rows (bce + beta * kld) / global_batch,
  // and returns the per-row terms (each [B]).
  // With T intra-op threads and at least rows_per_chunk rows per thread, the rows are split
  // into T chunks that run the whole step at once, one per thread, each GEMM on one core;
  // the chunks' weight gradients are then summed. With fewer rows, one chunk runs and
  // oneDNN splits each GEMM across the threads instead.
  // `profiler`, when given, times the forward and backward halves (of the first chunk,
  // plus the summing of the gradients).
  LossTerms run(const torch::Tensor& x, const torch::Tensor& eps, double beta, int64_t global_batch,
                Profiler* profiler = nullptr);

  // How many chunks `rows` rows are split into on `threads` threads (1: not split).
  static int64_t chunks_for(int64_t rows, int64_t threads, int64_t rows_per_chunk = CpuStepOptions{}.rows_per_chunk);

 private:
  // The gradient of each layer's weight and bias, two tensors per layer, layers in the
  // order encoder, head, decoder.
  using LayerGrads = std::vector<torch::Tensor>;

  // The whole step for one chunk of rows; its gradients go to `grads`. `cb` = beta / global
  // batch, `c` = 1 / global batch.
  LossTerms run_rows(const torch::Tensor& x, const torch::Tensor& eps, double cb, double c, const LayerGrads& grads,
                     Profiler& prof);
  // Makes (once) the scratch gradients of chunks 1 .. chunks-1.
  void add_scratch(int64_t chunks);

  VAEImpl::Layers layers_;
  int64_t latent_;
  CpuStepOptions options_;
  std::vector<LayerGrads> grads_;  // [0]: the parameters' .grad()s; [t > 0]: scratch
};

}  // namespace vae
