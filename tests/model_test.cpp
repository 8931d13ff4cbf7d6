#include "vae_ddp/model/model.h"

#include <gtest/gtest.h>

namespace vae {
namespace {

TEST(ModelTest, ArchitectureComparison) {
  Config a, b;
  EXPECT_TRUE(same_architecture(a, b));
  b.lr = 0.1;
  EXPECT_TRUE(same_architecture(a, b));
  b.latent_dim = 2;
  EXPECT_FALSE(same_architecture(a, b));
  EXPECT_EQ(describe_architecture(b), "784-400-2");
}

TEST(ModelTest, ShapesFollowTheArchitecture) {
  VAE model(std::vector<int64_t>{512, 256}, 32);
  auto out = model->forward(torch::rand({5, kImagePixels}), torch::randn({5, 32}));
  EXPECT_EQ(out.logits.sizes(), (std::vector<int64_t>{5, 784}));
  EXPECT_EQ(out.mu.sizes(), (std::vector<int64_t>{5, 32}));
  EXPECT_EQ(out.logvar.sizes(), (std::vector<int64_t>{5, 32}));
}

TEST(ModelTest, DefaultModelHasTheSeedParameterCount) {
  // pytorch/examples: 784*400+400 + 2*(400*20+20) + 20*400+400 + 400*784+784.
  VAE model(std::vector<int64_t>{400}, 20);
  int64_t n = 0;
  for (const auto& p : model->parameters()) n += p.numel();
  EXPECT_EQ(n, 784 * 400 + 400 + 2 * (400 * 20 + 20) + 20 * 400 + 400 + 400 * 784 + 784);
}

TEST(ModelTest, ZeroNoiseDecodesTheMean) {
  VAE model(std::vector<int64_t>{16}, 4);
  auto x = torch::rand({3, kImagePixels});
  auto out = model->forward(x, torch::zeros({3, 4}));
  EXPECT_TRUE(torch::allclose(out.logits, model->decode(out.mu)));
}

TEST(ModelTest, ReparameterizationHasTheRightMoments) {
  // z = mu + sigma * eps with mu = 3, sigma = 0.5: sample mean and std within 4 standard errors.
  const int64_t n = 200000;
  auto gen = at::detail::createCPUGenerator(11);
  auto eps = torch::randn({n, 1}, gen, torch::kFloat64);
  auto z = reparameterize(torch::full({n, 1}, 3.0, torch::kFloat64),
                          torch::full({n, 1}, std::log(0.25), torch::kFloat64), eps);
  const double se = 0.5 / std::sqrt(static_cast<double>(n));
  EXPECT_NEAR(z.mean().item<double>(), 3.0, 4 * se);
  EXPECT_NEAR(z.std().item<double>(), 0.5, 4 * 0.5 / std::sqrt(2.0 * n));
}

TEST(ModelTest, GradientFlowsThroughTheNoise) {
  auto mu = torch::zeros({2, 3}, torch::requires_grad());
  auto logvar = torch::zeros({2, 3}, torch::requires_grad());
  auto eps = torch::ones({2, 3}) * 2;
  reparameterize(mu, logvar, eps).sum().backward();
  EXPECT_TRUE(torch::allclose(mu.grad(), torch::ones({2, 3})));
  EXPECT_TRUE(torch::allclose(logvar.grad(), torch::ones({2, 3})));  // d/dlv exp(lv/2)*2 = 1 at 0
}

}  // namespace
}  // namespace vae
