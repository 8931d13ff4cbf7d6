#include "vae_ddp/base/profiler.h"

#include <fmt/format.h>

namespace vae {

namespace {
constexpr const char* kNames[] = {"data", "forward", "backward", "all-reduce", "optimizer"};
}

Profiler::Scope::Scope(Profiler& p, Phase phase) : p_(p), phase_(phase) {
  if (!p_.enabled_) return;
  p_.sync();
  t0_ = std::chrono::steady_clock::now();
}

Profiler::Scope::~Scope() {
  if (!p_.enabled_) return;
  p_.sync();
  p_.seconds_[static_cast<size_t>(phase_)] +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
}

void Profiler::sync() const {
  if (device_.is_cuda()) torch::cuda::synchronize(device_.index());
}

std::string Profiler::report_and_reset(int64_t steps) {
  double total = 0;
  for (double s : seconds_) total += s;
  std::string line =
      fmt::format("profile ({} steps, {:.3f} ms/step):", steps, 1e3 * total / std::max<int64_t>(1, steps));
  for (size_t i = 0; i < seconds_.size(); ++i) {
    line += fmt::format("  {} {:.3f} ms ({:.0f}%)", kNames[i], 1e3 * seconds_[i] / std::max<int64_t>(1, steps),
                        total > 0 ? 100.0 * seconds_[i] / total : 0.0);
  }
  seconds_.fill(0);
  return line;
}

}  // namespace vae
