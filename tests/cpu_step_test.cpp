// The CPU fast path against libtorch autograd: same loss terms, same gradients.
#include "vae_ddp/train/cpu_step.h"

#include <gtest/gtest.h>

#include "test_util.h"
#include "vae_ddp/dist/data_parallel.h"
#include "vae_ddp/train/cpu_gemm.h"

namespace vae {
namespace {

// Every transpose/bias/ReLU/accumulate combination against torch::matmul, odd sizes.
TEST(CpuStepChunksTest, OneChunkPerThreadWhileEachHasEnoughRows) {
  EXPECT_EQ(CpuStep::chunks_for(128, 1), 1);
  EXPECT_EQ(CpuStep::chunks_for(128, 2), 2);
  EXPECT_EQ(CpuStep::chunks_for(128, 16), 128 / CpuStep::kRowsPerChunk);
  EXPECT_EQ(CpuStep::chunks_for(CpuStep::kRowsPerChunk - 1, 2), 1);
}

TEST(CpuGemmTest, MatchesTorchMatmul) {
  torch::manual_seed(0);
  const int64_t m = 37, n = 53, k = 29;
  for (int mask = 0; mask < 16; ++mask) {
    cpu::GemmOp op;
    op.trans_a = mask & 1;
    op.trans_b = mask & 2;
    op.relu = mask & 4;
    op.accumulate = mask & 8;
    auto a = op.trans_a ? torch::randn({k, m}) : torch::randn({m, k});
    auto b = op.trans_b ? torch::randn({n, k}) : torch::randn({k, n});
    auto bias = torch::randn({n});
    auto c = torch::randn({m, n});
    auto expected = torch::matmul(op.trans_a ? a.t() : a, op.trans_b ? b.t() : b) + bias;
    if (op.accumulate) expected += c;  // oneDNN applies the sum post-op before the ReLU
    if (op.relu) expected = expected.clamp_min(0);
    cpu::gemm(op, m, n, k, a.data_ptr<float>(), b.data_ptr<float>(), bias.data_ptr<float>(), c.data_ptr<float>());
    EXPECT_TRUE(torch::allclose(c, expected, /*rtol=*/1e-5, /*atol=*/1e-5)) << "case " << mask;
  }
}

// The fast path's loss terms and gradients for `rows` rows of a global batch of `global`
// against autograd's, run on `threads` intra-op threads.
void ExpectFastStepMatchesAutograd(const std::vector<int64_t>& hidden, int64_t rows, int64_t global, int threads) {
  torch::manual_seed(1);
  VAE model(hidden, /*latent_dim=*/6);
  FlatParameters buffer(model->parameters());
  const double beta = 0.7;
  auto x = torch::rand({rows, kImagePixels});
  auto eps = torch::randn({rows, 6});

  auto out = model->forward(x, eps);
  auto terms = loss_terms(out.logits, x, out.mu, out.logvar);
  objective(terms, beta, global).backward();
  const auto autograd = buffer.grads().clone();

  buffer.zero_grads();
  CpuStep step(model);
  const int before = torch::get_num_threads();
  torch::set_num_threads(threads);
  step.run(x, eps, beta, global);  // twice: the second run must overwrite, not add to, the first's gradients
  const LossTerms fast = step.run(x, eps, beta, global);
  torch::set_num_threads(before);
  EXPECT_TRUE(torch::allclose(fast.bce, terms.bce.detach(), 1e-5, 1e-3));
  EXPECT_TRUE(torch::allclose(fast.kld, terms.kld.detach(), 1e-5, 1e-4));
  const double rel = ((buffer.grads() - autograd).norm() / autograd.norm()).item<double>();
  EXPECT_LT(rel, 1e-5) << "relative gradient difference";
  // Per tensor too, so a small layer cannot hide behind a big one.
  int64_t offset = 0;
  for (const auto& p : model->parameters()) {
    auto a = autograd.narrow(0, offset, p.numel()), f = buffer.grads().narrow(0, offset, p.numel());
    EXPECT_LT(((f - a).norm() / a.norm().clamp_min(1e-12)).item<double>(), 1e-4) << "parameter at " << offset;
    offset += p.numel();
  }
}

class CpuStepTest : public ::testing::TestWithParam<std::vector<int64_t>> {};

TEST_P(CpuStepTest, GradientsMatchAutograd) {
  ExpectFastStepMatchesAutograd(GetParam(), /*rows=*/19, /*global=*/40, /*threads=*/1);  // a shard of a larger batch
}

// Enough rows for several threads: the rows are split into one chunk per thread, each runs
// the whole step, and the chunks' gradients are summed (uneven chunks here).
TEST_P(CpuStepTest, RowChunksOnSeveralThreadsMatchAutograd) {
  ASSERT_EQ(CpuStep::chunks_for(2 * CpuStep::kRowsPerChunk + 3, 2), 2);
  ASSERT_EQ(CpuStep::chunks_for(4 * CpuStep::kRowsPerChunk + 1, 4), 4);
  ExpectFastStepMatchesAutograd(GetParam(), /*rows=*/2 * CpuStep::kRowsPerChunk + 3, /*global=*/200, /*threads=*/2);
  ExpectFastStepMatchesAutograd(GetParam(), /*rows=*/4 * CpuStep::kRowsPerChunk + 1, /*global=*/200, /*threads=*/4);
}

INSTANTIATE_TEST_SUITE_P(Architectures, CpuStepTest,
                         ::testing::Values(std::vector<int64_t>{32}, std::vector<int64_t>{48, 24},
                                           std::vector<int64_t>{64, 32, 16}));

}  // namespace
}  // namespace vae
