#include "vae_ddp/model/loss.h"

#include <cmath>

#include <gtest/gtest.h>

#include "vae_ddp/model/model.h"

namespace vae {
namespace {

TEST(LossTest, KlIsZeroAtTheStandardNormal) {
  auto kl = kl_divergence(torch::zeros({3, 20}), torch::zeros({3, 20}));
  EXPECT_EQ(kl.sizes(), (std::vector<int64_t>{3}));
  EXPECT_NEAR(kl.abs().max().item<double>(), 0.0, 1e-7);
}

TEST(LossTest, KlMatchesHandValue) {
  // KL = 1/2 sum(s^2 + mu^2 - 1 - ln s^2): mu=(1,2), s^2=(1,4) -> 0.5 + 0.5 * (7 - ln 4).
  auto mu = torch::tensor({{1.0, 2.0}}, torch::kFloat64);
  auto logvar = torch::tensor({{0.0, std::log(4.0)}}, torch::kFloat64);
  EXPECT_NEAR(kl_divergence(mu, logvar).item<double>(), 0.5 + 0.5 * (7.0 - std::log(4.0)), 1e-12);
}

TEST(LossTest, KlMatchesClosedFormOnRandomValues) {
  torch::manual_seed(3);
  auto mu = torch::randn({4, 5}, torch::kFloat64), logvar = torch::randn({4, 5}, torch::kFloat64);
  auto kl = kl_divergence(mu, logvar);
  for (int64_t i = 0; i < 4; ++i) {
    double expected = 0;
    for (int64_t j = 0; j < 5; ++j) {
      const double m = mu[i][j].item<double>(), lv = logvar[i][j].item<double>();
      expected += 0.5 * (std::exp(lv) + m * m - 1 - lv);
    }
    EXPECT_NEAR(kl[i].item<double>(), expected, 1e-12);
  }
}

TEST(LossTest, BceOfZeroLogitsIsLn2PerPixel) {
  auto x = torch::rand({2, kImagePixels});
  auto bce = bernoulli_nll(torch::zeros({2, kImagePixels}), x);
  EXPECT_NEAR(bce[0].item<double>(), kImagePixels * std::log(2.0), 1e-3);
}

TEST(LossTest, BceMatchesSigmoidFormula) {
  torch::manual_seed(4);
  auto logits = torch::randn({3, kImagePixels}, torch::kFloat64) * 4;
  auto x = torch::rand({3, kImagePixels}, torch::kFloat64);
  auto bce = bernoulli_nll(logits, x);
  auto la = logits.accessor<double, 2>();
  auto xa = x.accessor<double, 2>();
  for (int64_t i = 0; i < 3; ++i) {
    double expected = 0;
    for (int64_t j = 0; j < kImagePixels; ++j) {
      const double p = 1.0 / (1.0 + std::exp(-la[i][j]));
      expected -= xa[i][j] * std::log(p) + (1 - xa[i][j]) * std::log(1 - p);
    }
    EXPECT_NEAR(bce[i].item<double>(), expected, 1e-9 * expected);
  }
}

TEST(LossTest, BceIsStableForLargeLogits) {
  auto bce = bernoulli_nll(torch::full({1, kImagePixels}, 200.0), torch::zeros({1, kImagePixels}));
  EXPECT_NEAR(bce.item<double>(), 200.0 * kImagePixels, 1e-2);
}

TEST(LossTest, ObjectiveDividesByTheGlobalBatch) {
  LossTerms t{torch::tensor({10.0, 20.0}), torch::tensor({1.0, 3.0})};
  EXPECT_NEAR(objective(t, /*beta=*/0.5, /*global_batch=*/2).item<double>(), (10 + 20 + 0.5 * 4) / 2.0, 1e-6);
  EXPECT_NEAR(objective(t, 1.0, /*global_batch=*/8).item<double>(), 34.0 / 8.0, 1e-6);
}

// The analytic gradient of the whole objective (model + loss) against central finite
// differences, in double precision on a tiny model.
TEST(LossTest, GradientMatchesFiniteDifferences) {
  torch::manual_seed(5);
  VAE model(std::vector<int64_t>{6, 5}, 3);
  model->to(torch::kFloat64);
  auto x = torch::rand({4, kImagePixels}, torch::kFloat64);
  auto eps = torch::randn({4, 3}, torch::kFloat64);
  auto loss_of = [&] {
    auto out = model->forward(x, eps);
    return objective(loss_terms(out.logits, x, out.mu, out.logvar), /*beta=*/0.7, 4);
  };
  model->zero_grad();
  loss_of().backward();
  torch::NoGradGuard no_grad;
  const double h = 1e-6;
  int checked = 0;
  for (auto& p : model->parameters()) {
    auto flat = p.view(-1);
    auto grad = p.grad().view(-1);
    for (int64_t i = 0; i < flat.numel(); i += std::max<int64_t>(1, flat.numel() / 7)) {
      const double orig = flat[i].item<double>();
      flat[i].fill_(orig + h);
      const double up = loss_of().item<double>();
      flat[i].fill_(orig - h);
      const double down = loss_of().item<double>();
      flat[i].fill_(orig);
      const double numeric = (up - down) / (2 * h);
      EXPECT_NEAR(grad[i].item<double>(), numeric, 1e-5 * std::max(1.0, std::abs(numeric))) << p.sizes() << " " << i;
      ++checked;
    }
  }
  EXPECT_GT(checked, 40);
}

}  // namespace
}  // namespace vae
