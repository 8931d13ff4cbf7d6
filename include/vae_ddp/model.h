// The MNIST VAE: encoder 784 -> hidden (ReLU) -> [mu, logvar]; z = mu + sigma * eps;
// decoder latent -> reversed hidden (ReLU) -> 784 Bernoulli logits.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>

namespace vae {

constexpr int64_t kImageSide = 28;
constexpr int64_t kImagePixels = kImageSide * kImageSide;  // 784

struct VAEOutput {
  torch::Tensor logits;  // [B, 784], pre-sigmoid
  torch::Tensor mu;      // [B, latent]
  torch::Tensor logvar;  // [B, latent], log sigma^2
};

class VAEImpl : public torch::nn::Module {
 public:
  VAEImpl(std::vector<int64_t> hidden_dims, int64_t latent_dim);

  // x: [B, 784] in [0,1] -> (mu, logvar), each [B, latent].
  std::pair<torch::Tensor, torch::Tensor> encode(const torch::Tensor& x);
  // z: [B, latent] -> logits [B, 784].
  torch::Tensor decode(const torch::Tensor& z);
  // eps: [B, latent] standard normal noise, drawn by the caller so that the noise is
  // a function of (seed, epoch, step) and not of the process that runs the rows.
  VAEOutput forward(const torch::Tensor& x, const torch::Tensor& eps);

  int64_t latent_dim() const { return latent_dim_; }

  // The Linear layers in order, for code that runs the network by hand (the CPU fast
  // path): encoder layers (each followed by ReLU), the head, then decoder layers (ReLU
  // after all but the last).
  struct Layers {
    std::vector<torch::nn::Linear> encoder;
    torch::nn::Linear head{nullptr};
    std::vector<torch::nn::Linear> decoder;
  };
  Layers layers() const;

 private:
  int64_t latent_dim_;
  torch::nn::Sequential encoder_{nullptr};
  torch::nn::Linear head_{nullptr};  // hidden -> 2*latent: mu and logvar in one GEMM
  torch::nn::Sequential decoder_{nullptr};
};
TORCH_MODULE(VAE);

// z = mu + exp(logvar / 2) * eps; all [B, latent].
torch::Tensor reparameterize(const torch::Tensor& mu, const torch::Tensor& logvar,
                             const torch::Tensor& eps);

}  // namespace vae
