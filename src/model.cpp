#include "vae_ddp/model.h"

namespace vae {

namespace {

// Linear + ReLU for each consecutive pair of widths.
torch::nn::Sequential mlp(const std::vector<int64_t>& widths) {
  torch::nn::Sequential seq;
  for (size_t i = 0; i + 1 < widths.size(); ++i) {
    seq->push_back(torch::nn::Linear(widths[i], widths[i + 1]));
    seq->push_back(torch::nn::ReLU());
  }
  return seq;
}

}  // namespace

VAEImpl::VAEImpl(std::vector<int64_t> hidden_dims, int64_t latent_dim) : latent_dim_(latent_dim) {
  std::vector<int64_t> enc = {kImagePixels};
  enc.insert(enc.end(), hidden_dims.begin(), hidden_dims.end());
  encoder_ = register_module("encoder", mlp(enc));
  head_ = register_module("head", torch::nn::Linear(hidden_dims.back(), 2 * latent_dim));

  std::vector<int64_t> dec = {latent_dim};
  dec.insert(dec.end(), hidden_dims.rbegin(), hidden_dims.rend());
  auto decoder = mlp(dec);
  decoder->push_back(torch::nn::Linear(hidden_dims.front(), kImagePixels));  // logits, no activation
  decoder_ = register_module("decoder", decoder);
}

std::pair<torch::Tensor, torch::Tensor> VAEImpl::encode(const torch::Tensor& x) {
  auto stats = head_->forward(encoder_->forward(x));  // [B, 2*latent]
  auto halves = stats.chunk(2, /*dim=*/1);
  return {halves[0], halves[1]};
}

torch::Tensor VAEImpl::decode(const torch::Tensor& z) { return decoder_->forward(z); }

VAEOutput VAEImpl::forward(const torch::Tensor& x, const torch::Tensor& eps) {
  auto [mu, logvar] = encode(x);
  auto logits = decode(reparameterize(mu, logvar, eps));
  return {logits, mu, logvar};
}

VAEImpl::Layers VAEImpl::layers() const {
  Layers out;
  out.head = head_;
  for (const auto& m : encoder_->children()) {
    if (auto lin = std::dynamic_pointer_cast<torch::nn::LinearImpl>(m)) out.encoder.emplace_back(lin);
  }
  for (const auto& m : decoder_->children()) {
    if (auto lin = std::dynamic_pointer_cast<torch::nn::LinearImpl>(m)) out.decoder.emplace_back(lin);
  }
  return out;
}

torch::Tensor reparameterize(const torch::Tensor& mu, const torch::Tensor& logvar, const torch::Tensor& eps) {
  return mu + torch::exp(0.5 * logvar) * eps;
}

}  // namespace vae
