// --profile: where a training step's time goes, per phase, summed over an epoch.
// On CUDA each phase boundary synchronizes the device so the times are the phases' own
// (profiling therefore slows a GPU run a little); on CPU the work is synchronous anyway.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <string>

#include <torch/torch.h>

namespace vae {

enum class Phase { kData = 0, kForward, kBackward, kAllReduce, kOptimizer, kCount };

class Profiler {
 public:
  Profiler(bool enabled, torch::Device device) : enabled_(enabled), device_(device) {}

  // Times the enclosing block as `phase` (nothing when disabled).
  class Scope {
   public:
    Scope(Profiler& p, Phase phase);
    ~Scope();
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    Profiler& p_;
    Phase phase_;
    std::chrono::steady_clock::time_point t0_;
  };

  bool enabled() const { return enabled_; }
  // "data 0.12 s (8%) · forward … ms/step": one line for `steps` steps; then resets.
  std::string report_and_reset(int64_t steps);
  double seconds(Phase phase) const { return seconds_[static_cast<size_t>(phase)]; }

 private:
  void sync() const;

  bool enabled_;
  torch::Device device_;
  std::array<double, static_cast<size_t>(Phase::kCount)> seconds_{};
};

}  // namespace vae
