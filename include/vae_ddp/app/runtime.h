// The process's execution environment: device, threads, BLAS, the output directory.
#pragma once

#include <string>

#include <torch/torch.h>

#include "vae_ddp/base/config.h"

namespace vae {

// True when libtorch has CUDA and at least one GPU is visible.
bool cuda_usable();
// What `--device auto` picks: CUDA when cuda_usable(), or when the test suite's
// VAE_DDP_TEST_AUTO_DEVICE=cuda stands for a GPU box (ctest sets it for every CPU test, so
// one that forgets `--device cpu` fails here as it would on a GPU machine).
bool auto_picks_cuda();
// The GPU (an index among the `visible` ones) that local rank `local_rank` uses: its own
// (one rank per GPU), or device 0 where a per-task binding left one GPU visible
// (`cuda_visible_devices`, CUDA_VISIBLE_DEVICES, names one device), or, `shared` (the MPI
// backend), local_rank % visible. Throws UsageError when the node shows fewer GPUs than its
// ranks need.
int gpu_for_local_rank(int local_rank, int visible, const char* cuda_visible_devices, bool shared = false);
// auto -> cuda when auto_picks_cuda(), else cpu; a CUDA device is gpu_for_local_rank's
// (ranks share GPUs under `--backend mpi`). Throws UsageError for CUDA without a usable GPU,
// or with more ranks on the node than GPUs for NCCL.
torch::Device resolve_device(DeviceKind device, int local_rank = 0, Backend backend = Backend::kAuto);

// Sets libtorch's intra-op threads (and OpenMP's, which OpenBLAS follows) to `threads`,
// or to cores / local_ranks when threads == 0. Returns the number set.
int configure_threads(int64_t threads, int local_ranks);

// The BLAS library this process has loaded, e.g. "openblas-openmp" or "netlib (slow!)".
std::string blas_name();

// Checks that a file can be written at `path` (named by `flag` in the error): its folder
// exists and is writable. Throws UsageError, exit 2, before any work.
void check_out_file(const std::string& path, const std::string& flag);

// Checks, creating nothing, that out_dir can be made and written: it is a writable
// directory, or its nearest existing parent is. Throws UsageError naming --out-dir.
void check_out_dir(const std::string& out_dir, const std::string& flag = "--out-dir");

// Creates out_dir and its subfolders, once the run can start, and checks that a file can
// be written there. Throws UsageError naming --out-dir when it cannot.
void prepare_out_dir(const std::string& out_dir);

// A fresh start (--resume none) in an out_dir that holds a run's files: out_dir is renamed,
// whole, to out_dir.previous-N (the first N free) and the new name returned; "" when out_dir
// holds none of a run's files. Deletes nothing. Throws UsageError where it cannot be moved.
std::string move_previous_run_aside(const std::string& out_dir);

}  // namespace vae
