// End-to-end under mpirun: the vae_ddp binary on 1-4 CPU ranks gives the same run as one
// process, its checkpoints move between world sizes, and no failure leaves a job hanging.
#include <chrono>
#include <filesystem>
#include <regex>

#include <gtest/gtest.h>

#include "test_util.h"

namespace vae {
namespace {

using testing::Result;
namespace fs = std::filesystem;

class DistCliTest : public ::testing::Test {
 protected:
  void SetUp() override { VAE_REQUIRE_TEST_DEVICE(); }
  // `vae_ddp args` on `np` ranks; np = 0 runs it without a launcher.
  Result Run(int np, const std::string& args, const std::string& env = "") {
    return testing::run_command(env + " " + testing::Launcher(np) + VAE_DDP_BINARY + " " + testing::OnTestDevice(args),
                                tmp_.path());
  }
  // A small run: 1003 images in global batches of 100 (3 does not divide 100; the last
  // batch of 3 leaves rank 3 of 4 empty), linear KL warm-up so beta changes every step.
  Result Train(int np, const std::string& out_dir, const std::string& extra, const std::string& env = "") {
    return Run(np,
               "--data-dir " + data_ + " --out-dir " + out_dir +
                   " --train-limit 1003 --batch-size 100 --hidden-dims 64 --latent-dim 8 --kl-schedule linear"
                   " --kl-warmup-epochs 1 --threads 1 --log-every 3 --sample-every 0 " +
                   extra,
               env);
  }
  // Largest ||a - b|| / ||b|| over the parameter tensors of two checkpoints.
  static double WeightDifference(const std::string& a, const std::string& b) {
    const auto wa = testing::Weights(a), wb = testing::Weights(b);
    double worst = 0;
    for (size_t i = 0; i < wa.size(); ++i) {
      worst = std::max(worst, ((wa[i] - wb[i]).norm() / wb[i].norm()).item<double>());
    }
    return worst;
  }
  // The numeric metrics.csv cells (timings dropped), row by row.
  static std::vector<std::vector<double>> Metrics(const std::string& path) {
    std::istringstream in(testing::MetricsWithoutTimes(path));
    std::string line;
    std::getline(in, line);  // header
    std::vector<std::vector<double>> rows;
    while (std::getline(in, line)) {
      std::vector<double> row;
      std::istringstream cells(line);
      for (std::string cell; std::getline(cells, cell, ',');) row.push_back(std::stod(cell));
      rows.push_back(row);
    }
    return rows;
  }
  static void ExpectSameMetrics(const std::string& a, const std::string& b, double tolerance) {
    const auto ma = Metrics(a), mb = Metrics(b);
    ASSERT_EQ(ma.size(), mb.size());
    for (size_t r = 0; r < ma.size(); ++r) {
      for (size_t c = 0; c < ma[r].size(); ++c) {
        EXPECT_NEAR(ma[r][c], mb[r][c], tolerance * std::max(1.0, std::abs(mb[r][c])))
            << a << " row " << r << " column " << c;
      }
    }
  }
  // A user error: exit 2 and exactly one line on stderr containing `needle`.
  void ExpectOneLineError(const Result& r, const std::string& needle) {
    EXPECT_EQ(r.code, 2) << r.out << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }

  testing::TempDir tmp_;
  const std::string data_ = VAE_DDP_DATA_DIR;
};

TEST_F(DistCliTest, OneToFourRanksGiveTheSameRun) {
  ASSERT_EQ(Train(0, tmp_ / "w1", "--epochs 2 --world 1").code, 0);
  for (int np = 1; np <= 4; ++np) {
    const std::string dir = tmp_ / ("np" + std::to_string(np));
    const Result r = Train(np, dir, "--epochs 2");
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.out.find(std::to_string(np) + " rank(s)"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("[rank"), std::string::npos) << "other ranks must not log at info level:\n" << r.out;
    ExpectSameMetrics(dir + "/metrics.csv", tmp_ / "w1/metrics.csv", 1e-5);
    EXPECT_LT(WeightDifference(dir + "/checkpoints/last.pt", tmp_ / "w1/checkpoints/last.pt"), 1e-5) << np;
  }
}

// Open MPI gives its ranks a pseudo-terminal whatever mpirun's stdout is: under
// `mpirun ... > log` (here, a file) rank 0 must still print plain lines, no live bar.
TEST_F(DistCliTest, ProgressUnderMpirunIntoAFileHasNoTerminalCodes) {
  const Result r = Train(2, tmp_ / "run", "--epochs 1");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out.find('\r'), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("\033["), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("epoch 1 ["), std::string::npos) << "the plain progress lines:\n" << r.out;
}

TEST_F(DistCliTest, CheckpointsMoveBetweenWorldSizes) {
  ASSERT_EQ(Train(4, tmp_ / "four", "--epochs 1").code, 0);
  fs::copy(tmp_ / "four", tmp_ / "one", fs::copy_options::recursive);
  ASSERT_EQ(Train(4, tmp_ / "four", "--epochs 2").code, 0);  // --resume auto on 4 ranks
  const Result one = Train(0, tmp_ / "one", "--epochs 2");   // the 4-rank checkpoint on 1 rank
  ASSERT_EQ(one.code, 0) << one.err;
  EXPECT_NE(one.out.find("resuming from"), std::string::npos) << one.out;
  EXPECT_LT(WeightDifference(tmp_ / "one/checkpoints/last.pt", tmp_ / "four/checkpoints/last.pt"), 1e-5);
  ExpectSameMetrics(tmp_ / "one/metrics.csv", tmp_ / "four/metrics.csv", 1e-5);
  // And the other way: one rank's checkpoint continues on three.
  ASSERT_EQ(Train(3, tmp_ / "one", "--epochs 3").code, 0);
  ASSERT_EQ(Train(0, tmp_ / "four", "--epochs 3").code, 0);
  EXPECT_LT(WeightDifference(tmp_ / "one/checkpoints/last.pt", tmp_ / "four/checkpoints/last.pt"), 1e-5);
}

TEST_F(DistCliTest, ShardedEvalPrintsTheSameNumbers) {
  ASSERT_EQ(Train(0, tmp_ / "run", "--epochs 1").code, 0);
  const std::string args = "eval --json --checkpoint " + (tmp_ / "run/checkpoints/last.pt") + " --data-dir " + data_;
  const Result one = Run(0, args), three = Run(3, args + " --threads 1");
  ASSERT_EQ(one.code, 0) << one.err;
  ASSERT_EQ(three.code, 0) << three.err;
  EXPECT_EQ(std::count(three.out.begin(), three.out.end(), '\n'), 1) << "only rank 0 prints:\n" << three.out;
  std::smatch a, b;
  const std::regex loss("\"test_loss\": ([0-9.e+-]+)");
  ASSERT_TRUE(std::regex_search(one.out, a, loss)) << one.out;
  ASSERT_TRUE(std::regex_search(three.out, b, loss)) << three.out;
  EXPECT_NEAR(std::stod(b[1]) / std::stod(a[1]), 1.0, 1e-7);
}

TEST_F(DistCliTest, RankThatThrowsEndsTheJobQuickly) {
  const auto t0 = std::chrono::steady_clock::now();
  const Result r = Train(2, tmp_ / "run", "--epochs 2", "VAE_DDP_TEST_FAULT=throw:1:3");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("[rank 1] injected fault"), std::string::npos) << r.err;
  EXPECT_LT(seconds, 60) << "the job should end at once, not wait for a timeout";
}

TEST_F(DistCliTest, PeerThatStopsAnsweringEndsTheJob) {
  const auto t0 = std::chrono::steady_clock::now();
  const Result r = Train(2, tmp_ / "run", "--epochs 2 --comm-timeout 3", "VAE_DDP_TEST_FAULT=stall:1:3");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("did not complete within 3 s"), std::string::npos) << r.err;
  EXPECT_LT(seconds, 60);
}

TEST_F(DistCliTest, WorldMustMatchTheLauncher) {
  ExpectOneLineError(Train(2, tmp_ / "run", "--world 3"), "--world 3: the launcher started 2 process(es)");
  ExpectOneLineError(Train(0, tmp_ / "run", "--world 4"), "mpirun -np 4 vae_ddp");
}

TEST_F(DistCliTest, RanksWithDifferentFlagsAreStoppedAtStart) {
  const std::string common = VAE_DDP_BINARY + std::string(" ") + testing::TrainDeviceFlags() + " --data-dir " + data_ +
                             " --out-dir " + (tmp_ / "run") + " --train-limit 200 --epochs 1 --threads 1 ";
  const Result r = testing::run_command(
      std::string(VAE_DDP_MPIRUN) + " -q -np 1 " + common + "--latent-dim 20 : -np 1 " + common + "--latent-dim 10",
      tmp_.path());
  ExpectOneLineError(r, "ranks disagree on the configuration");
}

TEST_F(DistCliTest, BadFlagIsReportedOnceUnderMpirun) { ExpectOneLineError(Run(3, "--batch-size 0"), "--batch-size"); }

}  // namespace
}  // namespace vae
