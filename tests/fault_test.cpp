// Faults end to end: preemption signals, killed ranks, a killed checkpoint writer, damaged
// checkpoints, a diverging loss and a full disk. Nothing the user has is lost, and no job
// hangs.
#include <chrono>
#include <filesystem>
#include <regex>

#include <gtest/gtest.h>

#include "test_util.h"

namespace vae {
namespace {

using testing::Result;
namespace fs = std::filesystem;

class FaultTest : public ::testing::Test {
 protected:
  void SetUp() override { VAE_REQUIRE_TEST_DEVICE(); }
  // 3001 images in batches of 100: 31 steps per epoch (the last one a single image).
  std::string Args(const std::string& out_dir, const std::string& extra) const {
    return " " + testing::TrainDeviceFlags() + " --data-dir " + data_ + " --out-dir " + out_dir +
           " --train-limit 3001 --batch-size 100 --hidden-dims 64 --latent-dim 8 --threads 1 --log-every 5"
           " --sample-every 0 " +
           extra;
  }
  Result Train(int np, const std::string& out_dir, const std::string& extra, const std::string& env = "") {
    return testing::run_command(env + " " + testing::Launcher(np) + VAE_DDP_BINARY + Args(out_dir, extra), tmp_.path());
  }
  static bool SameWeights(const std::string& a, const std::string& b) {
    const auto wa = testing::Weights(a), wb = testing::Weights(b);
    for (size_t i = 0; i < wa.size(); ++i) {
      if (!torch::equal(wa[i], wb[i])) return false;
    }
    return true;
  }
  // "exit=C seconds=S leftover=N" from kill_rank.sh.
  std::smatch KillRank(int np, int rank, const std::string& wait_for, const std::string& out_dir,
                       const std::string& extra, const std::string& env = "") {
    const std::string cmd = env + " " + std::string(VAE_DDP_SOURCE_DIR) + "/tests/kill_rank.sh '" + VAE_DDP_MPIRUN +
                            "' " + std::to_string(np) + " " + std::to_string(rank) + " " + wait_for + " " + out_dir +
                            " " + VAE_DDP_BINARY + Args(out_dir, extra);
    last_ = testing::run_command(cmd, tmp_.path());
    std::printf("kill_rank.sh: %s", last_.out.c_str());  // exit code, seconds to end, leftovers
    std::smatch m;
    std::regex_search(last_.out, m, std::regex(R"(exit=(-?\d+) seconds=([0-9.]+) leftover=(\d+))"));
    return m;
  }

  testing::TempDir tmp_;
  const std::string data_ = VAE_DDP_DATA_DIR;
  Result last_;
};

// A stop signal mid-epoch: checkpoint, exit 0; the rerun resumes at the next step and ends
// with exactly the weights and metrics of an uninterrupted run.
TEST_F(FaultTest, StopSignalCheckpointsAndResumesExactly) {
  ASSERT_EQ(Train(0, tmp_ / "straight", "--epochs 3").code, 0);
  const Result stopped = Train(0, tmp_ / "split", "--epochs 3", "VAE_DDP_TEST_FAULT=signal:0:40");
  ASSERT_EQ(stopped.code, 0) << stopped.err;
  EXPECT_NE(stopped.out.find("stopped by SIGUSR1; not under Slurm: not requeued"), std::string::npos) << stopped.out;
  EXPECT_NE(stopped.out.find("at epoch 2, step 10 of 31"), std::string::npos) << stopped.out;
  const Result resumed = Train(0, tmp_ / "split", "--epochs 3");
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_NE(resumed.out.find("epoch 2 stopped after step 10"), std::string::npos) << resumed.out;
  EXPECT_TRUE(SameWeights(tmp_ / "straight/checkpoints/last.pt", tmp_ / "split/checkpoints/last.pt"));
  EXPECT_EQ(testing::MetricsWithoutTimes(tmp_ / "straight/metrics.csv"),
            testing::MetricsWithoutTimes(tmp_ / "split/metrics.csv"));
}

// The signal reaches one rank only; the flag in the all-reduce stops both at the same step.
TEST_F(FaultTest, StopSignalOnOneRankStopsEveryRank) {
  ASSERT_EQ(Train(2, tmp_ / "straight", "--epochs 2").code, 0);
  const Result stopped = Train(2, tmp_ / "split", "--epochs 2", "VAE_DDP_TEST_FAULT=signal:1:12");
  ASSERT_EQ(stopped.code, 0) << stopped.err;
  EXPECT_NE(stopped.out.find("stopped by a stop signal on another rank"), std::string::npos) << stopped.out;
  ASSERT_EQ(Train(2, tmp_ / "split", "--epochs 2").code, 0);
  EXPECT_TRUE(SameWeights(tmp_ / "straight/checkpoints/last.pt", tmp_ / "split/checkpoints/last.pt"));
}

TEST_F(FaultTest, DivergingLossStopsAndKeepsTheLastGoodCheckpoint) {
  const Result r = Train(0, tmp_ / "run", "--epochs 3", "VAE_DDP_TEST_FAULT=nan:0:40");
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("non-finite loss (NaN or inf) at epoch 2, step 10"), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  const Checkpoint ckpt(tmp_ / "run/checkpoints/last.pt");
  EXPECT_EQ(ckpt.progress().epoch, 1);
  EXPECT_EQ(ckpt.progress().step_in_epoch, 0);
}

TEST_F(FaultTest, DamagedLastCheckpointFallsBackToTheNewestGoodEpoch) {
  ASSERT_EQ(Train(0, tmp_ / "run", "--epochs 2").code, 0);
  auto bytes = testing::read_bytes(tmp_ / "run/checkpoints/last.pt");
  bytes[bytes.size() / 2] ^= 1;
  testing::write_bytes(tmp_ / "run/checkpoints/last.pt", bytes);
  const Result r = Train(0, tmp_ / "run", "--epochs 3");
  ASSERT_EQ(r.code, 0) << r.err;
  // A warning: on stderr, not among the run's lines on stdout.
  EXPECT_NE(r.err.find("last.pt: checksum mismatch: the file is corrupt; resuming from"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("epoch_002.pt instead"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("checksum mismatch"), std::string::npos) << r.out;
  EXPECT_EQ(Checkpoint(tmp_ / "run/checkpoints/last.pt").progress().epoch, 3);
  // Every checkpoint damaged: a clear error, never a silent fresh start over them.
  for (const auto& e : fs::directory_iterator(tmp_ / "run/checkpoints")) testing::write_bytes(e.path(), {1, 2, 3});
  const Result none = Train(0, tmp_ / "run", "--epochs 4");
  EXPECT_EQ(none.code, 2);
  EXPECT_NE(none.err.find("no usable checkpoint"), std::string::npos) << none.err;
}

TEST_F(FaultTest, FullDiskIsAClearErrorAndKeepsTheOldCheckpoint) {
  ASSERT_EQ(Train(0, tmp_ / "run", "--epochs 1").code, 0);
  const auto before = testing::read_bytes(tmp_ / "run/checkpoints/last.pt");
  fs::create_symlink("/dev/full", tmp_ / "run/checkpoints/last.pt.tmp");  // every write: ENOSPC
  const Result r = Train(0, tmp_ / "run", "--epochs 2");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.err.find("last.pt.tmp: write failed: No space left on device"), std::string::npos) << r.err;
  EXPECT_EQ(testing::read_bytes(tmp_ / "run/checkpoints/last.pt"), before);
}

// A communicator set-up that fails on one rank (injected here; on a GPU node, a GPU that
// rank cannot bind) ends every rank promptly with that rank's one error line: no rank is
// left waiting in a collective the failed one never joins.
TEST_F(FaultTest, CommunicatorSetupFailingOnOneRankEndsEveryRank) {
  const auto t0 = std::chrono::steady_clock::now();
  const Result r = Train(2, tmp_ / "run", "--epochs 1", "VAE_DDP_TEST_FAULT=commsetup:1:0");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.code, 1) << r.err;
  EXPECT_NE(r.err.find("[rank 1] injected fault (VAE_DDP_TEST_FAULT): communicator set-up failed on rank 1"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(testing::Count(r.err, "vae_ddp: error:"), 1) << r.err;
  EXPECT_EQ(r.err.find("MPI_ABORT"), std::string::npos) << "every rank left together, not through an abort:\n" << r.err;
  EXPECT_LT(seconds, 60) << "the ranks ended together, not after --comm-timeout";
}

// A rank stuck inside the all-reduce itself (not before it): its own watchdog and its
// peer's end the job after --comm-timeout, with the call named.
TEST_F(FaultTest, RankStuckInsideTheAllReduceEndsTheJob) {
  const auto t0 = std::chrono::steady_clock::now();
  const Result r = Train(2, tmp_ / "run", "--epochs 2 --comm-timeout 3", "VAE_DDP_TEST_FAULT=collstall:1:5");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("MPI all-reduce did not complete within 3 s"), std::string::npos) << r.err;
  EXPECT_LT(seconds, 60);
}

TEST_F(FaultTest, KilledRankEndsTheJobWithNothingLeftBehind) {
  // Rank 1 is killed once rank 0 has logged progress (the first checkpoint exists).
  const auto m = KillRank(2, 1, tmp_ / "run/checkpoints/last.pt", tmp_ / "run", "--epochs 50");
  ASSERT_FALSE(m.empty()) << last_.out << last_.err;
  EXPECT_NE(m[1], "0") << "the job must fail";
  EXPECT_LT(std::stod(m[2]), 60.0);
  EXPECT_EQ(m[3], "0") << "processes left behind";
}

TEST_F(FaultTest, KilledWhileWritingACheckpointLosesNothing) {
  // Rank 0 sleeps with epoch 2's last.pt.tmp written but not renamed; it is killed there.
  const auto m = KillRank(2, 0, tmp_ / "run/checkpoints/last.pt.tmp", tmp_ / "run", "--epochs 3",
                          "VAE_DDP_TEST_FAULT=slowsave:0:2");
  ASSERT_FALSE(m.empty()) << last_.out << last_.err;
  EXPECT_NE(m[1], "0");
  EXPECT_EQ(m[3], "0");
  EXPECT_EQ(Checkpoint(tmp_ / "run/checkpoints/last.pt").progress().epoch, 1);  // the previous one, intact
  const Result resumed = Train(2, tmp_ / "run", "--epochs 3");
  ASSERT_EQ(resumed.code, 0) << resumed.err;
  EXPECT_NE(resumed.out.find("resuming from"), std::string::npos);
  EXPECT_EQ(Checkpoint(tmp_ / "run/checkpoints/last.pt").progress().epoch, 3);
}

}  // namespace
}  // namespace vae
