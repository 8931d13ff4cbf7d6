#include "vae_ddp/model/model.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "vae_ddp/base/rng.h"

namespace vae {

ModelOptions model_options(const Config& c) {
  return {c.hidden_dims, c.latent_dim, c.activation, c.batch_norm, c.dropout, c.conditional, c.recon_loss};
}

namespace {

// Sum over ranks with the matching gradient: every rank's loss depends on the sum, so
// the gradient of the total loss with respect to one rank's term is the sum over ranks
// of the incoming gradients.
struct AllReduceSum : public torch::autograd::Function<AllReduceSum> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, int64_t comm) {
    ctx->saved_data["comm"] = comm;
    auto y = x.contiguous().clone();
    reinterpret_cast<SumReducer*>(comm)->allreduce_sum(y);
    return y;
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    auto g = grads[0].contiguous().clone();
    reinterpret_cast<SumReducer*>(ctx->saved_data["comm"].toInt())->allreduce_sum(g);
    return {g, torch::Tensor()};
  }
};

torch::Tensor sum_over_ranks(const torch::Tensor& x, SumReducer* comm) {
  if (comm == nullptr) return x;
  return AllReduceSum::apply(x, reinterpret_cast<int64_t>(comm));
}

constexpr double kBatchNormEps = 1e-5;
constexpr double kBatchNormMomentum = 0.1;
constexpr double kLeakySlope = 0.01;  // PyTorch's default negative slope

torch::nn::AnyModule activation(Activation kind) {
  if (kind == Activation::kTanh) return torch::nn::AnyModule(torch::nn::Tanh());
  if (kind == Activation::kLeakyRelu) {
    return torch::nn::AnyModule(torch::nn::LeakyReLU(torch::nn::LeakyReLUOptions().negative_slope(kLeakySlope)));
  }
  return torch::nn::AnyModule(torch::nn::ReLU());
}

// Linear [+ BatchNorm] + activation for each consecutive pair of widths.
torch::nn::Sequential hidden_stack(const std::vector<int64_t>& widths, const ModelOptions& o) {
  torch::nn::Sequential seq;
  for (size_t i = 0; i + 1 < widths.size(); ++i) {
    // Before BatchNorm a bias is redundant (the normalisation removes it): its gradient is
    // zero up to rounding, which Adam would blow up into a random walk.
    seq->push_back(torch::nn::Linear(torch::nn::LinearOptions(widths[i], widths[i + 1]).bias(!o.batch_norm)));
    if (o.batch_norm) seq->push_back(SyncBatchNorm(widths[i + 1]));
    seq->push_back(activation(o.activation));
  }
  return seq;
}

bool is_activation(const std::shared_ptr<torch::nn::Module>& m) {
  return m->as<torch::nn::ReLU>() || m->as<torch::nn::LeakyReLU>() || m->as<torch::nn::Tanh>();
}

}  // namespace

SyncBatchNormImpl::SyncBatchNormImpl(int64_t features) {
  weight = register_parameter("weight", torch::ones({features}));
  bias = register_parameter("bias", torch::zeros({features}));
  running_mean = register_buffer("running_mean", torch::zeros({features}));
  running_var = register_buffer("running_var", torch::ones({features}));
}

torch::Tensor SyncBatchNormImpl::forward(const torch::Tensor& input) {
  const auto x = input.to(torch::kFloat32);  // statistics in fp32 under autocast too
  torch::Tensor mean, var;
  if (is_training()) {
    const int64_t c = x.size(1);
    auto count = torch::full({1}, static_cast<double>(x.size(0)), x.options());
    auto sums = sum_over_ranks(torch::cat({x.sum(0), count}), comm_);  // [c + 1]
    const auto n = sums.slice(0, c).detach();                          // images in the global batch
    mean = sums.slice(0, 0, c) / n;
    var = sum_over_ranks((x - mean).square().sum(0), comm_) / n;  // biased, as normalisation uses
    torch::NoGradGuard no_grad;
    const auto unbiased = n / (n - 1).clamp_min(1.0);  // [1], on the device: no host read
    running_mean.mul_(1 - kBatchNormMomentum).add_(mean.detach(), kBatchNormMomentum);
    running_var.mul_(1 - kBatchNormMomentum).add_(var.detach() * unbiased, kBatchNormMomentum);
  } else {
    mean = running_mean;
    var = running_var;
  }
  return (x - mean) * torch::rsqrt(var + kBatchNormEps) * weight + bias;
}

VAEImpl::VAEImpl(ModelOptions options) : options_(std::move(options)) {
  const auto& hidden = options_.hidden_dims;
  const int64_t label_width = options_.conditional ? kClasses : 0;
  std::vector<int64_t> enc = {kImagePixels + label_width};
  enc.insert(enc.end(), hidden.begin(), hidden.end());
  encoder_ = register_module("encoder", hidden_stack(enc, options_));
  head_ = register_module("head", torch::nn::Linear(hidden.back(), 2 * options_.latent_dim));

  std::vector<int64_t> dec = {options_.latent_dim + label_width};
  dec.insert(dec.end(), hidden.rbegin(), hidden.rend());
  auto decoder = hidden_stack(dec, options_);
  decoder->push_back(torch::nn::Linear(hidden.front(), kImagePixels));  // logits, no activation
  decoder_ = register_module("decoder", decoder);
}

VAEImpl::VAEImpl(std::vector<int64_t> hidden_dims, int64_t latent_dim)
    : VAEImpl([&] {
        Config c;
        c.hidden_dims = std::move(hidden_dims);
        c.latent_dim = latent_dim;
        return model_options(c);
      }()) {}

std::vector<int64_t> VAEImpl::hidden_widths() const {
  std::vector<int64_t> w = options_.hidden_dims;
  w.insert(w.end(), options_.hidden_dims.rbegin(), options_.hidden_dims.rend());
  return w;
}

void VAEImpl::set_communicator(SumReducer* comm) {
  for (const auto& m : modules(/*include_self=*/false)) {
    if (auto bn = m->as<SyncBatchNorm>()) bn->set_communicator(comm);
  }
}

torch::Tensor VAEImpl::with_label(const torch::Tensor& h, const ForwardExtras& extras) const {
  if (!options_.conditional) return h;
  TORCH_CHECK(extras.labels.defined(), "a conditional VAE needs the labels");
  auto onehot = torch::one_hot(extras.labels.to(h.device()), kClasses).to(h.scalar_type());
  return torch::cat({h, onehot}, /*dim=*/1);
}

torch::Tensor VAEImpl::run(torch::nn::Sequential seq, torch::Tensor h, const ForwardExtras& extras, size_t first_mask) {
  size_t mask = first_mask;
  for (auto& m : *seq) {
    h = m.forward(h);
    if (is_activation(m.ptr()) && mask < extras.dropout.size()) h = h * extras.dropout[mask++].to(h.scalar_type());
  }
  return h;
}

std::pair<torch::Tensor, torch::Tensor> VAEImpl::encode(const torch::Tensor& x, const ForwardExtras& extras) {
  auto stats = head_->forward(run(encoder_, with_label(x, extras), extras, 0));  // [B, 2*latent]
  auto halves = stats.chunk(2, /*dim=*/1);
  return {halves[0], halves[1]};
}

torch::Tensor VAEImpl::decode(const torch::Tensor& z, const ForwardExtras& extras) {
  return run(decoder_, with_label(z, extras), extras, options_.hidden_dims.size());
}

VAEOutput VAEImpl::forward(const torch::Tensor& x, const torch::Tensor& eps, const ForwardExtras& extras) {
  auto [mu, logvar] = encode(x, extras);
  auto logits = decode(reparameterize(mu, logvar, eps), extras);
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

ForwardExtras cycling_labels(int64_t n) { return {torch::arange(n, torch::kInt64) % kClasses, {}}; }

std::vector<torch::Tensor> dropout_keep(const std::vector<int64_t>& widths, double p, int64_t rows, int64_t seed,
                                        int64_t epoch, int64_t step) {
  std::vector<torch::Tensor> keep;
  if (p <= 0) return keep;
  auto gen = make_generator(seed, Stream::kDropout, epoch, step);
  for (int64_t w : widths) keep.push_back(torch::rand({rows, w}, gen, torch::kFloat32).ge(p));  // P(keep) = 1 - p
  return keep;
}

torch::Tensor dropout_mask(const torch::Tensor& keep, double p) { return keep.to(torch::kFloat32) / (1.0 - p); }

std::vector<torch::Tensor> dropout_masks(const std::vector<int64_t>& widths, double p, int64_t rows, int64_t seed,
                                         int64_t epoch, int64_t step) {
  std::vector<torch::Tensor> masks;
  for (const auto& keep : dropout_keep(widths, p, rows, seed, epoch, step)) masks.push_back(dropout_mask(keep, p));
  return masks;
}

bool same_architecture(const Config& a, const Config& b) {
  return a.hidden_dims == b.hidden_dims && a.latent_dim == b.latent_dim && a.activation == b.activation &&
         a.batch_norm == b.batch_norm && a.conditional == b.conditional;
}

std::string describe_architecture(const Config& c) {
  std::string text = fmt::format("{}-{}-{}", kImagePixels, fmt::join(c.hidden_dims, "-"), c.latent_dim);
  if (c.activation != Config{}.activation) text += " " + name_of(c.activation);
  if (c.batch_norm) text += " batchnorm";
  if (c.conditional) text += " conditional";
  return text;
}

}  // namespace vae
