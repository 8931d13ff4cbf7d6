#include "vae_ddp/train/step.h"

#include <fmt/format.h>

#include "vae_ddp/base/errors.h"
#include "vae_ddp/train/cpu_gemm.h"
#include "vae_ddp/train/cpu_step.h"
#include "vae_ddp/train/device_step.h"

namespace vae {

namespace {

// Any model variant, device and precision: libtorch's autograd, under autocast for bf16
// and fp16, with the loss scaled for fp16.
class AutogradStep final : public Step {
 public:
  AutogradStep(VAE& model, torch::Device device, Precision precision, bool mse, const LossScaler& scaler,
               Profiler& profiler)
      : model_(model), device_(device), precision_(precision), mse_(mse), scaler_(scaler), profiler_(profiler) {}

  StepResult run(const Batch& b, const torch::Tensor& beta) override {
    StepResult r;
    {
      Profiler::Scope timed(profiler_, Phase::kForward);
      AutocastGuard autocast(device_, precision_);
      auto out = model_->forward(b.x, b.eps, b.extras);
      r.terms = loss_terms(out.logits, b.x, out.mu, out.logvar, mse_);
      r.loss = objective(r.terms, beta, b.global_rows);
    }
    Profiler::Scope timed(profiler_, Phase::kBackward);
    scaler_.scale(r.loss).backward();
    return r;
  }

 private:
  VAE& model_;
  torch::Device device_;
  Precision precision_;
  bool mse_;
  const LossScaler& scaler_;
  Profiler& profiler_;
};

// The CPU fast path (cpu_step.h) for the models it implements, in fp32 or with bf16 GEMMs.
// It reads beta on the host: on the CPU that costs no wait.
class CpuFastStep final : public Step {
 public:
  CpuFastStep(VAE& model, CpuStepOptions options, Profiler& profiler) : impl_(model, options), profiler_(profiler) {}

  StepResult run(const Batch& b, const torch::Tensor& beta) override {
    StepResult r;
    r.terms = impl_.run(b.x, b.eps, beta.item<double>(), b.global_rows, &profiler_);
    r.loss = objective(r.terms, beta, b.global_rows);
    return r;
  }
  bool overwrites_gradients() const override { return true; }

 private:
  CpuStep impl_;
  Profiler& profiler_;
};

// Why the CPU fast path does not run this configuration ("" when it does).
std::string why_not_fast(const Config& c, bool cuda) {
  if (cuda) return "a CUDA device";
  if (c.precision != Precision::kFP32 && c.precision != Precision::kBF16) return "--precision " + name_of(c.precision);
  return CpuStep::unsupported(model_options(c));
}

}  // namespace

StepPlan plan_step(const Config& c, bool cuda) {
  const std::string no_fast = why_not_fast(c, cuda), no_graph = DeviceStep::not_covered(c, cuda);
  const char* graph = cuda ? "CUDA graph (the whole step: explicit GEMMs, fused Adam; docs/distributed.md)"
                           : "device step, run eagerly (the CUDA graph's sequence on a CPU)";
  switch (c.step) {
    case StepKind::kAutograd: return {StepKind::kAutograd, "autograd (--step autograd)"};
    case StepKind::kCpuFast:
      if (!no_fast.empty())
        throw UsageError("--step cpu-fast does not cover " + no_fast + "; --step auto picks for you");
      return {StepKind::kCpuFast, "CPU fast path"};
    case StepKind::kGraph:
      if (!no_graph.empty()) {
        throw UsageError(
            "--step graph does not cover " + no_graph +
            "; it covers ReLU, no BatchNorm, no dropout, unconditional, BCE, --binarize none, with libtorch "
            "2.4 or later; --step auto picks for you");
      }
      return {StepKind::kGraph, graph};
    case StepKind::kAuto: break;
  }
  if (!cuda) {
    if (no_fast.empty()) return {StepKind::kCpuFast, "CPU fast path"};
    return {StepKind::kAutograd, fmt::format("autograd (the CPU fast path does not cover {})", no_fast)};
  }
  if (no_graph.empty()) return {StepKind::kGraph, graph};
  return {StepKind::kAutograd, fmt::format("autograd (the CUDA graph step does not cover {})", no_graph)};
}

StepChoice choose_step(const Config& c, VAE& model, torch::Device device, Precision precision, const LossScaler& scaler,
                       Profiler& profiler) {
  Config resolved = c;
  resolved.precision = precision;
  StepPlan plan = plan_step(resolved, device.is_cuda());
  if (plan.kind == StepKind::kCpuFast) {
    CpuStepOptions options;
    options.bf16 = precision == Precision::kBF16;
    const char* bf16 = !options.bf16 ? "" : cpu::gemm_bf16_native() ? ", bf16 matmuls" : ", bf16 emulated";
    return {std::make_unique<CpuFastStep>(model, options, profiler), plan.kind,
            fmt::format("CPU fast path ({} GEMMs{})", cpu::gemm_library(), bf16)};
  }
  if (plan.kind == StepKind::kGraph) return {nullptr, plan.kind, plan.description};
  return {std::make_unique<AutogradStep>(model, device, precision, c.recon_loss == ReconLoss::kMse, scaler, profiler),
          plan.kind, plan.description};
}

}  // namespace vae
