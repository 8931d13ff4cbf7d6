#include "vae_ddp/train/device_step.h"

#include <limits>

#include <torch/version.h>

#include "vae_ddp/train/cpu_step.h"

namespace vae {

// The fused Adam, AMP and addmm-activation kernels' CPU versions: libtorch 2.4.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define VAE_DEVICE_STEP 1
#endif

// The buffers of one global batch size: every tensor the sequence writes, allocated once.
struct DeviceStep::Shape {
  Shape(torch::Device device) : graph(device) {}
  int64_t rows = 0, global_rows = 0;
  torch::Tensor idx, eps;               // the step's inputs, copied in by run()
  torch::Tensor x, x_lp;                // the gathered rows (fp32; in the GEMMs' dtype)
  std::vector<torch::Tensor> enc, dec;  // each hidden layer's output (after its ReLU)
  torch::Tensor stats, stats32;         // the head's [mu, logvar] (GEMM dtype; fp32)
  torch::Tensor sd, sq1, kt, z, z_lp, kld;
  torch::Tensor logits, logits32, sp, bce, g, g_lp;
  std::vector<torch::Tensor> dec_in_grad;   // d loss / d (input of decoder layer j); [0] is d loss / dz
  std::vector<torch::Tensor> enc_out_grad;  // d loss / d (output of encoder layer i)
  torch::Tensor dz32, dstats, dstats_lp;
  torch::Tensor sums4;   // [4] float32: objective, bce, kld, rows of this rank
  torch::Tensor sums64;  // the same in float64, added to the trainer's sums
  StepGraph graph;
};

std::string DeviceStep::not_covered(const Config& c, bool cuda) {
  const std::string variant = CpuStep::unsupported(model_options(c));  // the fast path's variants
  if (!variant.empty()) return variant;
  if (c.binarize != Binarize::kNone) return "--binarize " + name_of(c.binarize);
  if (cuda && c.backend == Backend::kMpi) return "--backend mpi (a CUDA graph captures an NCCL all-reduce only)";
  if (!FlatAdam::fused_available()) return "this build's libtorch (before 2.4: no fused Adam on the CPU)";
  return "";
}

namespace {

torch::ScalarType compute_type(Precision p) {
  return p == Precision::kBF16 ? torch::kBFloat16 : p == Precision::kFP16 ? torch::kHalf : torch::kFloat32;
}

// `t`'s place in `base` (a flat fp32 buffer it is a view of), as a view of `other`, a flat
// buffer of the same length.
torch::Tensor same_place(const torch::Tensor& t, const torch::Tensor& base, const torch::Tensor& other) {
  const int64_t offset = t.data_ptr<float>() - base.data_ptr<float>();
  TORCH_CHECK(offset >= 0 && offset + t.numel() <= base.numel() && t.is_contiguous(),
              "DeviceStep: a parameter outside the flat buffer");
  return other.narrow(0, offset, t.numel()).view(t.sizes());
}

const int64_t kRowsDim[] = {0}, kColsDim[] = {1};

}  // namespace

DeviceStep::DeviceStep(DeviceStepParts parts, DeviceStepOptions options)
    : parts_(std::move(parts)), options_(std::move(options)), compute_(compute_type(options_.precision)) {
#ifndef VAE_DEVICE_STEP
  TORCH_CHECK(false, "--step graph needs libtorch 2.4 or later");
#endif
  VAE& model = *parts_.model;
  latent_ = model->latent_dim();
  const auto params = parts_.flat->params(), grads = parts_.flat->grads();
  const auto opts = params.options();
  const bool lp = compute_ != torch::kFloat32;
  if (lp) {
    params_lp_ = torch::empty_like(params, opts.dtype(compute_));
    grads_lp_ = torch::zeros_like(params, opts.dtype(compute_));
  }
  auto make = [&](const torch::nn::Linear& lin, bool relu) {
    Layer l;
    l.w = lin->weight;
    l.b = lin->bias;
    l.dw = l.w.grad();
    l.db = l.b.grad();
    TORCH_CHECK(l.dw.defined() && l.db.defined(), "DeviceStep: needs FlatParameters' gradient views");
    l.w_lp = lp ? same_place(l.w, params, params_lp_) : l.w;
    l.b_lp = lp ? same_place(l.b, params, params_lp_) : l.b;
    l.dw_lp = lp ? same_place(l.dw, grads, grads_lp_) : l.dw;
    l.db_lp = lp ? same_place(l.db, grads, grads_lp_) : l.db;
    l.relu = relu;
    return l;
  };
  const auto layers = model->layers();
  for (const auto& lin : layers.encoder) encoder_.push_back(make(lin, true));
  head_ = make(layers.head, false);
  for (size_t j = 0; j < layers.decoder.size(); ++j) {
    decoder_.push_back(make(layers.decoder[j], j + 1 < layers.decoder.size()));
  }
  auto scalar = [&](torch::ScalarType t) { return torch::zeros({1}, opts.dtype(t)); };
  step_ = scalar(torch::kInt64);
  beta_ = scalar(torch::kFloat32);
  cs_ = scalar(torch::kFloat32);
  cb_ = scalar(torch::kFloat32);
  found_ = scalar(torch::kFloat32);
  inv_scale_ = scalar(torch::kFloat32);
  norm_ = scalar(torch::kFloat32);
  clip_ = scalar(torch::kFloat32);
  stop_ = scalar(torch::kFloat32);
  TORCH_CHECK(options_.betas.defined() && options_.betas.dim() == 1 && options_.betas.device() == params.device() &&
                  options_.betas.scalar_type() == torch::kFloat32,
              "DeviceStep: betas must be a float32 [steps] tensor on the parameters' device");
  parts_.flat->slot(FlatParameters::kNextBeta).zero_();  // unused here: every rank reads beta from the table
}

DeviceStep::~DeviceStep() = default;

void DeviceStep::set_global_step(int64_t step) {
  TORCH_CHECK(step >= 0 && step < options_.betas.numel(), "DeviceStep: global step ", step, " is past the schedule (",
              options_.betas.numel(), " steps)");
  step_.fill_(step);
}

void DeviceStep::request_stop() { stop_.fill_(1.0); }

DeviceStep::Shape& DeviceStep::shape_for(int64_t global_rows, int64_t rows) {
  auto it = shapes_.find(global_rows);
  if (it != shapes_.end()) {
    TORCH_CHECK(it->second->rows == rows, "DeviceStep: a global batch of ", global_rows, " gave this rank ", rows,
                " rows, before ", it->second->rows);
    return *it->second;
  }
  const auto f32 = parts_.flat->params().options();
  const auto lp = f32.dtype(compute_);
  const bool low = compute_ != torch::kFloat32;
  const int64_t b = rows, l = latent_;
  auto s = std::make_unique<Shape>(f32.device());
  s->rows = rows;
  s->global_rows = global_rows;
  s->idx = torch::zeros({b}, f32.dtype(torch::kInt64));
  s->eps = torch::zeros({b, l}, f32);
  s->x = torch::zeros({b, kImagePixels}, f32);
  s->x_lp = low ? torch::zeros({b, kImagePixels}, lp) : s->x;
  for (const auto& layer : encoder_) s->enc.push_back(torch::zeros({b, layer.w.size(0)}, lp));
  s->stats = torch::zeros({b, 2 * l}, lp);
  s->stats32 = low ? torch::zeros({b, 2 * l}, f32) : s->stats;
  for (auto* t : {&s->sd, &s->sq1, &s->kt, &s->z}) *t = torch::zeros({b, l}, f32);
  s->z_lp = low ? torch::zeros({b, l}, lp) : s->z;
  s->kld = torch::zeros({b}, f32);
  for (size_t j = 0; j + 1 < decoder_.size(); ++j) s->dec.push_back(torch::zeros({b, decoder_[j].w.size(0)}, lp));
  s->logits = torch::zeros({b, kImagePixels}, lp);
  s->logits32 = low ? torch::zeros({b, kImagePixels}, f32) : s->logits;
  s->sp = torch::zeros({b, kImagePixels}, f32);
  s->bce = torch::zeros({b}, f32);
  s->g = torch::zeros({b, kImagePixels}, f32);
  s->g_lp = low ? torch::zeros({b, kImagePixels}, lp) : s->g;
  for (const auto& layer : decoder_) s->dec_in_grad.push_back(torch::zeros({b, layer.w.size(1)}, lp));
  s->dz32 = low ? torch::zeros({b, l}, f32) : s->dec_in_grad[0];
  s->dstats = torch::zeros({b, 2 * l}, f32);
  s->dstats_lp = low ? torch::zeros({b, 2 * l}, lp) : s->dstats;
  for (const auto& layer : encoder_) s->enc_out_grad.push_back(torch::zeros({b, layer.w.size(0)}, lp));
  s->sums4 = torch::zeros({4}, f32);
  s->sums64 = torch::zeros({4}, f32.dtype(torch::kFloat64));
  s->sums4[kSumImages].fill_(static_cast<double>(rows));
  return *shapes_.emplace(global_rows, std::move(s)).first->second;
}

void DeviceStep::run(const Batch& batch, torch::Tensor& sums, FaultAction fault) {
  TORCH_CHECK(sums.scalar_type() == torch::kFloat64 && sums.numel() == 4 && sums.is_contiguous(),
              "DeviceStep::run: sums must be a contiguous float64 [4] tensor");
  Shape& s = shape_for(batch.global_rows, batch.indices.size(0));
  last_ = &s;
  // The step's two small device copies: its rows' indices and noise (strided views of the
  // epoch's permutation and noise, BatchMaker) into this shape's buffers.
  s.idx.copy_(batch.indices);
  s.eps.copy_(batch.eps);
  const bool graphed =
      options_.capture && s.global_rows == options_.full_batch && fault == FaultAction::kNone && s.idx.is_cuda();
  if (!graphed) {
    sequence(s, sums, /*capturing=*/false, fault);
    return;
  }
  if (captured_sums_data_ == nullptr) captured_sums_data_ = sums.data_ptr();
  TORCH_CHECK(sums.data_ptr() == captured_sums_data_, "DeviceStep::run: a graphed step must add into the same sums");
  Communicator& comm = *parts_.comm;
  const bool watch = s.graph.captured() && comm.world().size > 1;
  if (watch) comm.watch_begin();
  s.graph.run([&](bool capturing) { sequence(s, sums, capturing, FaultAction::kNone); });
  if (watch) comm.watch_end("the CUDA graph's step (its NCCL all-reduce)");
}

void DeviceStep::sequence(Shape& s, torch::Tensor& sums, bool capturing, FaultAction fault) {
#ifdef VAE_DEVICE_STEP
  torch::NoGradGuard no_grad;
  const bool low = compute_ != torch::kFloat32, fp16 = options_.precision == Precision::kFP16;
  const int64_t l = latent_;
  const at::IntArrayRef rows_dim(kRowsDim), cols_dim(kColsDim);
  FlatParameters& flat = *parts_.flat;

  // The rows, and the weights in the GEMMs' dtype.
  at::index_select_out(s.x, parts_.train_images, /*dim=*/0, s.idx);
  if (fault == FaultAction::kPoisonBatch) s.x.fill_(std::numeric_limits<float>::quiet_NaN());
  if (low) {
    s.x_lp.copy_(s.x);
    params_lp_.copy_(flat.params());
  }

  // Forward: encoder (bias + ReLU in the GEMM's epilogue), head, reparameterisation, KL, decoder.
  const torch::Tensor* in = &s.x_lp;
  for (size_t i = 0; i < encoder_.size(); ++i) {
    at::_addmm_activation_out(s.enc[i], encoder_[i].b_lp, *in, encoder_[i].w_lp.t());
    in = &s.enc[i];
  }
  at::addmm_out(s.stats, head_.b_lp, *in, head_.w_lp.t());
  if (low) s.stats32.copy_(s.stats);
  const auto mu = s.stats32.narrow(/*dim=*/1, 0, l), logvar = s.stats32.narrow(1, l, l);
  // (In place: libtorch's out= forms with a Scalar compute into a temporary, then copy.)
  s.sd.copy_(logvar);
  s.sd.mul_(0.5).exp_();                  // sd = exp(logvar / 2)
  at::addcmul_out(s.z, mu, s.sd, s.eps);  // z = mu + sd * eps
  if (low) s.z_lp.copy_(s.z);
  at::mul_out(s.sq1, s.sd, s.sd);
  s.sq1.sub_(1);  // sd^2 - 1
  at::addcmul_out(s.kt, s.sq1, mu, mu);
  s.kt.sub_(logvar);  // sd^2 - 1 + mu^2 - logvar
  at::sum_out(s.kld, s.kt, cols_dim);
  s.kld.mul_(0.5);  // KL(q || N(0, I)) per row
  in = &s.z_lp;
  for (size_t j = 0; j + 1 < decoder_.size(); ++j) {
    at::_addmm_activation_out(s.dec[j], decoder_[j].b_lp, *in, decoder_[j].w_lp.t());
    in = &s.dec[j];
  }
  at::addmm_out(s.logits, decoder_.back().b_lp, *in, decoder_.back().w_lp.t());
  if (low) s.logits32.copy_(s.logits);

  // The loss: Bernoulli NLL from logits, softplus(l) - l x, per row; this step's beta from
  // the table; the sums [objective, bce, kld] of this rank's rows.
  at::softplus_out(s.sp, s.logits32);
  s.sp.addcmul_(s.logits32, s.x, -1);
  at::sum_out(s.bce, s.sp, cols_dim);
  at::index_select_out(beta_, options_.betas, /*dim=*/0, step_);
  auto objective = s.sums4.narrow(0, kSumObjective, 1), bce_sum = s.sums4.narrow(0, kSumBce, 1),
       kld_sum = s.sums4.narrow(0, kSumKld, 1);
  at::sum_out(bce_sum, s.bce, rows_dim, /*keepdim=*/true);
  at::sum_out(kld_sum, s.kld, rows_dim, /*keepdim=*/true);
  at::addcmul_out(objective, bce_sum, beta_, kld_sum);

  // d objective / d logits = (sigmoid(l) - x) / global rows, times the loss scale under fp16 (cs).
  const double c = 1.0 / static_cast<double>(s.global_rows);
  if (fp16) {
    cs_.copy_(parts_.scaler->scale_tensor());
    cs_.mul_(c);
  } else {
    cs_.fill_(c);
  }
  at::mul_out(cb_, beta_, cs_);  // the KL term's weight in the gradient
  at::sigmoid_out(s.g, s.logits32);
  s.g.sub_(s.x);
  s.g.mul_(cs_);
  if (low) s.g_lp.copy_(s.g);

  // Backward through the decoder: dW = g^T in, db = sum of g's rows, d in = g W, masked by
  // the ReLU before it.
  const torch::Tensor* g = &s.g_lp;
  for (size_t j = decoder_.size(); j-- > 0;) {
    Layer& layer = decoder_[j];
    const torch::Tensor& layer_in = j == 0 ? s.z_lp : s.dec[j - 1];
    at::mm_out(layer.dw_lp, g->t(), layer_in);
    at::sum_out(layer.db_lp, *g, rows_dim);
    at::mm_out(s.dec_in_grad[j], *g, layer.w_lp);
    if (j > 0) at::threshold_backward_out(s.dec_in_grad[j], s.dec_in_grad[j], s.dec[j - 1], 0);
    g = &s.dec_in_grad[j];
  }
  // Through the reparameterisation and the KL term: d mu = dz + cb mu,
  // d logvar = (dz eps sd + cb (sd^2 - 1)) / 2.
  if (low) s.dz32.copy_(s.dec_in_grad[0]);
  const torch::Tensor& dz = s.dz32;
  auto dmu = s.dstats.narrow(1, 0, l), dlogvar = s.dstats.narrow(1, l, l);
  at::mul_out(dmu, mu, cb_);
  dmu.add_(dz);
  at::mul_out(dlogvar, dz, s.eps);
  dlogvar.mul_(s.sd);
  dlogvar.addcmul_(s.sq1, cb_);
  dlogvar.mul_(0.5);
  if (low) s.dstats_lp.copy_(s.dstats);
  // The head and the encoder.
  const torch::Tensor& h_last = encoder_.empty() ? s.x_lp : s.enc.back();
  at::mm_out(head_.dw_lp, s.dstats_lp.t(), h_last);
  at::sum_out(head_.db_lp, s.dstats_lp, rows_dim);
  at::mm_out(s.enc_out_grad.back(), s.dstats_lp, head_.w_lp);
  for (size_t i = encoder_.size(); i-- > 0;) {
    Layer& layer = encoder_[i];
    torch::Tensor& gi = s.enc_out_grad[i];
    at::threshold_backward_out(gi, gi, s.enc[i], 0);
    at::mm_out(layer.dw_lp, gi.t(), i == 0 ? s.x_lp : s.enc[i - 1]);
    at::sum_out(layer.db_lp, gi, rows_dim);
    if (i > 0) at::mm_out(s.enc_out_grad[i - 1], gi, layer.w_lp);
  }
  if (low) flat.grads().copy_(grads_lp_);

  // The control slots, then the one all-reduce. A non-finite objective makes its slot NaN
  // (x * 0); fp16 skips such a step through its gradients instead.
  if (fp16) {
    flat.slot(FlatParameters::kNonFinite).zero_();
  } else {
    flat.slot(FlatParameters::kNonFinite).copy_(objective).mul_(0);
  }
  flat.slot(FlatParameters::kStop).copy_(stop_);
  if (fault == FaultAction::kOverflowGradients)
    flat.grads().narrow(0, 0, 1).fill_(std::numeric_limits<float>::infinity());
  Communicator& comm = *parts_.comm;
  if (comm.world().size > 1) {
    if (capturing) {
      comm.allreduce_sum_captured(flat.flat());
    } else {
      comm.allreduce_sum(flat.flat());
    }
  }

  // The update: fp16's unscale (skipping a step with inf/NaN) and scale update, the clip
  // factor max(1, (|g| + 1e-6) / max_norm) as the fused kernel's grad_scale (it divides the
  // gradients by it: clip_grad_norm_'s factor), fused Adam/AdamW.
  torch::Tensor grads = flat.grads();
  torch::Tensor found, grad_scale;
  if (fp16) {
    parts_.scaler->unscale_and_update_in_place(grads, found_, inv_scale_);
    found = found_;
  }
  if (options_.grad_clip > 0) {
    at::linalg_vector_norm_out(norm_, grads, 2, rows_dim, /*keepdim=*/true);
    clip_.copy_(norm_);
    clip_.add_(1e-6).div_(options_.grad_clip);
    clip_.clamp_min_(1.0);
    grad_scale = clip_;
  }
  parts_.adam->step_fused(grad_scale, found);
  if (fp16) parts_.skipped.add_(found_.reshape({}));
  step_.add_(1);
  s.sums64.copy_(s.sums4);
  sums.add_(s.sums64);
#else
  (void)s;
  (void)sums;
  (void)capturing;
  (void)fault;
  TORCH_CHECK(false, "--step graph needs libtorch 2.4 or later");
#endif
}

double DeviceStep::last_beta() const { return beta_.item<double>(); }

double DeviceStep::last_loss() const {
  TORCH_CHECK(last_ != nullptr, "DeviceStep: no step has run");
  return last_->sums4[kSumObjective].item<double>() / static_cast<double>(last_->global_rows);
}

bool DeviceStep::captured() const {
  for (const auto& [rows, s] : shapes_) {
    if (s->graph.captured()) return true;
  }
  return false;
}

int64_t DeviceStep::graph_nodes() const {
  for (const auto& [rows, s] : shapes_) {
    if (s->graph.captured()) return s->graph.node_count();
  }
  return -1;
}

}  // namespace vae
