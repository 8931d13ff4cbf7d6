// The data-parallel machinery on real ranks: this binary runs under `mpirun -np N`
// (N = 1..4, registered by tests/CMakeLists.txt with the label `correctness`). Every
// rank runs every test; the collectives inside them must line up, so assertions that
// can fail before a collective use EXPECT, not ASSERT.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "test_util.h"
#include "vae_ddp/app/runtime.h"
#include "vae_ddp/base/errors.h"
#include "vae_ddp/parallel/comm.h"
#include "vae_ddp/parallel/data_parallel.h"
#include "vae_ddp/parallel/world.h"
#include "vae_ddp/train/amp.h"
#include "vae_ddp/train/evaluate.h"
#include "vae_ddp/train/trainer.h"

namespace vae {
namespace {

const World* g_world = nullptr;

class DistTest : public ::testing::Test {
 protected:
  void SetUp() override { VAE_REQUIRE_TEST_DEVICE(); }
  // Where the device-generic tests run (testing::TestDevice): the CPU, or on CUDA this
  // rank's share of the GPUs (the ranks of a one-GPU box share it, through the MPI backend).
  torch::Device Device() const {
    if (testing::TestDevice() != "cuda") return torch::kCPU;
    return {torch::kCUDA, static_cast<c10::DeviceIndex>(world().local_rank % torch::cuda::device_count())};
  }
  const World& world() const { return *g_world; }
  int rank() const { return world().rank; }
  int size() const { return world().size; }
  static std::unique_ptr<Communicator> Comm(const std::string& backend, torch::Device device = torch::kCPU) {
    return make_communicator(*g_world, parse_choice<Backend>(backend, "--backend"), device, std::chrono::seconds(60));
  }
  static double MaxRelativeDifference(VAE& a, VAE& b) { return testing::MaxRelativeDifference(a, b); }
};

// Every rank knows every node's name once: one node here, however many ranks.
TEST_F(DistTest, NodesAreNamedOnce) {
  ASSERT_EQ(world().nodes.size(), 1u);
  EXPECT_EQ(world().nodes[0], world().host);
  EXPECT_EQ(describe_nodes(world()), world().host);
}

TEST(DescribeNodesTest, NamesFewNodesAndShortensMany) {
  World w;
  w.host = "vn1";
  EXPECT_EQ(describe_nodes(w), "vn1");  // nodes not filled in: the host
  w.nodes = {"vn1"};
  EXPECT_EQ(describe_nodes(w), "vn1");
  w.nodes = {"vn1", "vn2"};
  EXPECT_EQ(describe_nodes(w), "2 nodes (vn1, vn2)");
  w.nodes.clear();
  for (int i = 1; i <= 16; ++i) w.nodes.push_back(fmt::format("gpu{:03d}", i));
  EXPECT_EQ(describe_nodes(w), "16 nodes (gpu001, gpu002, ..., gpu016)");
}

// BatchNorm over the global batch: each rank normalises its rows with the statistics of
// all rows, and its input gradient is the one-process gradient of its rows.
TEST_F(DistTest, SyncBatchNormMatchesOneProcessBatchNorm) {
  auto comm = Comm("mpi");
  torch::manual_seed(9);  // the same on every rank
  const auto x = torch::randn({13, 6}) * 2 + 1, w = torch::randn({13, 6});
  auto mine = torch::arange(rank(), 13, size());
  SyncBatchNorm sharded(6), alone(6);
  sharded->set_communicator(comm.get());
  auto xs = x.index_select(0, mine).clone().requires_grad_(), xa = x.clone().requires_grad_();
  auto ys = sharded->forward(xs), ya = alone->forward(xa);
  EXPECT_TRUE(torch::allclose(ys, ya.index_select(0, mine), 1e-5, 1e-6));
  (ys * w.index_select(0, mine)).sum().backward();
  (ya * w).sum().backward();
  EXPECT_TRUE(torch::allclose(xs.grad(), xa.grad().index_select(0, mine), 1e-5, 1e-6))
      << xs.grad() << xa.grad().index_select(0, mine);
  auto wg = sharded->weight.grad().clone();
  comm->allreduce_sum(wg);
  EXPECT_TRUE(torch::allclose(wg, alone->weight.grad(), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(sharded->running_mean, alone->running_mean, 1e-6, 1e-7));
  EXPECT_TRUE(torch::allclose(sharded->running_var, alone->running_var, 1e-6, 1e-7));
}

// Value rank r puts at index i; the expected sum over ranks is computed in closed form.
torch::Tensor RankPattern(int64_t n, int rank, torch::ScalarType dtype) {
  return (torch::arange(n, torch::kFloat64).remainder(97) + 1000.0 * rank).to(dtype);
}

TEST_F(DistTest, AllReduceSumsEveryRanksBufferAtOddSizes) {
  auto comm = Comm("mpi");
  const int W = size();
  for (const auto dtype : {torch::kFloat32, torch::kFloat64, torch::kInt64}) {
    for (const int64_t n : {1, 7, 1023, (1 << 20) + 3}) {
      auto t = RankPattern(n, rank(), dtype).to(Device());  // on CUDA: staged through pinned host memory
      comm->allreduce_sum(t);
      // sum_r (i % 97 + 1000 r) = W (i % 97) + 1000 W (W-1) / 2
      auto expected = (torch::arange(n, torch::kFloat64).remainder(97) * W + 1000.0 * W * (W - 1) / 2).to(dtype);
      EXPECT_TRUE(torch::equal(t.cpu(), expected)) << "dtype " << dtype << ", n " << n << ", " << Device();
    }
  }
}

TEST_F(DistTest, BroadcastCopiesTheRootsBuffer) {
  auto comm = Comm("mpi");
  for (int root = 0; root < size(); ++root) {
    auto t = RankPattern(1001, rank(), torch::kFloat32).to(Device());
    comm->broadcast(t, root);
    EXPECT_TRUE(torch::equal(t.cpu(), RankPattern(1001, root, torch::kFloat32))) << "root " << root;
  }
}

// Host staging on CPU tensors: a strided view (a column, a transpose) is reduced through the
// staging buffer and written back into its own elements only; the buffer is reused across
// calls of other sizes and dtypes.
TEST_F(DistTest, MpiBackendReducesStridedViewsThroughTheStagingBuffer) {
  auto comm = Comm("mpi");
  const int W = size();
  for (const int64_t n : {5, 300, 11}) {
    auto whole = RankPattern(n * 3, rank(), torch::kFloat64).reshape({n, 3});
    auto column = whole.select(1, 1);  // stride 3: not contiguous
    ASSERT_FALSE(column.is_contiguous());
    const auto before = whole.clone();
    comm->allreduce_sum(column);
    const auto sum =
        (torch::arange(n * 3, torch::kFloat64).remainder(97) * W + 1000.0 * W * (W - 1) / 2).reshape({n, 3});
    EXPECT_TRUE(torch::equal(whole.select(1, 1), sum.select(1, 1))) << "n " << n;
    EXPECT_TRUE(torch::equal(whole.select(1, 0), before.select(1, 0))) << "a neighbouring element changed";
    EXPECT_TRUE(torch::equal(whole.select(1, 2), before.select(1, 2))) << "a neighbouring element changed";
    auto t = RankPattern(n * 4, rank(), torch::kFloat32).reshape({n, 4}).t();  // a transpose
    comm->broadcast(t, size() - 1);
    EXPECT_TRUE(torch::equal(t, RankPattern(n * 4, size() - 1, torch::kFloat32).reshape({n, 4}).t())) << "n " << n;
  }
}

// Skipped on every rank unless each rank has a GPU of its own (a one-GPU box runs this
// under dist_test_np1 only): the ranks decide together, so none waits for a skipped peer.
TEST_F(DistTest, NcclAllReduceAndBroadcastOnTheGpu) {
  if (!built_with_nccl()) GTEST_SKIP() << "this build has no NCCL";
  int gpu_index = -1;
  if (cuda_usable()) {
    try {
      gpu_index = gpu_for_local_rank(world().local_rank, static_cast<int>(torch::cuda::device_count()),
                                     std::getenv("CUDA_VISIBLE_DEVICES"));
    } catch (const UsageError&) {
    }
  }
  if (allreduce_min_max(world(), gpu_index).first < 0) {
    GTEST_SKIP() << (cuda_usable() ? "fewer GPUs on a node than ranks on it: NCCL needs one GPU per rank"
                                   : "no GPU here: the NCCL backend is compiled and linked, not run");
  }
  const torch::Device gpu(torch::kCUDA, static_cast<c10::DeviceIndex>(gpu_index));
  auto comm = Comm("nccl", gpu);
  for (const int64_t n : {1, 7, (1 << 20) + 3}) {
    auto t = RankPattern(n, rank(), torch::kFloat32).to(gpu);
    comm->allreduce_sum(t);
    const int W = size();
    auto expected =
        (torch::arange(n, torch::kFloat64).remainder(97) * W + 1000.0 * W * (W - 1) / 2).to(torch::kFloat32);
    EXPECT_TRUE(torch::equal(t.cpu(), expected)) << "n " << n;
  }
  for (int root = 0; root < size(); ++root) {
    auto t = RankPattern(1001, rank(), torch::kFloat32).to(gpu);
    comm->broadcast(t, root);
    EXPECT_TRUE(torch::equal(t.cpu(), RankPattern(1001, root, torch::kFloat32))) << "root " << root;
  }
}

TEST_F(DistTest, ParametersStartFromRankZeros) {
  auto comm = Comm("mpi");
  torch::manual_seed(100 + rank());  // every rank initialises differently
  VAE model(std::vector<int64_t>{16}, 3);
  broadcast_parameters(model->parameters(), *comm);
  const auto [lo, hi] = allreduce_min_max(world(), parameter_checksum(model->parameters()));
  EXPECT_EQ(lo, hi);
  torch::manual_seed(100);
  VAE rank0(std::vector<int64_t>{16}, 3);
  EXPECT_EQ(MaxRelativeDifference(model, rank0), 0.0);
}

TEST_F(DistTest, DivergedReplicasStopEveryRank) {
  if (size() == 1) GTEST_SKIP() << "needs two ranks";
  torch::manual_seed(1);
  VAE model(std::vector<int64_t>{16}, 3);
  EXPECT_NO_THROW(check_replicas_agree(world(), model->parameters(), "in test"));
  if (rank() == size() - 1) {
    torch::NoGradGuard no_grad;
    model->parameters()[0].view({-1})[5] += 1e-3;
  }
  EXPECT_THROW(check_replicas_agree(world(), model->parameters(), "in test"), CollectiveFailure);
}

// fp16's overflow handling: one rank's inf skips the step on every rank and halves the
// scale everywhere (on CPU tensors; the logic is the same on the GPU).
TEST_F(DistTest, InfOnOneRankSkipsTheStepOnEveryRank) {
  auto comm = Comm("mpi");
  torch::manual_seed(1);
  VAE model(std::vector<int64_t>{8}, 2);
  FlatParameters buffer(model->parameters());
  LossScaler scaler(/*enabled=*/true, torch::kCPU);
  buffer.grads().fill_(1.0);
  if (rank() == size() - 1) buffer.grads()[17] = std::numeric_limits<float>::infinity();
  comm->allreduce_sum(buffer.flat());
  auto g = buffer.grads();
  EXPECT_EQ(scaler.unscale_and_update(g).item<float>(), 1.0f);
  EXPECT_EQ(scaler.state().scale, 32768.0);
  // And a clean step afterwards goes through everywhere.
  buffer.zero_grads();
  buffer.grads().fill_(1.0);
  comm->allreduce_sum(buffer.flat());
  g = buffer.grads();
  EXPECT_EQ(scaler.unscale_and_update(g).item<float>(), 0.0f);
  EXPECT_FLOAT_EQ(g[0].item<float>(), size() / 32768.0f);
}

class ShardedTrainingTest : public DistTest {
 protected:
  static void SetUpTestSuite() {
    // 1003 images in global batches of 100: W = 3 does not divide B, and the last batch
    // of 3 images leaves rank 3 of 4 without any.
    train_ = load_mnist(VAE_DDP_DATA_DIR, Split::kTrain, /*verify_md5=*/false, /*limit=*/1003);
    test_ = load_mnist(VAE_DDP_DATA_DIR, Split::kTest, false, 1500);
  }
  Config Small(const std::string& out_dir) const {
    Config c;
    c.hidden_dims = {64};
    c.latent_dim = 8;
    c.batch_size = 100;
    c.out_dir = out_dir;
    c.kl_schedule = KLScheduleKind::kLinear;  // beta changes every step: rank 0's value must reach everyone
    c.kl_warmup_epochs = 1;
    c.threads = 1;
    return c;
  }
  static Dataset train_, test_;
  testing::TempDir dir_;
};
Dataset ShardedTrainingTest::train_;
Dataset ShardedTrainingTest::test_;

// The heart of world-size invariance: the same epoch on W ranks and on one process
// (computed right here, on each rank) ends with the same weights and losses.
TEST_F(ShardedTrainingTest, EpochMatchesOneProcess) {
  configure_threads(1, 1);
  auto comm = Comm("mpi");
  Trainer sharded(Small(dir_.path()), train_, test_, Device(), *comm);
  Trainer alone(Small(dir_.path()), train_, test_, Device(), testing::LocalComm());
  for (int64_t epoch = 1; epoch <= 2; ++epoch) {  // the second epoch starts from sharded state
    const EpochStats a = sharded.train_epoch(epoch), b = alone.train_epoch(epoch);
    EXPECT_EQ(a.images, 1003);
    EXPECT_NEAR(a.loss / b.loss, 1.0, 1e-5) << "epoch " << epoch;
    EXPECT_NEAR(a.kld / b.kld, 1.0, 1e-5) << "epoch " << epoch;
    EXPECT_EQ(a.beta, b.beta);
  }
  const double diff = MaxRelativeDifference(sharded.model(), alone.model());
  EXPECT_LT(diff, 1e-5);
  if (rank() == 0)
    std::printf("world %d vs one process after 2 epochs: max relative parameter difference %.3g\n", size(), diff);
  EXPECT_EQ(sharded.progress().global_step, alone.progress().global_step);
}

// Only rank 0's KL schedule counts: other ranks are given a different one and still
// train exactly as one process with rank 0's.
TEST_F(ShardedTrainingTest, BetaIsRankZeros) {
  auto comm = Comm("mpi");
  Config mine = Small(dir_.path());
  if (rank() != 0) mine.kl_warmup_epochs = 7;
  Trainer sharded(mine, train_, test_, Device(), *comm);
  Trainer alone(Small(dir_.path()), train_, test_, Device(), testing::LocalComm());
  sharded.train_epoch(1);
  alone.train_epoch(1);
  EXPECT_LT(MaxRelativeDifference(sharded.model(), alone.model()), 1e-5);
}

TEST_F(ShardedTrainingTest, ShardedEvalMatchesOneProcess) {
  auto comm = Comm("mpi");
  Trainer t(Small(dir_.path()), train_, test_, Device(), *comm);
  t.train_epoch(1);
  const EvalResult a = evaluate(t.model(), test_, /*seed=*/3, Device(), *comm);
  const EvalResult b = evaluate(t.model(), test_, 3, Device(), testing::LocalComm());
  EXPECT_EQ(a.images, 1500);
  // Same per-image values, summed in float64 in another grouping: float32 rounding of the
  // model's outputs for differently shaped batches is all that may differ.
  EXPECT_NEAR(a.loss / b.loss, 1.0, 1e-7);
  EXPECT_NEAR(a.kld / b.kld, 1.0, 1e-7);
}

TEST_F(ShardedTrainingTest, BinarizedEpochMatchesOneProcess) {
  auto comm = Comm("mpi");
  Config c = Small(dir_.path());
  c.binarize = Binarize::kDynamic;
  Trainer sharded(c, train_, test_, Device(), *comm);
  Trainer alone(c, train_, test_, Device(), testing::LocalComm());
  const EpochStats a = sharded.train_epoch(1), b = alone.train_epoch(1);
  EXPECT_NEAR(a.loss / b.loss, 1.0, 1e-5);
  EXPECT_LT(MaxRelativeDifference(sharded.model(), alone.model()), 1e-5);
  const EvalResult ea = evaluate(sharded.model(), test_, 3, Device(), *comm, /*binarize=*/true);
  const EvalResult eb = evaluate(alone.model(), test_, 3, Device(), testing::LocalComm(), true);
  EXPECT_NEAR(ea.loss / eb.loss, 1.0, 1e-5);
}

// The seeds' model variants keep world-size invariance: BatchNorm statistics are those of
// the global batch (all-reduced), dropout masks are drawn for the global batch, labels
// travel with their rows, and clipping sees the summed gradient.
TEST_F(ShardedTrainingTest, VariantsEpochMatchesOneProcess) {
  auto comm = Comm("mpi");
  const std::vector<std::pair<const char*, std::function<void(Config&)>>> variants = {
      {"batch_norm", [](Config& c) { c.batch_norm = true; }},
      {"dropout", [](Config& c) { c.dropout = 0.2; }},
      {"conditional", [](Config& c) { c.conditional = true; }},
      {"adamw+clip",
       [](Config& c) {
         c.optimizer = Optimizer::kAdamW;
         c.weight_decay = 0.01;
         c.grad_clip = 5;
       }},
      {"all",
       [](Config& c) {
         c.hidden_dims = {48, 32};
         c.activation = Activation::kLeakyRelu;
         c.batch_norm = true;
         c.dropout = 0.2;
         c.conditional = true;
         c.optimizer = Optimizer::kAdamW;
         c.weight_decay = 0.01;
         c.grad_clip = 5;
       }},
  };
  for (const auto& [name, tweak] : variants) {
    SCOPED_TRACE(name);
    Config c = Small(dir_.path());
    // With beta = 0 (a warm-up's start) and BatchNorm in the decoder, a shift of every mu
    // is normalised away: its gradient is exactly zero and Adam would step on rounding noise.
    c.kl_schedule = KLScheduleKind::kConstant;
    tweak(c);
    Trainer sharded(c, train_, test_, Device(), *comm);
    Trainer alone(c, train_, test_, Device(), testing::LocalComm());
    const EpochStats a = sharded.train_epoch(1), b = alone.train_epoch(1);
    EXPECT_NEAR(a.loss / b.loss, 1.0, 1e-5);
    const double diff = MaxRelativeDifference(sharded.model(), alone.model());
    EXPECT_LT(diff, 1e-5);
    const auto ba = sharded.model()->buffers(), bb = alone.model()->buffers();  // BatchNorm running statistics
    ASSERT_EQ(ba.size(), bb.size());
    for (size_t i = 0; i < ba.size(); ++i) EXPECT_TRUE(torch::allclose(ba[i], bb[i], 1e-4, 1e-5)) << "buffer " << i;
    if (rank() == 0)
      std::printf("%s, world %d vs one process: max relative parameter difference %.3g\n", name, size(), diff);
  }
}

// The control for the test above: BatchNorm with each rank's own statistics (what plain
// BatchNorm1d under DDP does) drifts from the one-process run as soon as W > 1.
TEST_F(ShardedTrainingTest, RankLocalBatchNormWouldNotMatch) {
  if (size() == 1) GTEST_SKIP() << "needs more than one rank";
  auto comm = Comm("mpi");
  Config c = Small(dir_.path());
  c.batch_norm = true;
  const Dataset full{train_.images.slice(0, 0, 1000), train_.labels.slice(0, 0, 1000)};  // no rank without rows
  Trainer sharded(c, full, test_, torch::kCPU, *comm);
  Trainer alone(c, full, test_, torch::kCPU, testing::LocalComm());
  sharded.model()->set_communicator(nullptr);
  sharded.train_epoch(1);
  alone.train_epoch(1);
  EXPECT_GT(MaxRelativeDifference(sharded.model(), alone.model()), 1e-3);
}

TEST_F(ShardedTrainingTest, ShardedImportanceWeightedNllMatchesOneProcess) {
  auto comm = Comm("mpi");
  Trainer t(Small(dir_.path()), train_, test_, torch::kCPU, *comm);
  t.train_epoch(1);
  const double a = importance_weighted_nll(t.model(), test_, /*seed=*/5, /*samples=*/20, torch::kCPU, *comm);
  const double b = importance_weighted_nll(t.model(), test_, 5, 20, torch::kCPU, testing::LocalComm());
  // Same images and noise; only the float32 grouping of images per decoder call differs.
  EXPECT_NEAR(a / b, 1.0, 1e-7);
}

}  // namespace
}  // namespace vae

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  vae::WorldSession session;
  vae::g_world = &session.world();
  if (session.world().rank != 0) {
    // Other ranks report only failures, so the log reads as one run.
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int failed = RUN_ALL_TESTS();
  // Every rank's verdict decides the exit code, whichever rank failed.
  const auto [lo, hi] = vae::allreduce_min_max(session.world(), failed);
  return hi != 0 ? 1 : 0;
}
