// The MNIST VAE: encoder [784 (+ one-hot label)] -> hidden layers -> [mu, logvar];
// z = mu + sigma * eps; decoder [latent (+ one-hot label)] -> reversed hidden layers ->
// 784 logits. Each hidden layer is Linear, then optionally BatchNorm (the Linear then
// has no bias), then the activation, then optionally dropout.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "vae_ddp/base/config.h"
#include "vae_ddp/base/reducer.h"
#include "vae_ddp/data/mnist.h"  // kImagePixels, kClasses

namespace vae {

// Images run through the model at once outside training (evaluation, pictures).
constexpr int64_t kEvalBatch = 1000;

// What a model is made of; taken from the Config (model_options), never defaulted here.
struct ModelOptions {
  std::vector<int64_t> hidden_dims;
  int64_t latent_dim;
  Activation activation;  // after every hidden layer
  bool batch_norm;        // BatchNorm1d after each hidden Linear (statistics of the global batch)
  double dropout;         // drop probability after each hidden activation (masks come from the caller)
  bool conditional;       // a one-hot label is appended to the encoder's and the decoder's input
  ReconLoss recon_loss;   // bce: Bernoulli decoder; mse: squared error of sigmoid(logits)
};
ModelOptions model_options(const Config& c);

struct VAEOutput {
  torch::Tensor logits;  // [B, 784], pre-sigmoid
  torch::Tensor mu;      // [B, latent]
  torch::Tensor logvar;  // [B, latent], log sigma^2
};

// BatchNorm1d whose training statistics are those of the whole global batch: the
// per-feature sums are all-reduced over the ranks (forward and backward), so the result
// does not depend on how many ranks share the batch. Without a communicator it is plain
// BatchNorm1d. Running statistics are updated from the global statistics (momentum 0.1,
// unbiased variance) and used in eval mode; parameter and buffer names follow PyTorch's.
class SyncBatchNormImpl : public torch::nn::Module {
 public:
  explicit SyncBatchNormImpl(int64_t features);
  torch::Tensor forward(const torch::Tensor& x);
  void set_communicator(SumReducer* comm) { comm_ = comm; }

  torch::Tensor weight, bias, running_mean, running_var;

 private:
  SumReducer* comm_ = nullptr;
};
TORCH_MODULE(SyncBatchNorm);

// The caller's per-step randomness beyond eps, and the labels: passed to forward().
struct ForwardExtras {
  torch::Tensor labels;                     // [B] int64 digit labels: required by a conditional model
  std::vector<torch::Tensor> dropout = {};  // one [B, width] mask per hidden layer (0 or 1/(1-p)); empty: none
};

class VAEImpl : public torch::nn::Module {
 public:
  explicit VAEImpl(ModelOptions options);
  // The default model of the given shape (the other options as Config{} has them).
  VAEImpl(std::vector<int64_t> hidden_dims, int64_t latent_dim);

  // x: [B, 784] in [0,1] -> (mu, logvar), each [B, latent].
  std::pair<torch::Tensor, torch::Tensor> encode(const torch::Tensor& x, const ForwardExtras& extras = {});
  // z: [B, latent] -> logits [B, 784].
  torch::Tensor decode(const torch::Tensor& z, const ForwardExtras& extras = {});
  // eps: [B, latent] standard normal noise, drawn by the caller so that the noise is
  // a function of (seed, epoch, step) and not of the process that runs the rows; the
  // same holds for the dropout masks in `extras`.
  VAEOutput forward(const torch::Tensor& x, const torch::Tensor& eps, const ForwardExtras& extras = {});

  int64_t latent_dim() const { return options_.latent_dim; }
  const ModelOptions& options() const { return options_; }
  // Widths of the hidden layers in forward order (encoder's, then decoder's): the shapes
  // of the dropout masks.
  std::vector<int64_t> hidden_widths() const;
  // BatchNorm layers reduce their statistics through `comm` (nullptr: this process only).
  void set_communicator(SumReducer* comm);

  // The Linear layers in order, for code that runs the network by hand (the CPU fast
  // path, which handles only the plain ReLU model): encoder layers, the head, then
  // decoder layers.
  struct Layers {
    std::vector<torch::nn::Linear> encoder;
    torch::nn::Linear head{nullptr};
    std::vector<torch::nn::Linear> decoder;
  };
  Layers layers() const;

 private:
  torch::Tensor run(torch::nn::Sequential seq, torch::Tensor h, const ForwardExtras& extras, size_t first_mask);
  torch::Tensor with_label(const torch::Tensor& h, const ForwardExtras& extras) const;

  ModelOptions options_;
  torch::nn::Sequential encoder_{nullptr};
  torch::nn::Linear head_{nullptr};  // hidden -> 2*latent: mu and logvar in one GEMM
  torch::nn::Sequential decoder_{nullptr};
};
TORCH_MODULE(VAE);

// Puts a model in eval mode (BatchNorm's running statistics, no dropout) and gradients
// off for its scope, then restores the mode it had.
class EvalMode {
 public:
  explicit EvalMode(VAE& model) : model_(model), was_training_(model->is_training()) { model_->eval(); }
  ~EvalMode() { model_->train(was_training_); }
  EvalMode(const EvalMode&) = delete;
  EvalMode& operator=(const EvalMode&) = delete;

 private:
  VAE& model_;
  bool was_training_;
  torch::NoGradGuard no_grad_;
};

// True when two configs build models with the same parameter shapes.
bool same_architecture(const Config& a, const Config& b);
std::string describe_architecture(const Config& c);  // "784-400-20", "784-200-200-50 tanh"

// z = mu + exp(logvar / 2) * eps; all [B, latent].
torch::Tensor reparameterize(const torch::Tensor& mu, const torch::Tensor& logvar, const torch::Tensor& eps);

// Labels 0, 1, ..., 9, 0, 1, ... for n generated images (what a conditional model's
// sample grids show; other models ignore labels).
ForwardExtras cycling_labels(int64_t n);

// Dropout masks for rows [0, rows) of global batch `step` of `epoch`: one [rows, width]
// tensor per hidden layer, drawn from (seed, epoch, step) so that any world size
// draws the same masks (each rank then takes its rows). Empty when p == 0.
std::vector<torch::Tensor> dropout_masks(const std::vector<int64_t>& widths, double p, int64_t rows, int64_t seed,
                                         int64_t epoch, int64_t step);
// The same draws as bool [rows, width] kept units (a quarter of the bytes, for a whole
// epoch's), and the mask that one layer's kept units make: keep / (1 - p).
std::vector<torch::Tensor> dropout_keep(const std::vector<int64_t>& widths, double p, int64_t rows, int64_t seed,
                                        int64_t epoch, int64_t step);
torch::Tensor dropout_mask(const torch::Tensor& keep, double p);

}  // namespace vae
