// The CPU fast path against libtorch autograd: same loss terms, same gradients.
#include "vae_ddp/train/cpu_step.h"

#include <cmath>
#include <cstdio>
#include <functional>

#include <gtest/gtest.h>

#include "test_util.h"
#include "vae_ddp/parallel/data_parallel.h"
#include "vae_ddp/train/amp.h"
#include "vae_ddp/train/cpu_gemm.h"

namespace vae {
namespace {

TEST(CpuStepChunksTest, OneChunkPerThreadWhileEachHasEnoughRows) {
  EXPECT_EQ(CpuStep::chunks_for(128, 1), 1);
  EXPECT_EQ(CpuStep::chunks_for(128, 2), 2);
  const int64_t per_chunk = CpuStepOptions{}.rows_per_chunk;
  EXPECT_EQ(CpuStep::chunks_for(128, 16), 128 / per_chunk);
  EXPECT_EQ(CpuStep::chunks_for(per_chunk - 1, 2), 1);
  EXPECT_EQ(CpuStep::chunks_for(128, 2, /*rows_per_chunk=*/129), 1) << "a larger minimum: not split";
}

torch::Tensor bf16_rounded(const torch::Tensor& t) { return t.to(torch::kBFloat16).to(torch::kFloat32); }

// Every transpose/bias/ReLU/accumulate combination against torch::matmul, odd sizes; with
// bf16 GEMMs, against torch::matmul of the operands rounded to bf16 (ATen's rounding), and
// not equal to the fp32 product (the rounding happened).
TEST(CpuGemmTest, MatchesTorchMatmul) {
  torch::manual_seed(0);
  const int64_t m = 37, n = 53, k = 29;
  for (int mask = 0; mask < 32; ++mask) {
    cpu::GemmOp op;
    op.trans_a = mask & 1;
    op.trans_b = mask & 2;
    op.relu = mask & 4;
    op.accumulate = mask & 8;
    op.bf16 = mask & 16;
    auto a = op.trans_a ? torch::randn({k, m}) : torch::randn({m, k});
    auto b = op.trans_b ? torch::randn({n, k}) : torch::randn({k, n});
    auto bias = torch::randn({n});
    auto c = torch::randn({m, n});
    auto result = [&](const torch::Tensor& a_mk, const torch::Tensor& b_kn) {
      auto r = torch::matmul(a_mk, b_kn) + bias;
      if (op.accumulate) r += c;  // oneDNN applies the sum post-op before the ReLU
      return op.relu ? r.clamp_min(0) : r;
    };
    const auto a_mk = op.trans_a ? a.t() : a, b_kn = op.trans_b ? b.t() : b;
    const auto fp32 = result(a_mk, b_kn);
    const auto expected = op.bf16 ? result(bf16_rounded(a_mk), bf16_rounded(b_kn)) : fp32;
    cpu::gemm(op, m, n, k, a.data_ptr<float>(), b.data_ptr<float>(), bias.data_ptr<float>(), c.data_ptr<float>());
    EXPECT_TRUE(torch::allclose(c, expected, /*rtol=*/1e-5, /*atol=*/1e-5)) << "case " << mask;
    if (op.bf16) {
      EXPECT_GT((c - fp32).abs().max().item<double>(), 1e-3) << "case " << mask << ": no bf16 rounding";
    }
  }
}

// |a - b| / |b| (the denominator kept off zero).
double RelativeDifference(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a - b).norm() / b.norm().clamp_min(1e-12)).item<double>();
}

// Each parameter's slice of the flat gradients `got` within `tol` of `want`'s, relative: a
// small layer cannot hide behind a big one.
void ExpectEachParameterWithin(VAE& model, const torch::Tensor& got, const torch::Tensor& want, double tol) {
  int64_t offset = 0;
  for (const auto& p : model->parameters()) {
    EXPECT_LT(RelativeDifference(got.narrow(0, offset, p.numel()), want.narrow(0, offset, p.numel())), tol)
        << "parameter at " << offset;
    offset += p.numel();
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
  EXPECT_LT(RelativeDifference(buffer.grads(), autograd), 1e-5) << "relative gradient difference";
  ExpectEachParameterWithin(model, buffer.grads(), autograd, 1e-4);
}

class CpuStepTest : public ::testing::TestWithParam<std::vector<int64_t>> {};

TEST_P(CpuStepTest, GradientsMatchAutograd) {
  ExpectFastStepMatchesAutograd(GetParam(), /*rows=*/19, /*global=*/40, /*threads=*/1);  // a shard of a larger batch
}

// Enough rows for several threads: the rows are split into one chunk per thread, each runs
// the whole step, and the chunks' gradients are summed (uneven chunks here).
TEST_P(CpuStepTest, RowChunksOnSeveralThreadsMatchAutograd) {
  const int64_t per_chunk = CpuStepOptions{}.rows_per_chunk;
  ASSERT_EQ(CpuStep::chunks_for(2 * per_chunk + 3, 2), 2);
  ASSERT_EQ(CpuStep::chunks_for(4 * per_chunk + 1, 4), 4);
  ExpectFastStepMatchesAutograd(GetParam(), /*rows=*/2 * per_chunk + 3, /*global=*/200, /*threads=*/2);
  ExpectFastStepMatchesAutograd(GetParam(), /*rows=*/4 * per_chunk + 1, /*global=*/200, /*threads=*/4);
}

// A Linear whose GEMMs, forward and backward, multiply the operands rounded to bf16 and
// sum in fp32, as the fast path's bf16 GEMMs do; the bias gradient stays fp32.
struct Bf16Linear : torch::autograd::Function<Bf16Linear> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& in, const torch::Tensor& w,
                               const torch::Tensor& b) {
    ctx->save_for_backward({in, w});
    return torch::addmm(b, bf16_rounded(in), bf16_rounded(w).t());
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grad) {
    const auto saved = ctx->get_saved_variables();
    const auto g = bf16_rounded(grad[0]);
    return {g.mm(bf16_rounded(saved[1])), g.t().mm(bf16_rounded(saved[0])), grad[0].sum(0)};
  }
};

// The VAE's objective written out with Bf16Linear layers, differentiated by autograd.
torch::Tensor Bf16ReferenceObjective(VAE& model, const torch::Tensor& x, const torch::Tensor& eps, double beta,
                                     int64_t global) {
  const auto layers = model->layers();
  auto apply = [](const torch::nn::Linear& lin, const torch::Tensor& in) {
    return Bf16Linear::apply(in, lin->weight, lin->bias);
  };
  auto h = x;
  for (const auto& lin : layers.encoder) h = torch::relu(apply(lin, h));
  const auto stats = apply(layers.head, h);
  const int64_t latent = model->latent_dim();
  const auto mu = stats.narrow(1, 0, latent), logvar = stats.narrow(1, latent, latent);
  h = mu + torch::exp(0.5 * logvar) * eps;
  for (size_t j = 0; j + 1 < layers.decoder.size(); ++j) h = torch::relu(apply(layers.decoder[j], h));
  const auto logits = apply(layers.decoder.back(), h);
  return objective(loss_terms(logits, x, mu, logvar), beta, global);
}

// The bf16 fast path (bf16 GEMMs, everything else fp32) on `threads` threads against
// (1) autograd through Bf16Linear layers: the same arithmetic, so fp32-tight up to the order
// of the sums and the odd operand that rounds the other way; (2) autograd in fp32 and
// (3) autograd under CPU autocast bf16 (vae_ddp's bf16 path elsewhere, which also rounds
// each Linear's output to bf16): there the difference is bf16's own. bf16 keeps 8
// significant bits (a relative rounding error of up to 2^-9 = 0.2 % per operand), and a
// gradient passes through up to 2 x depth + 2 rounded GEMMs, small layers first: 10 % on
// the whole gradient is the tolerance stated for bf16 (measured with libtorch 1.13 and 2.11:
// 0.3-3.8 %; autocast itself is 0.4-1.9 % from fp32).
// How far the fast path's bf16 gradients may be from the Bf16Linear reference, by GEMM kind.
// Emulated (the fast path rounds the operands itself, then runs fp32 GEMMs: the reference's
// own arithmetic): only the order of fp32 sums differs, a few fp32 ulps, so 1e-5 on the
// whole gradient and 1e-4 per tensor. Native (oneDNN on AVX512-BF16/AMX: VDPBF16PS adds
// pairs of exact bf16 products into fp32 accumulators in the kernel's own order, with
// denormals flushed): the same few-ulp fp32 differences, but each layer's fp32 result is
// rounded to bf16 again for the next GEMM (the gradient flowing back, the next
// activation), and an element that sits at a bf16 rounding midpoint then moves by a whole
// bf16 ulp, 2^-8 relative: a flipped fraction f of a tensor's elements gives a relative
// difference of about 2^-8 sqrt(f). Seen on an AVX-512 EPYC with avx512_bf16: 1e-4 on the
// whole gradient, 2.2e-4 on one tensor (f of about 0.07 % and 0.3 %), at 2 threads, where
// the rows split into chunks of other shapes; the bounds allow f = 1 % (2^-8 x 0.1) on the
// whole gradient and 6 % (2^-8 x 0.25) per tensor, still about 10x below the difference the
// bf16 rounding itself makes (3e-3 to 3e-2 against fp32, checked below), which they must not hide.
struct Bf16Bounds {
  double whole, per_tensor;
};
Bf16Bounds Bf16BoundsFor(bool native) {
  if (!native) return {1e-5, 1e-4};
  const double bf16_ulp = std::ldexp(1.0, -8);
  return {bf16_ulp * 0.1, bf16_ulp * 0.25};
}

void ExpectBf16FastStepMatches(const std::vector<int64_t>& hidden, int64_t rows, int threads) {
  torch::manual_seed(2);
  const int64_t global = 2 * rows;
  VAE model(hidden, /*latent_dim=*/6);
  FlatParameters buffer(model->parameters());
  const double beta = 0.7;
  auto x = torch::rand({rows, kImagePixels});
  auto eps = torch::randn({rows, 6});
  auto gradient_of = [&](const std::function<torch::Tensor()>& loss) {
    buffer.zero_grads();
    loss().backward();
    return buffer.grads().clone();
  };
  const auto reference = gradient_of([&] { return Bf16ReferenceObjective(model, x, eps, beta, global); });
  auto autograd_loss = [&] {
    auto out = model->forward(x, eps);
    return objective(loss_terms(out.logits, x, out.mu, out.logvar), beta, global);
  };
  const auto fp32 = gradient_of(autograd_loss);
  const auto autocast = gradient_of([&] {
    AutocastGuard guard(torch::kCPU, Precision::kBF16);
    return autograd_loss();
  });

  buffer.zero_grads();
  CpuStepOptions options;
  options.bf16 = true;
  CpuStep step(model, options);
  const int before = torch::get_num_threads();
  torch::set_num_threads(threads);
  step.run(x, eps, beta, global);
  step.run(x, eps, beta, global);
  torch::set_num_threads(before);
  const auto fast = buffer.grads().clone();

  const double vs_reference = RelativeDifference(fast, reference), vs_fp32 = RelativeDifference(fast, fp32),
               vs_autocast = RelativeDifference(fast, autocast);
  std::printf(
      "bf16 fast path, %d thread(s): relative gradient difference %.2e vs bf16-rounded autograd, %.2e vs fp32, "
      "%.2e vs autocast bf16 (autocast vs fp32: %.2e)\n",
      threads, vs_reference, vs_fp32, vs_autocast, RelativeDifference(autocast, fp32));
  const Bf16Bounds bound = Bf16BoundsFor(cpu::gemm_bf16_native());
  EXPECT_LT(vs_reference, bound.whole) << (cpu::gemm_bf16_native() ? "native bf16 GEMMs" : "emulated bf16 GEMMs");
  ExpectEachParameterWithin(model, fast, reference, bound.per_tensor);
  EXPECT_LT(vs_fp32, 0.1);
  EXPECT_LT(vs_autocast, 0.1);
  EXPECT_GT(vs_fp32, 1e-4) << "the GEMMs did not round to bf16";
}

TEST_P(CpuStepTest, Bf16GradientsMatchBf16AutogradWithinBf16Tolerance) {
  ExpectBf16FastStepMatches(GetParam(), /*rows=*/19, /*threads=*/1);
  ExpectBf16FastStepMatches(GetParam(), /*rows=*/2 * CpuStepOptions{}.rows_per_chunk + 3, /*threads=*/2);
}

INSTANTIATE_TEST_SUITE_P(Architectures, CpuStepTest,
                         ::testing::Values(std::vector<int64_t>{32}, std::vector<int64_t>{48, 24},
                                           std::vector<int64_t>{64, 32, 16}));

}  // namespace
}  // namespace vae
