// The process's execution environment: device, threads, BLAS, the output directory.
#pragma once

#include <string>

#include <torch/torch.h>

#include "vae_ddp/base/config.h"

namespace vae {

// True when libtorch has CUDA and at least one GPU is visible.
bool cuda_usable();
// auto -> cuda when cuda_usable(), else cpu. A CUDA device is GPU `local_rank` (one rank
// per GPU). Throws UsageError for --device cuda without a usable GPU, or with more ranks
// on the node than GPUs.
torch::Device resolve_device(DeviceKind device, int local_rank = 0);

// Sets libtorch's intra-op threads (and OpenMP's, which OpenBLAS follows) to `threads`,
// or to cores / local_ranks when threads == 0. Returns the number set.
int configure_threads(int64_t threads, int local_ranks);

// The BLAS library this process has loaded, e.g. "openblas-openmp" or "netlib (slow!)".
std::string blas_name();

// Creates out_dir and its subfolders and checks that a file can be written there.
// Throws UsageError naming --out-dir when it cannot.
void prepare_out_dir(const std::string& out_dir);

}  // namespace vae
