// `vae_ddp --version`: what this binary is and what it was built with.
#pragma once

#include <string>

namespace vae {

// vae_ddp's version and commit, libtorch's version and CUDA, NCCL, MPI, and the CPU fast
// path's GEMM library, one per line.
std::string version_text();

}  // namespace vae
