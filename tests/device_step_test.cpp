// The device step (--step graph, device_step.h) run eagerly on the CPU, the same ATen
// sequence a GPU captures as a CUDA graph, against the autograd step: gradients per tensor,
// parameters after 20 steps (Adam and AdamW, with and without clipping, two architectures,
// the uneven last batch), bf16 and fp16, no buffer allocated after the first step; end to end: a
// stop signal's mid-epoch resume bit for bit, and world-size invariance under mpirun.
// Registered (label device_step) in builds whose libtorch has the fused kernels (2.4+).
#include "vae_ddp/train/device_step.h"

#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include <c10/core/CPUAllocator.h>
#include <gtest/gtest.h>

#include "device_step_rig.h"
#include "test_util.h"
#include "vae_ddp/train/trainer.h"

namespace vae {
namespace {

constexpr int64_t kLatent = 6;

double RelativeDifference(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a - b).norm() / b.norm().clamp_min(1e-12)).item<double>();
}

using Rig = testing::DeviceStepRig;

// Rows 0..rows-1 of `images`, a shard of a global batch of `global`, and their noise.
Batch BatchOf(int64_t rows, int64_t global) {
  Batch b;
  b.indices = torch::arange(rows, torch::kInt64);
  b.eps = torch::randn({rows, kLatent});
  b.global_rows = global;
  return b;
}

// Autograd's gradient of the same objective (optionally under CPU autocast), flat.
torch::Tensor AutogradGradient(Rig& rig, const torch::Tensor& x, const Batch& b, double beta, Precision autocast) {
  rig.flat.zero_grads();
  {
    AutocastGuard guard(torch::kCPU, autocast);
    auto out = rig.model->forward(x, b.eps);
    objective(loss_terms(out.logits, x, out.mu, out.logvar), beta, b.global_rows).backward();
  }
  return rig.flat.grads().clone();
}

class DeviceStepTest : public ::testing::TestWithParam<std::vector<int64_t>> {
 protected:
  void SetUp() override {
    if (!FlatAdam::fused_available()) GTEST_SKIP() << "this libtorch has no CPU fused Adam (2.4+)";
    torch::manual_seed(3);
    images_ = torch::rand({50, kImagePixels});
  }
  torch::Tensor images_;
};

// One step with lr = 0 leaves the parameters as they are and its gradient in the buffer.
TEST_P(DeviceStepTest, GradientsMatchAutogradPerTensor) {
  AdamOptions frozen;
  frozen.lr = 0;
  Rig rig(GetParam(), kLatent, frozen, Precision::kFP32);
  const double beta = 0.7;
  const Batch b = BatchOf(19, 40);  // a shard of a larger batch
  const auto x = images_.narrow(0, 0, 19);
  const auto want = AutogradGradient(rig, x, b, beta, Precision::kFP32);
  auto step = rig.Step(Precision::kFP32, images_, beta);
  auto sums = torch::zeros({4}, torch::kFloat64);
  rig.flat.grads().fill_(123);  // the step overwrites every gradient
  step->run(b, sums);
  int64_t offset = 0;
  for (const auto& p : rig.model->parameters()) {
    const double d =
        RelativeDifference(rig.flat.grads().narrow(0, offset, p.numel()), want.narrow(0, offset, p.numel()));
    EXPECT_LT(d, 1e-5) << "parameter at " << offset;
    offset += p.numel();
  }
  // Its sums: the objective, bce and kld of the 19 rows, and their count.
  auto out = rig.model->forward(x, b.eps);
  const auto terms = loss_terms(out.logits, x, out.mu, out.logvar);
  EXPECT_NEAR(sums[kSumBce].item<double>() / terms.bce.sum().item<double>(), 1.0, 1e-5);
  EXPECT_NEAR(sums[kSumKld].item<double>() / terms.kld.sum().item<double>(), 1.0, 1e-5);
  EXPECT_NEAR(step->last_loss() / objective(terms, beta, 40).item<double>(), 1.0, 1e-5);
  EXPECT_EQ(sums[kSumImages].item<double>(), 19);
  EXPECT_FLOAT_EQ(static_cast<float>(step->last_beta()), 0.7f);
}

// bf16 GEMMs (autocast's rounding: operands and each GEMM's output in bf16) against autograd
// under CPU autocast bf16, and fp16 likewise against fp32 autograd; within the dtype's own
// distance from fp32, which they must not hide (the rounding happened).
TEST_P(DeviceStepTest, LowPrecisionGradientsMatchAutogradWithinTheirRounding) {
  for (const Precision p : {Precision::kBF16, Precision::kFP16}) {
    AdamOptions frozen;
    frozen.lr = 0;
    Rig rig(GetParam(), kLatent, frozen, p);
    const Batch b = BatchOf(19, 40);
    const auto x = images_.narrow(0, 0, 19);
    const auto fp32 = AutogradGradient(rig, x, b, 0.7, Precision::kFP32);
    const auto reference = p == Precision::kBF16 ? AutogradGradient(rig, x, b, 0.7, p) : fp32;
    auto step = rig.Step(p, images_, 0.7);
    auto sums = torch::zeros({4}, torch::kFloat64);
    step->run(b, sums);
    const auto got = rig.flat.grads().clone();
    const double vs_reference = RelativeDifference(got, reference), vs_fp32 = RelativeDifference(got, fp32);
    std::printf("%s device step: relative gradient difference %.2e vs %s, %.2e vs fp32\n", name_of(p).c_str(),
                vs_reference, p == Precision::kBF16 ? "autocast bf16" : "fp32", vs_fp32);
    EXPECT_LT(vs_reference, p == Precision::kBF16 ? 0.1 : 0.01) << name_of(p);
    EXPECT_GT(vs_fp32, p == Precision::kBF16 ? 1e-4 : 1e-6) << name_of(p) << ": no rounding happened";
    EXPECT_EQ(step->last_beta(), 0.7f);
  }
}

// fp16's dynamic loss scale: a step whose gradients overflow is skipped (parameters, Adam's
// moments and count unchanged), the scale halves, the skip is counted.
TEST_P(DeviceStepTest, Fp16OverflowSkipsTheStepAndHalvesTheScale) {
  Rig rig(GetParam(), kLatent, AdamOptions{}, Precision::kFP16);
  auto step = rig.Step(Precision::kFP16, images_, 1.0);
  auto sums = torch::zeros({4}, torch::kFloat64);
  // The first steps may overflow at the initial scale of 2^16, as under GradScaler: until one
  // is taken, each halves the scale.
  for (int k = 0; k < 8 && rig.adam.steps() == 0; ++k) step->run(BatchOf(40, 40), sums);
  ASSERT_EQ(rig.adam.steps(), 1);
  const float skipped = rig.skipped.item<float>();
  const double scale = rig.scaler.state().scale;
  EXPECT_EQ(scale, 65536.0 / std::pow(2.0, skipped));
  const auto params = rig.flat.params().clone(), moment = rig.adam.exp_avg().clone();
  step->run(BatchOf(40, 40), sums, FaultAction::kOverflowGradients);
  EXPECT_TRUE(torch::equal(rig.flat.params(), params));
  EXPECT_TRUE(torch::equal(rig.adam.exp_avg(), moment));
  EXPECT_EQ(rig.adam.steps(), 1);
  EXPECT_EQ(rig.scaler.state().scale, scale / 2);
  EXPECT_EQ(rig.skipped.item<float>(), skipped + 1);
}

// Nothing is allocated after the first step: every tensor the sequence writes is a buffer
// made then. Counted through a CPU allocator that wraps libtorch's; blocks of one scalar (8
// bytes or less) are not buffers: libtorch wraps each Scalar argument of a CPU op in a 0-dim
// host tensor (and converts it to the op's dtype), where CUDA passes it as a kernel argument.
struct CountingAllocator final : c10::Allocator {
  explicit CountingAllocator(c10::Allocator* inner) : inner(inner) {}
  c10::DataPtr allocate(size_t n) override {
    if (n > sizeof(double)) ++count;
    return inner->allocate(n);
  }
  c10::DeleterFnPtr raw_deleter() const override { return inner->raw_deleter(); }
  void copy_data(void* dest, const void* src, std::size_t n) const override { inner->copy_data(dest, src, n); }
  c10::Allocator* inner;
  std::atomic<int64_t> count{0};
};

TEST_P(DeviceStepTest, AllocatesNothingAfterTheFirstStep) {
  for (const double clip : {0.0, 1.0}) {
    Rig rig(GetParam(), kLatent, AdamOptions{}, Precision::kFP32);
    auto step = rig.Step(Precision::kFP32, images_, 1.0, clip);
    auto sums = torch::zeros({4}, torch::kFloat64);
    std::vector<Batch> batches;
    for (int i = 0; i < 3; ++i) batches.push_back(BatchOf(40, 40));
    step->run(batches[0], sums);
    CountingAllocator counting(c10::GetCPUAllocator());
    c10::SetCPUAllocator(&counting, /*priority=*/255);
    step->run(batches[1], sums);
    step->run(batches[2], sums);
    c10::SetCPUAllocator(counting.inner, 255);
    EXPECT_EQ(counting.count.load(), 0) << "allocations in steps 2 and 3, clip " << clip;
  }
}

INSTANTIATE_TEST_SUITE_P(Architectures, DeviceStepTest,
                         ::testing::Values(std::vector<int64_t>{64}, std::vector<int64_t>{48, 24}));

// --- through the trainer: 20 steps of --step graph against --step autograd ---

struct Variant {
  const char* name;
  std::vector<int64_t> hidden;
  Optimizer optimizer;
  double weight_decay, clip;
};

class DeviceStepTrainerTest : public ::testing::TestWithParam<Variant> {
 protected:
  void SetUp() override {
    if (!FlatAdam::fused_available()) GTEST_SKIP() << "this libtorch has no CPU fused Adam (2.4+)";
  }
};

// 309 images in batches of 16: 20 steps, the last of 5 images.
TEST_P(DeviceStepTrainerTest, TwentyStepsMatchTheAutogradStep) {
  const Variant& v = GetParam();
  testing::TempDir dir;
  Config c = testing::TinyConfig(dir.path());
  c.hidden_dims = v.hidden;
  c.latent_dim = kLatent;
  c.batch_size = 16;
  c.optimizer = v.optimizer;
  c.weight_decay = v.weight_decay;
  c.grad_clip = v.clip;
  c.kl_schedule = KLScheduleKind::kLinear;  // beta changes every step
  c.kl_warmup_epochs = 0.5;
  c.threads = 1;
  const Dataset train = testing::SyntheticData(309), test = testing::SyntheticData(50);
  auto run = [&](StepKind kind) {
    Config k = c;
    k.step = kind;
    auto t = std::make_unique<Trainer>(k, train, test, torch::kCPU, testing::LocalComm());
    const auto records = t->trace(20);
    EXPECT_EQ(records.size(), 20u);
    return std::make_pair(std::move(t), records);
  };
  auto [graph, graph_steps] = run(StepKind::kGraph);
  auto [autograd, autograd_steps] = run(StepKind::kAutograd);
  EXPECT_NE(graph->step_description().find("device step"), std::string::npos) << graph->step_description();
  for (size_t k = 0; k < graph_steps.size(); ++k) {
    EXPECT_NEAR(graph_steps[k].loss / autograd_steps[k].loss, 1.0, 1e-5) << "step " << k + 1;
    EXPECT_EQ(graph_steps[k].beta, autograd_steps[k].beta) << "step " << k + 1;
  }
  const double diff = testing::MaxRelativeDifference(graph->model(), autograd->model());
  std::printf("%s: after 20 steps, max relative parameter difference %.2e\n", v.name, diff);
  EXPECT_LT(diff, 1e-5);
  EXPECT_EQ(graph->optimizer().steps(), 20);
  if (v.clip > 0) {  // the clip acted: without it the weights end elsewhere
    Config unclipped = c;
    unclipped.grad_clip = 0;
    unclipped.step = StepKind::kGraph;
    Trainer free(unclipped, train, test, torch::kCPU, testing::LocalComm());
    free.trace(20);
    EXPECT_GT(testing::MaxRelativeDifference(free.model(), graph->model()), 1e-3);
  }
}

INSTANTIATE_TEST_SUITE_P(Variants, DeviceStepTrainerTest,
                         ::testing::Values(Variant{"adam", {64}, Optimizer::kAdam, 0, 0},
                                           Variant{"adam_l2_clip", {48, 24}, Optimizer::kAdam, 0.01, 0.5},
                                           Variant{"adamw", {48, 24}, Optimizer::kAdamW, 0.01, 0},
                                           Variant{"adamw_clip", {64}, Optimizer::kAdamW, 0.01, 0.5}),
                         [](const ::testing::TestParamInfo<Variant>& info) { return std::string(info.param.name); });

// --- end to end, through the binary ---

class DeviceStepRunTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!FlatAdam::fused_available()) GTEST_SKIP() << "this libtorch has no CPU fused Adam (2.4+)";
  }
  // 3001 images in batches of 100: 31 steps per epoch, the last a single image.
  testing::Result Train(int np, const std::string& out, const std::string& extra, const std::string& env = "") {
#ifdef VAE_DDP_MPIRUN_BUILT
    const std::string launcher = testing::Launcher(np);
#else
    const std::string launcher = np > 0 ? "no-mpirun-in-this-build " : "";
#endif
    return testing::run_command(env + " " + launcher + VAE_DDP_BINARY + " --device cpu --step graph" + " --data-dir " +
                                    VAE_DDP_DATA_DIR + " --out-dir " + out +
                                    " --train-limit 3001 --batch-size 100 --hidden-dims 64 --latent-dim 8 --threads 1 "
                                    "--log-every 5 --sample-every 0 --kl-schedule linear --kl-warmup-epochs 1 " +
                                    extra,
                                tmp_.path());
  }
  testing::TempDir tmp_;
};

TEST_F(DeviceStepRunTest, StopSignalMidEpochResumesBitForBit) {
  const auto straight = Train(0, tmp_ / "straight", "--epochs 2");
  ASSERT_EQ(straight.code, 0) << straight.err;
  EXPECT_NE(straight.out.find("step: device step, run eagerly"), std::string::npos) << straight.out;
  const auto stopped = Train(0, tmp_ / "split", "--epochs 2", "VAE_DDP_TEST_FAULT=signal:0:40");
  ASSERT_EQ(stopped.code, 0) << stopped.err;
  EXPECT_NE(stopped.out.find("at epoch 2, step 10 of 31"), std::string::npos) << stopped.out;
  ASSERT_EQ(Train(0, tmp_ / "split", "--epochs 2").code, 0);
  const auto a = testing::Weights(tmp_ / "straight/checkpoints/last.pt"),
             b = testing::Weights(tmp_ / "split/checkpoints/last.pt");
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "tensor " << i;
  EXPECT_EQ(testing::MetricsWithoutTimes(tmp_ / "straight/metrics.csv"),
            testing::MetricsWithoutTimes(tmp_ / "split/metrics.csv"));
}

TEST_F(DeviceStepRunTest, NonFiniteLossStopsTheRun) {
  const auto r = Train(0, tmp_ / "run", "--epochs 2", "VAE_DDP_TEST_FAULT=nan:0:40");
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("non-finite loss (NaN or inf) at epoch 2, step 10"), std::string::npos) << r.err;
}

#ifdef VAE_DDP_MPIRUN_BUILT
// The same run on 1, 2 and 3 ranks (3 does not divide 100; the last batch of one image
// leaves two ranks without rows) ends with the one-process run's weights.
TEST_F(DeviceStepRunTest, RanksMatchOneProcess) {
  ASSERT_EQ(Train(0, tmp_ / "one", "--epochs 1").code, 0);
  const auto one = testing::Weights(tmp_ / "one/checkpoints/last.pt");
  for (int np = 1; np <= 3; ++np) {
    const std::string out = tmp_ / ("np" + std::to_string(np));
    const auto r = Train(np, out, "--epochs 1");
    ASSERT_EQ(r.code, 0) << r.err;
    const auto w = testing::Weights(out + "/checkpoints/last.pt");
    double worst = 0;
    for (size_t i = 0; i < w.size(); ++i) worst = std::max(worst, RelativeDifference(w[i], one[i]));
    std::printf("--step graph on %d rank(s) vs one process: max relative parameter difference %.2e\n", np, worst);
    EXPECT_LT(worst, 1e-5) << np << " ranks";
  }
}
#endif

}  // namespace
}  // namespace vae
