#include "vae_ddp/train/cpu_step.h"

#include <algorithm>

#include <ATen/Parallel.h>

#include "vae_ddp/train/cpu_gemm.h"

namespace vae {

namespace {

float* f32(const torch::Tensor& t) { return t.data_ptr<float>(); }

// out [B, N] = in [B, K] · W^T + b, then ReLU if asked: a torch Linear. `bf16`: the GEMM
// multiplies in bf16.
torch::Tensor linear(const torch::Tensor& in, const torch::nn::Linear& lin, bool relu, bool bf16) {
  const auto& w = lin->weight;  // [N, K]
  auto out = torch::empty({in.size(0), w.size(0)}, in.options());
  cpu::GemmOp op;
  op.trans_b = true;
  op.relu = relu;
  op.bf16 = bf16;
  cpu::gemm(op, in.size(0), w.size(0), w.size(1), f32(in), f32(w), f32(lin->bias), f32(out));
  return out;
}

// Given g = dLoss/d(out) [B, N] of `lin` applied to `in` [B, K]: writes the weight and
// bias gradients into dw [N, K] and db [N] and returns dLoss/d(in) [B, K] (undefined when
// `need_input_grad` is false). `bf16`: the GEMMs multiply in bf16.
torch::Tensor linear_backward(const torch::Tensor& g, const torch::Tensor& in, const torch::nn::Linear& lin,
                              torch::Tensor dw, torch::Tensor db, bool need_input_grad, bool bf16) {
  const auto& w = lin->weight;  // [N, K]
  const int64_t b = g.size(0), n = w.size(0), k = w.size(1);
  cpu::GemmOp t_a;
  t_a.trans_a = true;
  t_a.bf16 = bf16;
  cpu::gemm(t_a, n, k, b, f32(g), f32(in), nullptr, f32(dw));  // dW [N, K] = g^T · in
  at::sum_out(db, g, /*dim=*/{0});                             // db [N]
  if (!need_input_grad) return {};
  auto gin = torch::empty({b, k}, g.options());
  cpu::GemmOp plain;
  plain.bf16 = bf16;
  cpu::gemm(plain, b, k, n, f32(g), f32(w), nullptr, f32(gin));  // [B, K] = g · W
  return gin;
}

// Given dz = dLoss/dz [B, L]: dLoss/d(stats) [B, 2L] of the head's output stats = [mu,
// logvar], through z = mu + sd * eps and cb * KL (cb = beta / global batch).
torch::Tensor latent_backward(const torch::Tensor& dz, const torch::Tensor& stats, const torch::Tensor& sd,
                              const torch::Tensor& eps, double cb) {
  const int64_t latent = dz.size(1);
  auto dstats = torch::empty_like(stats);
  auto dmu = dstats.narrow(/*dim=*/1, 0, latent);
  torch::add_out(dmu, dz, stats.narrow(/*dim=*/1, 0, latent), cb);  // dz + cb * mu
  dstats.narrow(/*dim=*/1, latent, latent).copy_(dz * eps * sd * 0.5 + (sd.square() - 1) * (0.5 * cb));
  return dstats;
}

}  // namespace

std::string CpuStep::unsupported(const ModelOptions& o) {
  if (o.activation != Activation::kRelu) return "--activation " + name_of(o.activation);
  if (o.batch_norm) return "--batch-norm";
  if (o.dropout > 0) return "--dropout";
  if (o.conditional) return "--conditional";
  if (o.recon_loss != ReconLoss::kBce) return "--recon-loss " + name_of(o.recon_loss);
  return "";
}

CpuStep::CpuStep(VAE& model, CpuStepOptions options)
    : layers_(model->layers()), latent_(model->latent_dim()), options_(options) {
  for (const auto& p : model->parameters()) {
    TORCH_CHECK(p.device().is_cpu() && p.scalar_type() == torch::kFloat32 && p.is_contiguous() && p.grad().defined() &&
                    p.grad().is_contiguous(),
                "CpuStep: needs contiguous fp32 CPU parameters with gradient buffers");
  }
  std::vector<torch::nn::Linear> all = layers_.encoder;
  all.push_back(layers_.head);
  all.insert(all.end(), layers_.decoder.begin(), layers_.decoder.end());
  LayerGrads own;
  for (const auto& lin : all) {
    own.push_back(lin->weight.grad());
    own.push_back(lin->bias.grad());
  }
  grads_.push_back(std::move(own));
}

int64_t CpuStep::chunks_for(int64_t rows, int64_t threads, int64_t rows_per_chunk) {
  return std::max<int64_t>(1, std::min(threads, rows / rows_per_chunk));
}

void CpuStep::add_scratch(int64_t chunks) {
  while (static_cast<int64_t>(grads_.size()) < chunks) {
    LayerGrads scratch;
    for (const auto& g : grads_[0]) scratch.push_back(torch::empty_like(g));
    grads_.push_back(std::move(scratch));
  }
}

LossTerms CpuStep::run(const torch::Tensor& x_in, const torch::Tensor& eps_in, double beta, int64_t global_batch,
                       Profiler* profiler) {
  torch::NoGradGuard no_grad;
  Profiler off(false, torch::kCPU);
  Profiler& prof = profiler ? *profiler : off;
  const auto x = x_in.contiguous(), eps = eps_in.contiguous();
  const double c = 1.0 / static_cast<double>(global_batch);
  const int64_t rows = x.size(0);
  const int64_t chunks = chunks_for(rows, torch::get_num_threads(), options_.rows_per_chunk);
  if (chunks == 1) return run_rows(x, eps, c * beta, c, grads_[0], prof);

  add_scratch(chunks);  // before the threads start
  std::vector<LossTerms> terms(static_cast<size_t>(chunks));
  // One chunk per thread; inside, oneDNN and ATen see a parallel region and run on one core.
  at::parallel_for(0, chunks, /*grain_size=*/1, [&](int64_t first, int64_t end) {
    for (int64_t t = first; t < end; ++t) {
      const int64_t r0 = rows * t / chunks, r1 = rows * (t + 1) / chunks;
      terms[static_cast<size_t>(t)] = run_rows(x.narrow(0, r0, r1 - r0), eps.narrow(0, r0, r1 - r0), c * beta, c,
                                               grads_[static_cast<size_t>(t)], t == 0 ? prof : off);
    }
  });
  Profiler::Scope summing(prof, Phase::kBackward);
  for (size_t i = 0; i < grads_[0].size(); ++i) {
    for (int64_t t = 1; t < chunks; ++t) grads_[0][i].add_(grads_[static_cast<size_t>(t)][i]);
  }
  std::vector<torch::Tensor> bce, kld;
  for (const auto& t : terms) {
    bce.push_back(t.bce);
    kld.push_back(t.kld);
  }
  return {torch::cat(bce), torch::cat(kld)};
}

LossTerms CpuStep::run_rows(const torch::Tensor& x, const torch::Tensor& eps, double cb, double c,
                            const LayerGrads& grads, Profiler& prof) {
  auto forward_timer = std::make_unique<Profiler::Scope>(prof, Phase::kForward);
  // Forward. enc[i] is the input of encoder layer i; enc.back() feeds the head.
  std::vector<torch::Tensor> enc = {x};
  const bool bf16 = options_.bf16;
  for (const auto& lin : layers_.encoder) enc.push_back(linear(enc.back(), lin, /*relu=*/true, bf16));
  const auto stats = linear(enc.back(), layers_.head, /*relu=*/false, bf16);  // [B, 2L]
  const auto mu = stats.narrow(/*dim=*/1, 0, latent_), logvar = stats.narrow(1, latent_, latent_);
  const auto sd = (0.5 * logvar).exp();                               // [B, L]
  const auto z = torch::addcmul(mu, sd, eps);                         // mu + sd * eps
  auto kld = -0.5 * (1 + logvar - mu.square() - sd.square()).sum(1);  // [B]
  std::vector<torch::Tensor> dec = {z};
  const size_t last = layers_.decoder.size() - 1;
  for (size_t j = 0; j < last; ++j) dec.push_back(linear(dec.back(), layers_.decoder[j], /*relu=*/true, bf16));
  const auto logits = linear(dec.back(), layers_.decoder[last], /*relu=*/false, bf16);  // [B, 784]

  // Bernoulli NLL from logits, and its gradient (sigmoid(l) - x) / global_batch.
  auto bce = torch::addcmul(torch::softplus(logits), logits, x, /*value=*/-1).sum(1);  // [B]
  auto g = torch::sigmoid(logits).sub_(x).mul_(c);                                     // [B, 784]
  forward_timer.reset();
  Profiler::Scope backward_timer(prof, Phase::kBackward);

  // Backward through the decoder; ReLU's gradient masks where its output was 0. Layer l in
  // the order encoder, head, decoder has its gradients at grads[2l] (weight) and grads[2l + 1] (bias).
  const size_t head = layers_.encoder.size();
  for (size_t j = last + 1; j-- > 0;) {
    const size_t l = head + 1 + j;
    auto gin =
        linear_backward(g, dec[j], layers_.decoder[j], grads[2 * l], grads[2 * l + 1], /*need_input_grad=*/true, bf16);
    g = j > 0 ? at::threshold_backward(gin, dec[j], 0) : gin;
  }
  g = linear_backward(latent_backward(g, stats, sd, eps, cb), enc.back(), layers_.head, grads[2 * head],
                      grads[2 * head + 1], /*need_input_grad=*/true, bf16);
  for (size_t i = head; i-- > 0;) {
    g = at::threshold_backward(g, enc[i + 1], 0);  // through the ReLU after encoder layer i
    g = linear_backward(g, enc[i], layers_.encoder[i], grads[2 * i], grads[2 * i + 1], /*need_input_grad=*/i > 0, bf16);
  }
  return {bce, kld};
}

}  // namespace vae
