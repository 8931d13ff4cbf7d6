#include "vae_ddp/app/runtime.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include <fmt/format.h>

#include "vae_ddp/base/errors.h"

namespace vae {

bool cuda_usable() { return torch::cuda::is_available(); }

bool auto_picks_cuda() {
  const char* test = std::getenv("VAE_DDP_TEST_AUTO_DEVICE");
  return (test && std::string(test) == "cuda") || cuda_usable();
}

int gpu_for_local_rank(int local_rank, int visible, const char* cuda_visible_devices, bool shared) {
  // A site that binds one GPU per task leaves each rank one visible device, whatever its rank.
  const std::string named = cuda_visible_devices ? cuda_visible_devices : "";
  if (visible == 1 && !named.empty() && named.find(',') == std::string::npos) return 0;
  if (local_rank < visible) return local_rank;
  if (shared && visible > 0) return local_rank % visible;
  throw UsageError(
      fmt::format("--device cuda: local rank {} needs GPU {}, but this node shows {} GPU(s) (NCCL takes one GPU per "
                  "rank); launch at most {} rank(s) per node, bind one GPU per task (CUDA_VISIBLE_DEVICES), or "
                  "share the GPUs with --backend mpi (gradients staged through host memory: slower)",
                  local_rank, local_rank, visible, visible));
}

torch::Device resolve_device(DeviceKind device, int local_rank, Backend backend) {
  if (device == DeviceKind::kCpu || (device == DeviceKind::kAuto && !auto_picks_cuda())) return torch::kCPU;
  if (!cuda_usable()) {
    throw UsageError(device == DeviceKind::kCuda
                         ? "--device cuda: no usable GPU (this libtorch has no CUDA, or no GPU is visible); "
                           "use --device cpu, or build against a CUDA libtorch (docs/building.md)"
                         : "--device auto: VAE_DDP_TEST_AUTO_DEVICE=cuda makes auto pick CUDA, as on a GPU box; "
                           "a test that means the CPU passes --device cpu");
  }
  const int gpu = gpu_for_local_rank(local_rank, static_cast<int>(torch::cuda::device_count()),
                                     std::getenv("CUDA_VISIBLE_DEVICES"), backend == Backend::kMpi);
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(gpu));
}

int configure_threads(int64_t threads, int local_ranks) {
  int n = static_cast<int>(threads);
  if (n == 0) {
    const int cores = static_cast<int>(std::thread::hardware_concurrency());
    n = std::max(1, cores / std::max(1, local_ranks));
  }
  torch::set_num_threads(n);  // also sets OpenMP's count, which OpenBLAS-openmp follows
  return n;
}

std::string blas_name() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  std::string found;
  while (std::getline(maps, line)) {
    if (line.find("openblas") != std::string::npos) {
      if (line.find("openmp") != std::string::npos) return "openblas-openmp";
      if (line.find("pthread") != std::string::npos) return "openblas-pthread";
      found = "openblas";
    } else if (found.empty() && line.find("libmkl") != std::string::npos) {
      found = "mkl";
    } else if (found.empty() && line.find("/blas/libblas") != std::string::npos) {
      found = "netlib reference BLAS (slow: install libopenblas0-openmp)";
    }
  }
  return found.empty() ? "unknown" : found;
}

void check_out_file(const std::string& path, const std::string& flag) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path dir = fs::path(path).parent_path();
  if (dir.empty()) dir = ".";
  if (!fs::is_directory(dir, ec)) {
    throw UsageError(fmt::format("{} {}: cannot write it: {} is not a directory", flag, path, dir.string()));
  }
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    throw UsageError(fmt::format("{} {}: cannot write it: {}: {}", flag, path, dir.string(), std::strerror(errno)));
  }
  if (fs::is_directory(path, ec)) throw UsageError(fmt::format("{} {}: is a directory", flag, path));
}

void check_out_dir(const std::string& out_dir, const std::string& flag) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path p = fs::absolute(out_dir, ec);
  while (!p.empty() && !fs::exists(p, ec)) {
    if (p == p.parent_path()) break;
    p = p.parent_path();
  }
  if (!fs::is_directory(p, ec)) {
    throw UsageError(fmt::format("{} {}: cannot create it: {} is not a directory", flag, out_dir, p.string()));
  }
  if (::access(p.c_str(), W_OK | X_OK) != 0) {
    throw UsageError(fmt::format("{} {}: not writable: {}: {}", flag, out_dir, p.string(), std::strerror(errno)));
  }
}

std::string move_previous_run_aside(const std::string& out_dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(out_dir, ec)) return "";
  bool has_run = false;
  for (const char* name : {"metrics.csv", "config.yaml", "checkpoints", "samples", "reconstructions"}) {
    has_run = has_run || fs::exists(fs::path(out_dir) / name, ec);
  }
  for (const auto& e : fs::directory_iterator(out_dir, ec)) {
    has_run = has_run || e.path().filename().string().rfind("events.out.tfevents", 0) == 0;
  }
  if (!has_run) return "";
  fs::path dir = fs::absolute(out_dir, ec).lexically_normal();
  if (dir.filename().empty()) dir = dir.parent_path();  // a trailing '/'
  if (dir == fs::current_path(ec) || dir == dir.root_path()) {
    throw UsageError(
        fmt::format("--resume none: {} holds a previous run, and it cannot be moved aside from inside it; "
                    "pass another --out-dir, or move the old run away yourself",
                    out_dir));
  }
  for (int n = 1;; ++n) {
    const fs::path aside = dir.string() + ".previous-" + std::to_string(n);
    if (fs::exists(aside, ec)) continue;
    fs::rename(dir, aside, ec);
    if (ec) {
      throw UsageError(fmt::format("--resume none: {} holds a previous run and cannot be moved to {}: {}", out_dir,
                                   aside.string(), ec.message()));
    }
    return aside.string();
  }
}

void prepare_out_dir(const std::string& out_dir) {
  std::error_code ec;
  for (const char* sub : {"", "/samples", "/reconstructions", "/checkpoints"}) {
    std::filesystem::create_directories(out_dir + sub, ec);
    if (ec) throw UsageError(fmt::format("--out-dir {}: cannot create {}{}: {}", out_dir, out_dir, sub, ec.message()));
  }
  const std::string probe = out_dir + "/.write_test";
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw UsageError(fmt::format("--out-dir {}: not writable: {}", out_dir, std::strerror(errno)));
  ::close(fd);
  ::unlink(probe.c_str());
}

}  // namespace vae
