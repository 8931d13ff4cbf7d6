#include "vae_ddp/app/version.h"

#include <fmt/format.h>
#include <torch/version.h>

#include "vae_commit.h"  // generated at each build (cmake/commit.cmake)
#include "vae_ddp/app/runtime.h"
#include "vae_ddp/parallel/comm.h"
#include "vae_ddp/parallel/world.h"

// Set for this file alone by CMakeLists.txt: VAE_VERSION, VAE_TORCH_CUDA_VERSION ("" for a
// CPU-only libtorch), VAE_GEMM (the CPU fast path's GEMMs: onednn | aten).
#ifndef VAE_VERSION
#define VAE_VERSION "unknown"
#endif
#ifndef VAE_TORCH_CUDA_VERSION
#define VAE_TORCH_CUDA_VERSION ""
#endif
#ifndef VAE_GEMM
#define VAE_GEMM "unknown"
#endif

namespace vae {

std::string version_text() {
  const std::string cuda = VAE_TORCH_CUDA_VERSION;
  const std::string nccl = nccl_version();
  const std::string mpi = mpi_library_version();
  std::string text = fmt::format("vae_ddp {} (commit {})\n", VAE_VERSION, VAE_COMMIT);
  text += fmt::format("libtorch: {} ({})\n", TORCH_VERSION, cuda.empty() ? "CPU only" : "CUDA " + cuda);
  text += fmt::format("NCCL: {}\n", nccl.empty() ? "backend not built" : nccl);
  text += fmt::format("MPI: {}\n", mpi.empty() ? "not built (one process only)" : mpi);
  text += fmt::format("CPU fast path GEMMs: {}; BLAS: {}\n", VAE_GEMM, blas_name());
  return text;
}

}  // namespace vae
