// How a training step runs (--step): a forward and backward on this rank's rows behind one
// interface, with its implementations side by side in step.cpp (autograd: any model
// variant, any device, any precision; the CPU fast path, cpu_step.h: fp32, or bf16 GEMMs),
// or the whole step, optimizer included, as the device step (device_step.h: a CUDA graph on
// a GPU). The trainer picks one at start (choose_step) and says which, and why, in the
// start-up table.
#pragma once

#include <memory>
#include <string>

#include <torch/torch.h>

#include "vae_ddp/base/config.h"
#include "vae_ddp/base/profiler.h"
#include "vae_ddp/model/loss.h"
#include "vae_ddp/model/model.h"
#include "vae_ddp/train/amp.h"
#include "vae_ddp/train/batch.h"

namespace vae {

// What a step produced on this rank.
struct StepResult {
  torch::Tensor loss;  // []: the objective of this rank's rows (sum of bce + beta * kld over
                       // them / the global batch's rows), on the device
  LossTerms terms;     // per row, each [mine]
};

class Step {
 public:
  virtual ~Step() = default;
  // Adds d(loss)/d(parameters), times the loss scale under fp16, to the model's gradients
  // (zeroed by the caller), or writes it there (see overwrites_gradients()). `beta`: [1] on
  // the device.
  virtual StepResult run(const Batch& batch, const torch::Tensor& beta) = 0;
  // True when run() writes every gradient rather than adding to it: the caller then need
  // not zero them first (one pass over the gradients fewer per step).
  virtual bool overwrites_gradients() const { return false; }
};

struct StepPlan {
  StepKind kind;            // never kAuto
  std::string description;  // e.g. "CPU fast path (oneDNN GEMMs)" or "autograd (--precision fp16)"
};

// The step --step asks for, `auto` resolved: on a CPU the fast path where it covers the
// model, on CUDA the device step (a CUDA graph) where it does, else autograd, with the
// reason. Throws UsageError when --step names one that does not cover the configuration
// (checked before MPI starts, and again by choose_step).
StepPlan plan_step(const Config& c, bool cuda);

struct StepChoice {
  std::unique_ptr<Step> step;  // null for the device step, which the trainer builds (it owns the whole step)
  StepKind kind;
  std::string description;
};

// The implementation plan_step picks. `model`'s gradients must be FlatParameters views;
// `scaler` and `profiler` must outlive the step.
StepChoice choose_step(const Config& c, VAE& model, torch::Device device, Precision precision, const LossScaler& scaler,
                       Profiler& profiler);

}  // namespace vae
