// NumPy .npy files (format 1.0): how vae_ddp hands tensors to Python (the parity test's
// trace) without a pickle or TorchScript dependency.
#pragma once

#include <string>

#include <torch/torch.h>

namespace vae {

// Writes `t` (float32, float64 or int64; any shape) C-ordered, little-endian. Throws
// std::runtime_error naming the path on I/O failure.
void write_npy(const std::string& path, const torch::Tensor& t);

}  // namespace vae
