// The device step's CUDA graph on a GPU (label `gpu`, run by ./launch/gpu-check): its
// replays equal the same sequence run eagerly on the GPU, bit for bit; 100 replays make no
// host sync; the graph's node count is printed. Skips, with a message, where no GPU is
// visible; fails where nvidia-smi lists one that libtorch cannot use.
#include <cstdio>

#include <gtest/gtest.h>

#include "device_step_rig.h"
#include "test_util.h"
#include "vae_ddp/train/device_step.h"
#include "vae_ddp/train/gpu_audit.h"

namespace vae {
namespace {

constexpr int64_t kBatch = 128, kLatent = 20;

// The default model (784-400-20) on `d`.
struct Rig : testing::DeviceStepRig {
  Rig(torch::Device d, Precision p) : DeviceStepRig({400}, kLatent, AdamOptions{}, p, d) {}
};

class DeviceStepGpuTest : public ::testing::TestWithParam<Precision> {
 protected:
  void SetUp() override {
    VAE_REQUIRE_GPU();
    if (!FlatAdam::fused_available()) GTEST_SKIP() << "this libtorch has no fused Adam";
  }
};

// The same 12 steps (3 warm-up, the capture, 8 replays), the same batches: captured and
// replayed against eager, both on the GPU. The kernels are the same ones with the same
// inputs, so the weights must agree bit for bit.
TEST_P(DeviceStepGpuTest, ReplaysEqualTheEagerSequence) {
  const torch::Device gpu(torch::kCUDA, 0);
  const Precision p = GetParam();
  torch::manual_seed(5);
  const auto images = torch::rand({4 * kBatch, kImagePixels}).to(gpu);
  std::vector<Batch> batches;
  for (int k = 0; k < 12; ++k) {
    Batch b;
    b.indices = torch::randperm(4 * kBatch, torch::kInt64).narrow(0, 0, kBatch).to(gpu);
    b.eps = torch::randn({kBatch, kLatent}).to(gpu);
    b.global_rows = kBatch;
    batches.push_back(b);
  }
  torch::manual_seed(1);
  Rig graphed(gpu, p);
  torch::manual_seed(1);
  Rig eager(gpu, p);
  auto a = graphed.Step(p, images, /*beta=*/1.0, /*clip=*/5.0, kBatch, /*capture=*/true);
  auto b = eager.Step(p, images, 1.0, 5.0, kBatch, /*capture=*/false);
  auto sums_a = torch::zeros({4}, torch::dtype(torch::kFloat64).device(gpu)), sums_b = sums_a.clone();
  for (const auto& batch : batches) {
    a->run(batch, sums_a);
    b->run(batch, sums_b);
  }
  ASSERT_TRUE(a->captured());
  EXPECT_FALSE(b->captured());
  const double diff = (graphed.flat.params() - eager.flat.params()).abs().max().item<double>();
  std::printf("%s: CUDA graph of %lld nodes; after 12 steps the weights differ from eager by at most %.3g\n",
              name_of(p).c_str(), static_cast<long long>(a->graph_nodes()), diff);
  EXPECT_TRUE(torch::equal(graphed.flat.params(), eager.flat.params()));
  EXPECT_TRUE(torch::equal(sums_a, sums_b));
  EXPECT_EQ(graphed.adam.steps(), eager.adam.steps());
  EXPECT_GT(a->graph_nodes(), 0);
}

// Once captured, 100 steps under CUDA's sync debug mode set to error: any host wait throws.
TEST_P(DeviceStepGpuTest, HundredReplaysMakeNoHostSync) {
  const torch::Device gpu(torch::kCUDA, 0);
  const Precision p = GetParam();
  torch::manual_seed(2);
  const auto images = torch::rand({2 * kBatch, kImagePixels}).to(gpu);
  Rig rig(gpu, p);
  auto step = rig.Step(p, images, 1.0, 0, kBatch);
  auto sums = torch::zeros({4}, torch::dtype(torch::kFloat64).device(gpu));
  Batch b;
  b.indices = torch::arange(kBatch, torch::kInt64).to(gpu);
  b.eps = torch::randn({kBatch, kLatent}).to(gpu);
  b.global_rows = kBatch;
  for (int k = 0; k <= StepGraph::kWarmupRuns; ++k) step->run(b, sums);
  ASSERT_TRUE(step->captured());
  {
    SyncDebugScope no_sync(/*error=*/2, gpu);
    EXPECT_NO_THROW(for (int k = 0; k < 100; ++k) step->run(b, sums));
  }
  const auto s = sums.cpu();
  EXPECT_EQ(s[kSumImages].item<double>(), 104.0 * kBatch);
  EXPECT_TRUE(std::isfinite(s[kSumObjective].item<double>()));
}

INSTANTIATE_TEST_SUITE_P(Precisions, DeviceStepGpuTest,
                         ::testing::Values(Precision::kFP32, Precision::kBF16, Precision::kFP16),
                         [](const ::testing::TestParamInfo<Precision>& info) { return name_of(info.param); });

}  // namespace
}  // namespace vae
