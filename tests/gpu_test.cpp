// What only a GPU can show, end to end through the vae_ddp binary (label `gpu`): each test
// skips, with a message, where no GPU is visible, and fails where nvidia-smi lists a GPU
// that libtorch cannot use. The device-generic end-to-end tests (cli_test, dist_cli_test,
// fault_test, dist_test) also run on CUDA, under the same label (tests/CMakeLists.txt).
#include <chrono>
#include <cmath>
#include <regex>

#include <gtest/gtest.h>

#include "test_util.h"

namespace vae {
namespace {

using testing::Result;

class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override { VAE_REQUIRE_GPU(); }
  // `vae_ddp train` on `np` ranks (0: without a launcher), with `flags` (a device among them).
  Result Train(int np, const std::string& out_dir, const std::string& flags, const std::string& env = "") {
    return testing::run_command(env + " " + testing::Launcher(np) + VAE_DDP_BINARY + " train --data-dir " + data_ +
                                    " --out-dir " + out_dir + " --log-every 0 --sample-every 0 " + flags,
                                tmp_.path());
  }
  Result Run(const std::string& args, const std::string& env = "") {
    return testing::run_command(env + " " + VAE_DDP_BINARY + " " + args, tmp_.path());
  }
  // Column `col` (metrics.csv's header names it) of the last epoch's row.
  static double LastMetric(const std::string& out_dir, const std::string& col) {
    std::istringstream in(testing::read_text(out_dir + "/metrics.csv"));
    std::string header, line, last;
    std::getline(in, header);
    while (std::getline(in, line)) last = line;
    std::vector<std::string> names, cells;
    std::stringstream h(header), l(last);
    for (std::string c; std::getline(h, c, ',');) names.push_back(c);
    for (std::string c; std::getline(l, c, ',');) cells.push_back(c);
    for (size_t i = 0; i < names.size() && i < cells.size(); ++i) {
      if (names[i] == col) return std::stod(cells[i]);
    }
    ADD_FAILURE() << "no " << col << " in " << out_dir << "/metrics.csv";
    return NAN;
  }
  std::string Dir(const std::string& name) const { return tmp_ / name; }

  testing::TempDir tmp_;
  const std::string data_ = VAE_DDP_DATA_DIR;
  // One epoch of the default model on 12 800 images (100 steps of 128).
  const std::string epoch_ = "--epochs 1 --train-limit 12800 --seed 3 ";
};

// The same seed on the GPU and the CPU: the initial weights (drawn on the CPU from the seed)
// and every epoch's noise and order (drawn on the CPU, then copied) are the same by
// construction. What differs is float32 rounding: cuBLAS and the CPU GEMMs sum in other
// orders (TF32 stays off), which 100 Adam steps carry into the weights. Bound: 0.5 % of the
// test loss.
TEST_F(GpuTest, Fp32EpochMatchesTheCpu) {
  ASSERT_EQ(Train(0, Dir("cpu"), epoch_ + "--device cpu").code, 0);
  const Result gpu = Train(0, Dir("gpu"), epoch_ + "--device cuda");
  ASSERT_EQ(gpu.code, 0) << gpu.err;
  const double cpu_loss = LastMetric(Dir("cpu"), "test_loss"), gpu_loss = LastMetric(Dir("gpu"), "test_loss");
  std::printf("test loss after one epoch: CPU %.4f, CUDA fp32 %.4f (%.3f %%)\n", cpu_loss, gpu_loss,
              100 * (gpu_loss / cpu_loss - 1));
  EXPECT_NEAR(gpu_loss / cpu_loss, 1.0, 0.005);
  EXPECT_NEAR(LastMetric(Dir("gpu"), "train_loss") / LastMetric(Dir("cpu"), "train_loss"), 1.0, 0.005);
}

TEST_F(GpuTest, Bf16AndFp16EndWithinTwoPercentOfFp32) {
  ASSERT_EQ(Train(0, Dir("fp32"), epoch_ + "--device cuda --precision fp32").code, 0);
  const double fp32 = LastMetric(Dir("fp32"), "test_loss");
  for (const char* precision : {"bf16", "fp16"}) {
    const Result r = Train(0, Dir(precision), epoch_ + "--device cuda --precision " + precision);
    ASSERT_EQ(r.code, 0) << precision << ": " << r.err;
    const double loss = LastMetric(Dir(precision), "test_loss");
    std::printf("test loss after one epoch: fp32 %.4f, %s %.4f\n", fp32, precision, loss);
    EXPECT_NEAR(loss / fp32, 1.0, 0.02) << precision;
  }
}

// An inf in one rank's fp16 gradients: the summed gradient carries it to every rank, each
// skips that step (the weights stay equal: the run's replica check would stop it), the scale
// halves, and the next epoch trains with no skip.
TEST_F(GpuTest, Fp16OverflowOnOneRankSkipsTheSameStepEverywhereAndRecovers) {
  const std::string flags = "--epochs 2 --train-limit 6400 --device cuda --precision fp16 ";
  for (const int np : {0, 2}) {
    SCOPED_TRACE(np);
    const std::string dir = Dir("np" + std::to_string(np));
    const Result r = Train(np, dir, flags + (np ? "--backend mpi" : ""),
                           "VAE_DDP_TEST_FAULT=overflow:" + std::to_string(np ? 1 : 0) + ":7");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(testing::Count(r.out, "(1 fp16 steps skipped)"), 1) << r.out;  // epoch 1 only
    EXPECT_TRUE(std::isfinite(LastMetric(dir, "test_loss")));
  }
}

// No step waits for the GPU: CUDA's sync debug mode set to error around every step
// (VAE_DDP_SYNC_DEBUG) makes any such wait fail the run, for the default flags and each
// feature with a path of its own; such a run prints the GPU operations per step.
TEST_F(GpuTest, NoHostSyncInsideAStep) {
  for (const char* extra :
       {"", "--precision fp16", "--precision bf16", "--step autograd", "--batch-norm", "--dropout 0.2",
        "--binarize dynamic"}) {
    SCOPED_TRACE(extra);
    const Result r = Train(0, Dir("sync"), epoch_ + "--device cuda " + extra, "VAE_DDP_SYNC_DEBUG=error");
    EXPECT_EQ(r.code, 0) << r.err;
    std::smatch m;
    if (std::regex_search(r.out, m, std::regex(R"(([0-9.]+) GPU operations per step \(([0-9.]+) kernels)"))) {
      std::printf("[%s] %s GPU operations per step, %s kernels\n", *extra ? extra : "default", m[1].str().c_str(),
                  m[2].str().c_str());
    } else {
      ADD_FAILURE() << "no GPU operation count printed:\n" << r.out;
    }
  }
}

// The default recipe's 10 epochs through the CUDA graph step (what `auto` picks on a GPU) in
// fp32 and bf16 reach the CPU's test loss (105.8 there; 106.0 allowed), and say so at start.
TEST_F(GpuTest, GraphStepTrainsTheDefaultRecipe) {
  for (const char* precision : {"fp32", "bf16"}) {
    SCOPED_TRACE(precision);
    const std::string out = Dir(std::string("graph-") + precision);
    const Result r = Train(0, out, std::string("--device cuda --step graph --epochs 10 --precision ") + precision);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("step: CUDA graph"), std::string::npos) << r.out;
    const double loss = LastMetric(out, "test_loss");
    std::printf("--step graph %s: 10 epochs, test loss %.4f\n", precision, loss);
    EXPECT_LE(loss, 106.0);
  }
}

// NCCL with one rank, with and without a launcher, SyncBatchNorm's all-reduces included:
// the same run as the one-process communicator.
TEST_F(GpuTest, NcclWithOneRankGivesTheOneProcessRun) {
  const std::string flags = epoch_ + "--device cuda --batch-norm ";
  ASSERT_EQ(Train(0, Dir("local"), flags + "--backend auto").code, 0);
  for (const int np : {0, 1}) {
    const std::string dir = Dir("nccl" + std::to_string(np));
    const Result r = Train(np, dir, flags + "--backend nccl");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NEAR(LastMetric(dir, "test_loss") / LastMetric(Dir("local"), "test_loss"), 1.0, 1e-5) << np;
  }
}

// NCCL takes one GPU per rank: more ranks than GPUs is a one-line usage error that names
// the way out; --backend mpi shares the GPU.
TEST_F(GpuTest, MoreRanksThanGpusWithNcclIsAUsageError) {
  const int np = static_cast<int>(torch::cuda::device_count()) + 1;
  const Result r = Train(np, Dir("over"), epoch_ + "--device cuda --backend nccl");
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("share the GPUs with --backend mpi"), std::string::npos) << r.err;
  EXPECT_EQ(testing::Count(r.err, "\n"), 1) << r.err;
  const Result shared = Train(np, Dir("shared"), "--epochs 1 --train-limit 2000 --device cuda --backend mpi");
  EXPECT_EQ(shared.code, 0) << shared.err;
}

// A rank stuck inside an NCCL all-reduce (its stream waits forever): the communicator's
// watchdog ends the job after --comm-timeout.
TEST_F(GpuTest, NcclWatchdogEndsAStuckAllReduce) {
  const auto t0 = std::chrono::steady_clock::now();
  const Result r = Train(0, Dir("stall"), epoch_ + "--device cuda --backend nccl --comm-timeout 5",
                         "VAE_DDP_TEST_FAULT=collstall:0:5");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("NCCL all-reduce did not complete within 5 s"), std::string::npos) << r.err;
  EXPECT_LT(seconds, 90);
}

// Checkpoints move between devices: a GPU epoch continued on the CPU and a CPU epoch on the
// GPU end the second epoch within the CPU-vs-GPU bound of Fp32EpochMatchesTheCpu; a GPU
// checkpoint is evaluated, sampled and exported where no GPU is visible.
TEST_F(GpuTest, CheckpointsMoveBetweenGpuAndCpu) {
  const std::string two = "--epochs 2 --train-limit 12800 --seed 3 ";
  ASSERT_EQ(Train(0, Dir("straight"), two + "--device cpu").code, 0);
  for (const auto& [first, second] : {std::pair{"cuda", "cpu"}, std::pair{"cpu", "cuda"}}) {
    const std::string dir = Dir(std::string(first) + "-then-" + second);
    ASSERT_EQ(Train(0, dir, epoch_ + "--device " + first).code, 0);
    const Result r = Train(0, dir, two + "--device " + second);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find("resuming from"), std::string::npos) << r.out;
    EXPECT_NEAR(LastMetric(dir, "test_loss") / LastMetric(Dir("straight"), "test_loss"), 1.0, 0.005) << dir;
  }
  const std::string ckpt = Dir("cpu-then-cuda") + "/checkpoints/last.pt";  // written on the GPU
  for (const std::string& args : {"eval --json --checkpoint " + ckpt + " --data-dir " + data_,
                                  "sample --checkpoint " + ckpt + " --out " + Dir("grid.png"),
                                  "export --checkpoint " + ckpt + " --out " + Dir("weights.pt")}) {
    const Result r = Run(args, "CUDA_VISIBLE_DEVICES=");  // no GPU visible: --device auto is the CPU
    EXPECT_EQ(r.code, 0) << args << "\n" << r.err;
  }
}

}  // namespace
}  // namespace vae
