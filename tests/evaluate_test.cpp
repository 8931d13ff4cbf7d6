// The importance-weighted log-likelihood estimate: its defining inequalities, and the
// chunked, streaming implementation against a direct one.
#include "vae_ddp/train/evaluate.h"

#include <gtest/gtest.h>

#include "test_util.h"
#include "vae_ddp/base/rng.h"
#include "vae_ddp/train/trainer.h"

namespace vae {
namespace {

class ImportanceWeightedTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const Dataset train = load_mnist(VAE_DDP_DATA_DIR, Split::kTrain, /*verify_md5=*/false, /*limit=*/3000);
    test_ = new Dataset(load_mnist(VAE_DDP_DATA_DIR, Split::kTest, false, /*limit=*/300));
    testing::TempDir dir;
    Config c;
    c.out_dir = dir.path();
    c.hidden_dims = {128};
    c.latent_dim = 8;
    trainer_ = new Trainer(c, train, *test_, torch::kCPU, testing::LocalComm());
    trainer_->train_epoch(1);
  }
  static void TearDownTestSuite() {
    delete trainer_;
    delete test_;
  }
  double Iw(int64_t k, const Dataset& data) {
    return importance_weighted_nll(trainer_->model(), data, /*seed=*/3, k, torch::kCPU, testing::LocalComm());
  }
  static Trainer* trainer_;
  static Dataset* test_;
};
Trainer* ImportanceWeightedTest::trainer_ = nullptr;
Dataset* ImportanceWeightedTest::test_ = nullptr;

TEST_F(ImportanceWeightedTest, TightensWithKAndStaysBelowTheElbo) {
  const double elbo = evaluate(trainer_->model(), *test_, 3, torch::kCPU, testing::LocalComm()).loss;
  const double k1 = Iw(1, *test_), k10 = Iw(10, *test_), k100 = Iw(100, *test_);
  EXPECT_LT(k10, k1);
  EXPECT_LT(k100, k10);
  EXPECT_LT(k100, elbo);
  EXPECT_NEAR(k1 / elbo, 1.0, 0.01) << "K = 1 is the ELBO itself, with other noise";
}

// K = 5000 takes two decoder chunks (4096 + 904 samples): the streaming log-sum-exp must
// equal the direct formula over all samples at once, with the same noise.
TEST_F(ImportanceWeightedTest, ChunkedEqualsDirect) {
  const int64_t k = 5000, latent = 8;
  Dataset three{test_->images.slice(0, 0, 3), test_->labels.slice(0, 0, 3)};
  torch::NoGradGuard no_grad;
  VAE& model = trainer_->model();
  model->eval();
  double total = 0;
  for (int64_t i = 0; i < 3; ++i) {
    auto x = three.images.slice(0, i, i + 1);  // [1, 784]
    auto [mu, logvar] = model->encode(x);
    auto g0 = make_generator(3, Stream::kImportance, i, 0), g1 = make_generator(3, Stream::kImportance, i, 1);
    auto eps = torch::cat({torch::randn({4096, latent}, g0), torch::randn({k - 4096, latent}, g1)});  // [K, L]
    auto sd = torch::exp(0.5 * logvar);
    auto z = mu + sd * eps;
    auto p = torch::sigmoid(model->decode(z)).to(torch::kFloat64).clamp(1e-300, 1 - 1e-16);
    auto xd = x.to(torch::kFloat64);
    auto log_px = (xd * p.log() + (1 - xd) * (1 - p).log()).sum(1);                               // log p(x|z)
    auto log_pz = -0.5 * z.to(torch::kFloat64).square().sum(1);                                   // up to the 2*pi term
    auto log_qz = -0.5 * (eps.to(torch::kFloat64).square() + logvar.to(torch::kFloat64)).sum(1);  // same
    total += (torch::logsumexp(log_px + log_pz - log_qz, 0) - std::log(double(k))).item<double>();
  }
  EXPECT_NEAR(Iw(k, three), -total / 3, 1e-3);
}

}  // namespace
}  // namespace vae
