// The model variants of the seed recipes: each checked against an independent
// computation (closed forms, libtorch's own modules and optimizers), then for shapes
// and one epoch of training.
#include <limits>

#include <gtest/gtest.h>

#include "test_util.h"
#include "vae_ddp/base/config.h"
#include "vae_ddp/model/loss.h"
#include "vae_ddp/model/model.h"
#include "vae_ddp/train/flat_adam.h"
#include "vae_ddp/train/trainer.h"

namespace vae {
namespace {

ModelOptions Options(const std::function<void(Config&)>& tweak) {
  Config c;
  c.hidden_dims = {8};
  c.latent_dim = 3;
  tweak(c);
  return model_options(c);
}

// mu of a one-hidden-layer encoder written out: head(act(W x + b)), first half.
torch::Tensor ManualMu(VAE& model, const torch::Tensor& x, const std::function<torch::Tensor(torch::Tensor)>& act) {
  const auto layers = model->layers();
  const auto& enc = layers.encoder[0];
  auto h = act(torch::matmul(x, enc->weight.t()) + enc->bias);
  auto stats = torch::matmul(h, layers.head->weight.t()) + layers.head->bias;
  return stats.slice(1, 0, model->latent_dim());
}

TEST(VariantsTest, ActivationsAreTheNamedFunctions) {
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({4, kImagePixels});
  const std::map<std::string, std::function<torch::Tensor(torch::Tensor)>> expected = {
      {"relu", [](torch::Tensor h) { return h.clamp_min(0); }},
      {"leaky_relu", [](torch::Tensor h) { return torch::where(h > 0, h, 0.01 * h); }},
      {"tanh", [](torch::Tensor h) { return (h.exp() - (-h).exp()) / (h.exp() + (-h).exp()); }},
  };
  for (const auto& [name, act] : expected) {
    VAE model(Options([&](Config& c) { c.activation = parse_choice<Activation>(name, "--activation"); }));
    EXPECT_TRUE(torch::allclose(model->encode(x).first, ManualMu(model, x, act), 1e-5, 1e-6)) << name;
  }
}

TEST(VariantsTest, BatchNormMatchesTorchBatchNorm1d) {
  torch::manual_seed(3);
  SyncBatchNorm ours(5);
  torch::nn::BatchNorm1d theirs(5);
  torch::NoGradGuard outer;
  ours->weight.uniform_(0.5, 1.5);
  ours->bias.uniform_(-1, 1);
  theirs->weight.copy_(ours->weight);
  theirs->bias.copy_(ours->bias);
  for (int step = 0; step < 3; ++step) {  // training mode: batch statistics, running averages updated
    auto x = torch::randn({16, 5}) * 3 + 2;
    auto xa = x.clone().requires_grad_(), xb = x.clone().requires_grad_();
    torch::AutoGradMode grad(true);
    auto ya = ours->forward(xa), yb = theirs->forward(xb);
    EXPECT_TRUE(torch::allclose(ya, yb, 1e-4, 1e-5));
    auto w = torch::randn({16, 5});
    (ya * w).sum().backward();
    (yb * w).sum().backward();
    EXPECT_TRUE(torch::allclose(xa.grad(), xb.grad(), 1e-4, 1e-5));
    EXPECT_TRUE(torch::allclose(ours->weight.grad(), theirs->weight.grad(), 1e-4, 1e-5));
  }
  EXPECT_TRUE(torch::allclose(ours->running_mean, theirs->running_mean, 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(ours->running_var, theirs->running_var, 1e-5, 1e-6));
  ours->eval();
  theirs->eval();
  auto x = torch::randn({7, 5});
  EXPECT_TRUE(torch::allclose(ours->forward(x), theirs->forward(x), 1e-5, 1e-6));  // eval: running statistics
}

TEST(VariantsTest, DropoutMasksKeepOneMinusPAndRescale) {
  const auto masks = dropout_masks({100, 50}, 0.3, 2000, /*seed=*/1, /*epoch=*/2, /*step=*/5);
  ASSERT_EQ(masks.size(), 2u);
  EXPECT_EQ(masks[1].sizes(), (std::vector<int64_t>{2000, 50}));
  const double kept = masks[0].gt(0).to(torch::kFloat64).mean().item<double>();
  EXPECT_NEAR(kept, 0.7, 4 * std::sqrt(0.7 * 0.3 / 200000));
  EXPECT_NEAR(masks[0].max().item<double>(), 1 / 0.7, 1e-6);
  EXPECT_TRUE(torch::equal(masks[0], dropout_masks({100, 50}, 0.3, 2000, 1, 2, 5)[0]));  // a function of the step
  EXPECT_FALSE(torch::equal(masks[0], dropout_masks({100, 50}, 0.3, 2000, 1, 2, 6)[0]));
  EXPECT_TRUE(dropout_masks({100}, 0.0, 10, 1, 1, 1).empty());
}

TEST(VariantsTest, DropoutMasksApplyAfterTheActivation) {
  torch::NoGradGuard no_grad;
  VAE model(Options([](Config& c) { c.dropout = 0.5; }));
  const auto x = torch::rand({4, kImagePixels});
  ForwardExtras extras;
  extras.dropout = {torch::zeros({4, 8}), torch::ones({4, 8})};  // encoder hidden units all dropped
  const auto head = model->layers().head;
  const auto bias_only = head->bias.slice(0, 0, 3).expand({4, 3});
  EXPECT_TRUE(torch::allclose(model->encode(x, extras).first, bias_only));
}

TEST(VariantsTest, SquaredErrorIsTheClosedForm) {
  auto logits = torch::tensor({{0.0, 2.0}});
  auto x = torch::tensor({{1.0, 0.0}});
  const double s = 1 / (1 + std::exp(-2.0));
  EXPECT_NEAR(squared_error(logits, x).item<double>(), 0.25 + s * s, 1e-6);
}

TEST(VariantsTest, ConditionalModelUsesTheLabel) {
  torch::NoGradGuard no_grad;
  VAE model(Options([](Config& c) { c.conditional = true; }));
  EXPECT_EQ(model->layers().encoder[0]->weight.size(1), kImagePixels + kClasses);
  EXPECT_EQ(model->layers().decoder[0]->weight.size(1), 3 + kClasses);
  const auto z = torch::randn({2, 3});
  const auto a = model->decode(z, {torch::tensor({1, 1})}), b = model->decode(z, {torch::tensor({1, 7})});
  EXPECT_TRUE(torch::equal(a[0], b[0]));
  EXPECT_FALSE(torch::allclose(a[1], b[1]));
  EXPECT_THROW(model->decode(z), c10::Error);  // no labels given
}

// Runs `steps` updates of FlatAdam and of libtorch's `reference` optimizer from the same
// weights and gradients; returns the largest difference of the weights. `device_path`:
// FlatAdam's ATen sequence (what CUDA runs, with its step count on the device) instead of
// the fused CPU loop.
template <class Reference, class Options>
double AdamDifference(bool decoupled, const Options& ref_options, double weight_decay, bool device_path = false) {
  torch::manual_seed(5);
  auto w0 = torch::randn({37});
  auto ours = w0.clone().requires_grad_(), theirs = w0.clone().requires_grad_();
  FlatParameters storage({ours});
  auto grads = storage.grads();
  AdamOptions options;
  options.lr = 0.01;
  options.weight_decay = weight_decay;
  options.decoupled = decoupled;
  FlatAdam flat(storage.params(), grads, options);
  Reference reference({theirs}, ref_options);
  for (int step = 0; step < 5; ++step) {
    auto g = torch::randn({37});
    grads.copy_(g);
    theirs.mutable_grad() = g.clone();
    flat.step(device_path ? torch::zeros({}) : torch::Tensor());  // skip = 0: the ATen sequence
    reference.step();
  }
  EXPECT_EQ(flat.steps(), 5);
  return (ours - theirs).abs().max().item<double>();
}

TEST(VariantsTest, AdamWeightDecayMatchesLibtorch) {
  EXPECT_LT((AdamDifference<torch::optim::AdamW>(true, torch::optim::AdamWOptions(0.01).weight_decay(0.1), 0.1)), 1e-6);
  EXPECT_LT((AdamDifference<torch::optim::Adam>(false, torch::optim::AdamOptions(0.01).weight_decay(0.1), 0.1)), 1e-6);
  // The control: AdamW is not Adam with L2.
  EXPECT_GT((AdamDifference<torch::optim::Adam>(true, torch::optim::AdamOptions(0.01).weight_decay(0.1), 0.1)), 1e-4);
}

TEST(VariantsTest, AdamDevicePathMatchesLibtorch) {
  EXPECT_LT((AdamDifference<torch::optim::Adam>(false, torch::optim::AdamOptions(0.01), 0, true)), 1e-6);
  EXPECT_LT((AdamDifference<torch::optim::AdamW>(true, torch::optim::AdamWOptions(0.01).weight_decay(0.1), 0.1, true)),
            1e-6);
  EXPECT_LT((AdamDifference<torch::optim::Adam>(false, torch::optim::AdamOptions(0.01).weight_decay(0.1), 0.1, true)),
            1e-6);
}

// fp16's skip, decided on the device: a skipped update changes nothing (weights, moments,
// step count), so the run continues exactly as one that never saw that step.
TEST(VariantsTest, AdamSkipOnTheDeviceLeavesEverythingAsItWas) {
  torch::manual_seed(6);
  const auto w0 = torch::randn({29});
  auto a = w0.clone().requires_grad_(), b = w0.clone().requires_grad_();
  FlatParameters sa({a}), sb({b});
  AdamOptions options;
  options.lr = 0.01;
  FlatAdam with_skip(sa.params(), sa.grads(), options), without(sb.params(), sb.grads(), options);
  const auto g1 = torch::randn({29}), g2 = torch::randn({29});
  sa.grads().copy_(g1);
  with_skip.step(torch::zeros({1}));
  sa.grads().fill_(std::numeric_limits<float>::infinity());  // the overflowed step
  const auto p_before = sa.params().clone(), m_before = with_skip.exp_avg().clone();
  with_skip.step(torch::ones({1}));
  EXPECT_TRUE(torch::equal(sa.params(), p_before));
  EXPECT_TRUE(torch::equal(with_skip.exp_avg(), m_before));
  EXPECT_EQ(with_skip.steps(), 1);
  sa.grads().copy_(g2);
  with_skip.step(torch::zeros({1}));
  for (const auto& g : {g1, g2}) {
    sb.grads().copy_(g);
    without.step(torch::zeros({1}));
  }
  EXPECT_TRUE(torch::equal(sa.params(), sb.params()));
  EXPECT_TRUE(torch::equal(with_skip.exp_avg_sq(), without.exp_avg_sq()));
  EXPECT_EQ(with_skip.steps(), 2);
}

TEST(VariantsTest, GradientClippingMatchesLibtorch) {
  auto g = torch::randn({50}) * 10;
  auto p = torch::zeros({50}, torch::requires_grad());
  p.mutable_grad() = g.clone();
  const double ref_norm = torch::nn::utils::clip_grad_norm_(std::vector<torch::Tensor>{p}, 2.5);
  auto ours = g.clone();
  EXPECT_NEAR(clip_grad_norm(ours, 2.5).item<double>(), ref_norm, 1e-4);
  EXPECT_TRUE(torch::allclose(ours, p.grad()));
  EXPECT_NEAR(ours.norm().item<double>(), 2.5, 1e-4);
  auto small = torch::full({4}, 0.1);
  clip_grad_norm(small, 2.5);
  EXPECT_TRUE(torch::allclose(small, torch::full({4}, 0.1)));  // under the limit: untouched
}

// Every variant of the seeds: output shapes, then one epoch that lowers the loss.
struct Variant {
  const char* name;
  std::function<void(Config&)> tweak;
};

class VariantTrainingTest : public ::testing::TestWithParam<Variant> {};

TEST_P(VariantTrainingTest, ShapesAndOneEpoch) {
  testing::TempDir dir;
  Config c = testing::TinyConfig(dir.path());
  GetParam().tweak(c);
  validate(c);
  const Dataset data = testing::SyntheticData();
  Trainer trainer(c, data, data, torch::kCPU, testing::LocalComm());
  auto out = trainer.model()->forward(data.images.slice(0, 0, 5), torch::randn({5, c.latent_dim}),
                                      {data.labels.slice(0, 0, 5)});
  EXPECT_EQ(out.logits.sizes(), (std::vector<int64_t>{5, kImagePixels}));
  EXPECT_EQ(out.mu.sizes(), (std::vector<int64_t>{5, c.latent_dim}));
  auto flat = [&] {
    std::vector<torch::Tensor> v;
    for (const auto& p : trainer.model()->parameters()) v.push_back(p.detach().reshape(-1));
    return torch::cat(v);
  };
  const auto before = flat();
  const EpochStats first = trainer.train_epoch(1), second = trainer.train_epoch(2);
  EXPECT_TRUE(std::isfinite(first.loss) && std::isfinite(second.loss));
  EXPECT_LT(second.loss, first.loss) << GetParam().name;
  EXPECT_FALSE(torch::equal(before, flat()));
}

INSTANTIATE_TEST_SUITE_P(Seeds, VariantTrainingTest,
                         ::testing::Values(Variant{"hidden_512_256",
                                                   [](Config& c) {
                                                     c.hidden_dims = {512, 256};
                                                     c.latent_dim = 32;
                                                   }},
                                           Variant{"leaky_relu",
                                                   [](Config& c) { c.activation = Activation::kLeakyRelu; }},
                                           Variant{"tanh", [](Config& c) { c.activation = Activation::kTanh; }},
                                           Variant{"batch_norm", [](Config& c) { c.batch_norm = true; }},
                                           Variant{"dropout", [](Config& c) { c.dropout = 0.2; }},
                                           Variant{"mse", [](Config& c) { c.recon_loss = ReconLoss::kMse; }},
                                           Variant{"adamw",
                                                   [](Config& c) {
                                                     c.optimizer = Optimizer::kAdamW;
                                                     c.weight_decay = 0.01;
                                                   }},
                                           Variant{"grad_clip", [](Config& c) { c.grad_clip = 1.0; }},
                                           Variant{"latent_2", [](Config& c) { c.latent_dim = 2; }},
                                           Variant{"latent_16", [](Config& c) { c.latent_dim = 16; }},
                                           Variant{"latent_64", [](Config& c) { c.latent_dim = 64; }},
                                           Variant{"conditional", [](Config& c) { c.conditional = true; }}),
                         [](const ::testing::TestParamInfo<Variant>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace vae
