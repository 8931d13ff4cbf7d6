#include "vae_ddp/train/trainer.h"
#include "vae_ddp/parallel/data_parallel.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace vae {
namespace {

class TrainerTest : public ::testing::Test {
 protected:
  Trainer Make() {
    return Trainer(testing::TinyConfig(dir_.path()), testing::SyntheticData(), testing::SyntheticData(), torch::kCPU,
                   testing::LocalComm());
  }
  testing::TempDir dir_;
};

TEST_F(TrainerTest, PermutationCoversEveryIndexOnce) {
  auto p = epoch_permutation(300, /*seed=*/1, /*epoch=*/3);
  EXPECT_TRUE(torch::equal(std::get<0>(p.sort()), torch::arange(300)));
  EXPECT_TRUE(torch::equal(p, epoch_permutation(300, 1, 3)));
  EXPECT_FALSE(torch::equal(p, epoch_permutation(300, 1, 4)));
  EXPECT_FALSE(torch::equal(p, epoch_permutation(300, 2, 3)));
}

TEST_F(TrainerTest, EpochUsesEveryImageOnceIncludingThePartialBatch) {
  Trainer t = Make();
  EXPECT_EQ(t.steps_per_epoch(), 5);
  const EpochStats s = t.train_epoch(1);
  EXPECT_EQ(s.images, 300);
  EXPECT_EQ(t.progress().global_step, 5);
  EXPECT_EQ(t.progress().epoch, 1);
  EXPECT_NEAR(s.loss, s.bce + s.kld, 1e-6 * s.loss);  // beta = 1
}

TEST_F(TrainerTest, TrainingLowersTheLoss) {
  Trainer t = Make();
  const double first = t.train_epoch(1).loss;
  double last = first;
  for (int64_t e = 2; e <= 4; ++e) last = t.train_epoch(e).loss;
  EXPECT_LT(last, first - 10.0);
}

TEST_F(TrainerTest, SameSeedSameWeights) {
  Trainer a = Make(), b = Make();
  a.train_epoch(1);
  b.train_epoch(1);
  auto pa = a.model()->parameters(), pb = b.model()->parameters();
  for (size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i]));
}

}  // namespace
}  // namespace vae
