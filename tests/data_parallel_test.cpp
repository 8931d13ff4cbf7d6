// The data-parallel building blocks, in one process: shards, the flat gradient buffer,
// the replica checksum, loss scaling and autocast.
#include "vae_ddp/parallel/data_parallel.h"

#include <regex>
#include <set>

#include <gtest/gtest.h>

#include "test_util.h"
#include "vae_ddp/base/errors.h"
#include "vae_ddp/model/loss.h"
#include "vae_ddp/parallel/comm.h"
#include "vae_ddp/parallel/host_staging.h"
#include "vae_ddp/train/amp.h"
#include "vae_ddp/train/trainer.h"

namespace vae {
namespace {

// Every rank's rows of every global batch of one epoch, as the trainer takes them.
std::vector<std::vector<int64_t>> EpochShards(int64_t n, int64_t batch, int world) {
  const auto perm = epoch_permutation(n, /*seed=*/5, /*epoch=*/1);
  std::vector<std::vector<int64_t>> shards(world);
  for (int64_t start = 0; start < n; start += batch) {
    const auto global = perm.slice(/*dim=*/0, start, std::min(n, start + batch));
    for (int r = 0; r < world; ++r) {
      const auto mine = shard_rows(global, r, world);
      EXPECT_EQ(mine.size(0), shard_size(global.size(0), r, world));
      for (int64_t i = 0; i < mine.size(0); ++i) shards[r].push_back(mine[i].item<int64_t>());
    }
  }
  return shards;
}

TEST(ShardTest, ShardsAreDisjointAndCoverEveryIndexOnce) {
  // 1003 images in batches of 100: the last batch has 3 rows, so rank 3 of 4 gets none.
  for (int world = 1; world <= 4; ++world) {
    const auto shards = EpochShards(/*n=*/1003, /*batch=*/100, world);
    std::set<int64_t> seen;
    size_t total = 0;
    for (const auto& s : shards) {
      seen.insert(s.begin(), s.end());
      total += s.size();
    }
    EXPECT_EQ(total, 1003u) << "world " << world;
    EXPECT_EQ(seen.size(), 1003u) << "world " << world;
    EXPECT_EQ(*seen.begin(), 0);
    EXPECT_EQ(*seen.rbegin(), 1002);
  }
}

TEST(ShardTest, RankTakesEveryWorldthRowOfTheGlobalBatch) {
  const auto rows = torch::arange(10, torch::kInt64);
  EXPECT_TRUE(torch::equal(shard_rows(rows, 1, 3), torch::tensor({1, 4, 7}, torch::kInt64)));
  EXPECT_EQ(shard_rows(rows.slice(0, 0, 2), 3, 4).size(0), 0);
  EXPECT_EQ(shard_size(2, 3, 4), 0);
  EXPECT_EQ(shard_size(10, 0, 3), 4);
  EXPECT_EQ(shard_size(10, 2, 3), 3);
}

class FlatParametersTest : public ::testing::Test {
 protected:
  FlatParametersTest() : model_(std::vector<int64_t>{16}, 3) {}
  torch::Tensor Loss() {
    torch::manual_seed(3);
    auto x = torch::rand({5, kImagePixels});
    auto out = model_->forward(x, torch::randn({5, 3}));
    return objective(loss_terms(out.logits, x, out.mu, out.logvar), 1.0, 5);
  }
  VAE model_;
};

TEST_F(FlatParametersTest, GradientsAreViewsIntoOneBuffer) {
  FlatParameters buffer(model_->parameters());
  Loss().backward();
  int64_t offset = 0;
  for (const auto& p : model_->parameters()) {
    const auto* expected = buffer.flat().data_ptr<float>() + offset;
    EXPECT_EQ(p.grad().data_ptr<float>(), expected) << "gradient copied out of the buffer";
    offset += p.numel();
  }
  EXPECT_EQ(offset, buffer.numel());
  EXPECT_GT(buffer.grads().abs().sum().item<float>(), 0);
}

TEST_F(FlatParametersTest, ParametersAreViewsIntoOneBufferWithTheirValues) {
  std::vector<torch::Tensor> before;
  for (const auto& p : model_->parameters()) before.push_back(p.detach().clone().reshape({-1}));
  FlatParameters storage(model_->parameters());
  EXPECT_TRUE(torch::equal(storage.params(), torch::cat(before)));
  int64_t offset = 0;
  for (const auto& p : model_->parameters()) {
    EXPECT_EQ(p.data_ptr<float>(), storage.params().data_ptr<float>() + offset) << "parameter copied out of the buffer";
    offset += p.numel();
  }
  storage.params().fill_(0.5);  // what FlatAdam's update does: the module sees it
  for (const auto& p : model_->parameters()) EXPECT_TRUE(torch::all(p == 0.5).item<bool>());
}

TEST_F(FlatParametersTest, BufferHoldsTheSameGradientsAsPlainAutograd) {
  Loss().backward();
  std::vector<torch::Tensor> plain;
  for (const auto& p : model_->parameters()) plain.push_back(p.grad().clone().reshape({-1}));
  for (auto& p : model_->parameters()) p.mutable_grad() = torch::Tensor();
  FlatParameters buffer(model_->parameters());
  Loss().backward();
  EXPECT_TRUE(torch::equal(buffer.grads(), torch::cat(plain)));
  buffer.zero_grads();
  Loss().backward();  // zeroing keeps the views attached: no accumulation from before
  EXPECT_TRUE(torch::equal(buffer.grads(), torch::cat(plain)));
}

TEST_F(FlatParametersTest, ControlSlotsFollowTheGradients) {
  FlatParameters buffer(model_->parameters());
  buffer.slot(FlatParameters::kNextBeta).fill_(0.25);
  EXPECT_EQ(buffer.flat()[buffer.numel() + FlatParameters::kNextBeta].item<float>(), 0.25f);
  EXPECT_EQ(buffer.grads().abs().sum().item<float>(), 0.0f);
}

TEST_F(FlatParametersTest, ChecksumSeesOneBitAndASwap) {
  auto params = model_->parameters();
  const int64_t base = parameter_checksum(params);
  EXPECT_EQ(base, parameter_checksum(params));
  torch::NoGradGuard no_grad;
  auto w = params[0].view({-1});
  const float a = w[0].item<float>(), b = w[1].item<float>();
  w[0] = std::nextafter(a, 1.0f);  // one ulp
  EXPECT_NE(parameter_checksum(params), base);
  w[0] = b;
  w[1] = a;  // swapped
  EXPECT_NE(parameter_checksum(params), base);
  w[0] = a;
  w[1] = b;
  EXPECT_EQ(parameter_checksum(params), base);
}

TEST(LossScalerTest, InfSkipsTheStepAndHalvesTheScale) {
  LossScaler scaler(/*enabled=*/true, torch::kCPU);
  auto grads = torch::full({7}, 65536.0f);
  grads[3] = std::numeric_limits<float>::infinity();
  const auto found = scaler.unscale_and_update(grads);
  EXPECT_EQ(found.device().type(), torch::kCPU);  // where the gradients are: no host decision
  EXPECT_EQ(found.item<float>(), 1.0f);
  EXPECT_EQ(scaler.state().scale, 32768.0);
  EXPECT_EQ(scaler.state().growth_tracker, 0);
}

// What another rank's overflow leaves in the all-reduced sum: inf + finite = inf,
// inf + (-inf) = NaN, NaN + x = NaN; each must skip, finite gradients must not.
TEST(LossScalerTest, AnyRanksInfOrNanInTheSumSkips) {
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  for (const float bad : {inf + 1.0f, inf - inf, nan + 2.0f, -inf}) {
    LossScaler scaler(true, torch::kCPU);
    auto grads = torch::full({4}, 131072.0f);
    grads[2] = bad;
    EXPECT_EQ(scaler.unscale_and_update(grads).item<float>(), 1.0f) << bad;
    EXPECT_EQ(scaler.state().scale, 32768.0);
  }
}

TEST(LossScalerTest, UnscalesAndGrowsAfterTheInterval) {
  LossScaler scaler(true, torch::kCPU, ScalerState{1024.0, 0}, 2.0, 0.5, /*growth_interval=*/3);
  for (int i = 0; i < 3; ++i) {
    auto grads = torch::full({2}, 2048.0f);
    EXPECT_EQ(scaler.unscale_and_update(grads).item<float>(), 0.0f);
    EXPECT_EQ(grads[0].item<float>(), 2.0f);  // divided by the scale of that step, 1024
  }
  EXPECT_EQ(scaler.state().scale, 2048.0);  // grew after 3 good steps
  EXPECT_EQ(scaler.state().growth_tracker, 0);
  EXPECT_EQ(scaler.scale(torch::ones({})).item<float>(), 2048.0f);
}

TEST(LossScalerTest, DisabledIsTheIdentity) {
  LossScaler scaler(false, torch::kCPU);
  auto grads = torch::full({2}, std::numeric_limits<float>::infinity());
  EXPECT_FALSE(scaler.unscale_and_update(grads).defined());
  EXPECT_TRUE(std::isinf(grads[0].item<float>()));
  EXPECT_EQ(scaler.scale(torch::full({}, 3.0f)).item<float>(), 3.0f);
}

TEST(AutocastTest, Bf16OnCpuInsideTheGuardOnly) {
  torch::nn::Linear layer(4, 3);
  auto x = torch::rand({2, 4});
  {
    AutocastGuard guard(torch::kCPU, Precision::kBF16);
    EXPECT_EQ(layer->forward(x).scalar_type(), torch::kBFloat16);
  }
  EXPECT_EQ(layer->forward(x).scalar_type(), torch::kFloat32);
  {
    AutocastGuard guard(torch::kCPU, Precision::kFP32);
    EXPECT_EQ(layer->forward(x).scalar_type(), torch::kFloat32);
  }
}

TEST(AutocastTest, LossIsFp32UnderAutocast) {
  VAE model(std::vector<int64_t>{8}, 2);
  auto x = torch::rand({3, kImagePixels});
  AutocastGuard guard(torch::kCPU, Precision::kBF16);
  auto out = model->forward(x, torch::zeros({3, 2}));
  EXPECT_EQ(out.logits.scalar_type(), torch::kBFloat16);
  const auto terms = loss_terms(out.logits, x, out.mu, out.logvar);
  EXPECT_EQ(terms.bce.scalar_type(), torch::kFloat32);
  EXPECT_EQ(terms.kld.scalar_type(), torch::kFloat32);
}

// bf16 autocast trains to nearly the fp32 loss: one epoch on 3000 MNIST images.
TEST(AutocastTest, Bf16EpochLossWithinTwoPercentOfFp32) {
  const Dataset train = load_mnist(VAE_DDP_DATA_DIR, Split::kTrain, /*verify_md5=*/false, /*limit=*/3000);
  const Dataset test = load_mnist(VAE_DDP_DATA_DIR, Split::kTest, false, 1000);
  testing::TempDir dir;
  double loss[2] = {0, 0};
  const Precision precisions[2] = {Precision::kFP32, Precision::kBF16};
  for (int i = 0; i < 2; ++i) {
    Config c;
    c.out_dir = dir.path();
    c.precision = precisions[i];
    Trainer t(c, train, test, torch::kCPU, testing::LocalComm());
    loss[i] = t.train_epoch(1).loss;
  }
  EXPECT_NEAR(loss[1] / loss[0], 1.0, 0.02) << "fp32 " << loss[0] << ", bf16 " << loss[1];
  EXPECT_NE(loss[1], loss[0]) << "bf16 run identical to fp32: autocast did not engage";
}

// The NCCL backend is compiled and linked wherever the CUDA toolkit is (CI included);
// calling into the library proves the link without needing a GPU.
TEST(CommTest, NcclBackendIsLinked) {
  if (!built_with_nccl()) GTEST_SKIP() << "built without NCCL (no CUDA toolkit found at configure time)";
  EXPECT_TRUE(std::regex_match(nccl_version(), std::regex(R"(2\.\d+\.\d+)"))) << nccl_version();
}

TEST(CommTest, BackendMustFitTheDevice) {
  const World one;
  EXPECT_EQ(make_communicator(one, Backend::kAuto, torch::kCPU, std::chrono::seconds(1))->name(), "local");
  EXPECT_EQ(make_communicator(one, Backend::kMpi, torch::kCPU, std::chrono::seconds(1))->name(), "local");
  EXPECT_THROW(make_communicator(one, Backend::kNccl, torch::kCPU, std::chrono::seconds(1)), UsageError);
}

// One GPU needs no NCCL, in a build with or without it: a CUDA device object needs no GPU.
TEST(CommTest, OneGpuProcessNeedsNoNccl) {
  const World one;
  const torch::Device gpu(torch::kCUDA, 0);
  EXPECT_EQ(make_communicator(one, Backend::kAuto, gpu, std::chrono::seconds(1))->name(), "local");
  World launched_one;
  launched_one.launched = true;  // mpirun -np 1
  EXPECT_EQ(make_communicator(launched_one, Backend::kAuto, gpu, std::chrono::seconds(1))->name(), "local");
  // Several ranks on GPUs: auto picks NCCL (--backend mpi would stage the CUDA tensors
  // through host memory: dist_test's CUDA runs).
  World two;
  two.size = 2;
  two.launched = true;
  if (!built_with_nccl()) {
    const std::string e =
        testing::ErrorOf([&] { make_communicator(two, Backend::kAuto, gpu, std::chrono::seconds(1)); });
    EXPECT_NE(e.find("built without NCCL"), std::string::npos) << e;
  }
}

}  // namespace
}  // namespace vae

namespace vae {
namespace {

// The MPI backend's staging (host_staging.h), on CPU tensors: a contiguous tensor is handed
// over as it is; a strided view is copied into a contiguous buffer that is reused while it
// is large enough, and copied back into the view's own elements only.
TEST(HostStagingTest, StridedViewsGoThroughOneReusedBuffer) {
  HostStaging staging;
  auto plain = torch::arange(10, torch::kFloat32);
  EXPECT_EQ(staging.to_host(plain).data_ptr(), plain.data_ptr());
  EXPECT_FALSE(HostStaging::needs_staging(plain));

  auto whole = torch::arange(24, torch::kFloat32).reshape({8, 3});
  auto column = whole.select(1, 2);
  ASSERT_TRUE(HostStaging::needs_staging(column));
  auto host = staging.to_host(column);
  EXPECT_TRUE(host.is_contiguous());
  EXPECT_NE(host.data_ptr(), column.data_ptr());
  EXPECT_TRUE(torch::equal(host, column));
  const void* buffer = host.data_ptr();
  host.mul_(-1);  // what the collective would write
  HostStaging::from_host(column, host);
  EXPECT_TRUE(torch::equal(whole.select(1, 2), -torch::arange(2, 24, 3, torch::kFloat32)));
  EXPECT_TRUE(torch::equal(whole.select(1, 0), torch::arange(0, 24, 3, torch::kFloat32))) << "a neighbour changed";
  // A smaller view of the same dtype reuses the buffer; another dtype gets its own.
  EXPECT_EQ(staging.to_host(whole.select(1, 1).slice(0, 0, 4)).data_ptr(), buffer);
  EXPECT_NE(staging.to_host(whole.to(torch::kFloat64).t()).data_ptr(), buffer);
}

}  // namespace
}  // namespace vae
