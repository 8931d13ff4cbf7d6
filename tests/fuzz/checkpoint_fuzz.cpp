// libFuzzer target: the checkpoint loader on arbitrary bytes, as read from disk: the
// SHA-256 trailer must turn every damaged file into a UsageError before libtorch parses
// it. Anything else (a crash, a sanitizer report, another exception) is a bug.
#include <cstdint>
#include <string>

#include "vae_ddp/base/errors.h"
#include "vae_ddp/train/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  try {
    vae::Checkpoint ckpt("fuzz.pt", bytes, torch::kCPU);
    vae::VAE model(ckpt.config().hidden_dims, ckpt.config().latent_dim);
    ckpt.restore_model(model);
  } catch (const vae::UsageError&) {
  }
  return 0;
}
