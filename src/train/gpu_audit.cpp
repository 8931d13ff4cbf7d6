#include "vae_ddp/train/gpu_audit.h"

#include <cstdlib>
#include <set>

#include <fmt/format.h>

#include "vae_ddp/base/errors.h"

#ifdef VAE_TORCH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#include <kineto/ActivityType.h>
#include <torch/csrc/autograd/profiler_kineto.h>
#endif

namespace vae {

int sync_debug_mode_from_env() {
  const char* v = std::getenv("VAE_DDP_SYNC_DEBUG");
  if (!v || !*v) return 0;
  const std::string s = v;
  if (s == "warn") return 1;
  if (s == "error") return 2;
  throw UsageError(fmt::format("VAE_DDP_SYNC_DEBUG={}: expected warn or error", s));
}

#ifdef VAE_TORCH_CUDA

SyncDebugScope::SyncDebugScope(int mode, const torch::Device& device) {
  if (mode == 0 || !device.is_cuda()) return;
  c10::cuda::warning_state().set_sync_debug_mode(mode == 1 ? c10::cuda::SyncDebugMode::L_WARN
                                                           : c10::cuda::SyncDebugMode::L_ERROR);
  active_ = true;
}

SyncDebugScope::~SyncDebugScope() {
  if (active_) c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_DISABLED);
}

namespace {
namespace prof = torch::profiler::impl;
// A c10::Error's text goes on with a backtrace: its first line only.
std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }
const prof::ProfilerConfig& kineto_config() {
  static const prof::ProfilerConfig config(prof::ProfilerState::KINETO);
  return config;
}
const std::set<prof::ActivityType>& gpu_activities() {
  static const std::set<prof::ActivityType> activities{prof::ActivityType::CUDA};
  return activities;
}
}  // namespace

bool GpuOpCounter::available(const torch::Device& device) { return device.is_cuda(); }

void GpuOpCounter::start() {
  try {
    torch::autograd::profiler::prepareProfiler(kineto_config(), gpu_activities());
    torch::autograd::profiler::enableProfiler(kineto_config(), gpu_activities());
    started_ = true;
  } catch (const std::exception& e) {
    error_ = first_line(e.what());
  }
}

GpuOps GpuOpCounter::stop(int64_t steps) {
  GpuOps ops;
  ops.steps = steps;
  if (!started_) {
    ops.error = error_.empty() ? "the profiler did not start" : error_;
    return ops;
  }
  std::unique_ptr<torch::autograd::profiler::ProfilerResult> result;
  try {
    torch::cuda::synchronize();  // every counted operation has run
    result = torch::autograd::profiler::disableProfiler();
  } catch (const std::exception& e) {
    ops.error = first_line(e.what());
    return ops;
  }
  for (const auto& e : result->events()) {
    if (e.deviceType() != c10::DeviceType::CUDA) continue;
    const auto kind = static_cast<libkineto::ActivityType>(e.activityType());
    if (kind == libkineto::ActivityType::CONCURRENT_KERNEL) ++ops.kernels;
    if (kind == libkineto::ActivityType::GPU_MEMCPY) ++ops.copies;
    if (kind == libkineto::ActivityType::GPU_MEMSET) ++ops.memsets;
  }
  return ops;
}

#else  // a libtorch without CUDA: nothing to look at

SyncDebugScope::SyncDebugScope(int, const torch::Device&) {}
SyncDebugScope::~SyncDebugScope() = default;
bool GpuOpCounter::available(const torch::Device&) { return false; }
void GpuOpCounter::start() {}
GpuOps GpuOpCounter::stop(int64_t steps) { return {0, 0, 0, steps, "a libtorch without CUDA"}; }

#endif

std::string GpuOps::describe() const {
  if (!error.empty()) return "GPU operations not counted: " + error;
  const double n = static_cast<double>(std::max<int64_t>(1, steps));
  return fmt::format("{:.1f} GPU operations per step ({:.1f} kernels, {:.1f} copies, {:.1f} memsets), over {} steps",
                     static_cast<double>(kernels + copies + memsets) / n, static_cast<double>(kernels) / n,
                     static_cast<double>(copies) / n, static_cast<double>(memsets) / n, steps);
}

}  // namespace vae
