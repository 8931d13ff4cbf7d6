// The batch builder: at any world size, the ranks' batches of a step are disjoint, cover
// the global batch, and carry exactly the global batch's rows (pixels, noise, labels,
// dropout masks, binarization draws) — the world-size-invariance rule, tested directly.
#include "vae_ddp/train/batch.h"

#include <set>

#include <gtest/gtest.h>

#include "vae_ddp/parallel/data_parallel.h"

namespace vae {
namespace {

class BatchTest : public ::testing::Test {
 protected:
  // 50 images in batches of 16: the last global batch has 2 rows, so ranks 2 and 3 of 4
  // get none. Every per-image draw is on: dynamic binarization, labels, dropout.
  BatchTest() {
    config_.batch_size = 16;
    config_.latent_dim = 3;
    config_.binarize = Binarize::kDynamic;
    config_.conditional = true;
    config_.dropout = 0.3;
    train_.images = torch::rand({50, kImagePixels}, torch::kFloat32);
    train_.labels = torch::randint(0, kClasses, {50}, torch::kInt64);
  }
  BatchMaker Maker() const {
    BatchMaker m(config_, train_, /*hidden_widths=*/{8, 4, 8}, torch::kCPU);
    m.begin_epoch(/*epoch=*/2);
    return m;
  }
  // Rows rank, rank + world, ... of a global tensor (dim 0).
  static torch::Tensor Rows(const torch::Tensor& t, int rank, int world) { return shard_rows(t, rank, world); }

  Config config_;
  Dataset train_;
};

TEST_F(BatchTest, ShardsAreDisjointAndCoverTheGlobalBatch) {
  const BatchMaker maker = Maker();
  ASSERT_EQ(maker.steps_per_epoch(), 4);
  for (int world = 1; world <= 4; ++world) {
    for (int64_t step = 0; step < maker.steps_per_epoch(); ++step) {
      const Batch global = maker.make(step, /*rank=*/0, /*world=*/1);
      std::set<int64_t> seen;
      int64_t rows = 0;
      for (int rank = 0; rank < world; ++rank) {
        const Batch b = maker.make(step, rank, world);
        EXPECT_EQ(b.global_rows, global.rows());
        EXPECT_EQ(b.rows(), shard_size(global.rows(), rank, world));
        for (int64_t i = 0; i < b.rows(); ++i) seen.insert(b.indices[i].item<int64_t>());
        rows += b.rows();
      }
      EXPECT_EQ(rows, global.rows()) << "world " << world << " step " << step;
      EXPECT_EQ(static_cast<int64_t>(seen.size()), global.rows()) << "world " << world << " step " << step;
    }
  }
}

TEST_F(BatchTest, EachRankGetsTheGlobalBatchsRowsWithTheSameDraws) {
  const BatchMaker maker = Maker();
  for (int world = 2; world <= 4; ++world) {
    for (int64_t step = 0; step < maker.steps_per_epoch(); ++step) {
      const Batch g = maker.make(step, 0, 1);
      for (int rank = 0; rank < world; ++rank) {
        const Batch b = maker.make(step, rank, world);
        EXPECT_TRUE(torch::equal(b.indices, Rows(g.indices, rank, world)));
        EXPECT_TRUE(torch::equal(b.x, Rows(g.x, rank, world)));
        EXPECT_TRUE(torch::equal(b.eps, Rows(g.eps, rank, world)));
        EXPECT_TRUE(torch::equal(b.extras.labels, Rows(g.extras.labels, rank, world)));
        ASSERT_EQ(b.extras.dropout.size(), 3u);
        for (size_t k = 0; k < 3; ++k) {
          EXPECT_TRUE(torch::equal(b.extras.dropout[k], Rows(g.extras.dropout[k], rank, world)));
        }
      }
    }
  }
}

TEST_F(BatchTest, DrawsAreTheEpochsAndStepsOwn) {
  const BatchMaker maker = Maker();
  const Batch g = maker.make(/*step=*/1, 0, 1);
  // Binarized pixels are 0 or 1, drawn from the rows' intensities.
  EXPECT_TRUE(torch::logical_or(g.x == 0, g.x == 1).all().item<bool>());
  EXPECT_TRUE(torch::equal(g.extras.labels, train_.labels.index_select(0, g.indices)));
  // Another step, or the same step of another epoch, draws other noise.
  EXPECT_FALSE(torch::equal(maker.make(/*step=*/2, 0, 1).eps, g.eps));
  BatchMaker other(config_, train_, {8, 4, 8}, torch::kCPU);
  other.begin_epoch(/*epoch=*/3);
  EXPECT_FALSE(torch::equal(other.make(/*step=*/1, 0, 1).eps, g.eps));
}

}  // namespace
}  // namespace vae
