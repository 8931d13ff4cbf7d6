#include "vae_ddp/checkpoint.h"

#include <gtest/gtest.h>

#include "test_util.h"
#include "vae_ddp/errors.h"
#include "vae_ddp/trainer.h"

namespace vae {
namespace {

using testing::TempDir;

class CheckpointTest : public ::testing::Test {
 protected:
  CheckpointTest() : config_(testing::TinyConfig(dir_.path())), data_(testing::SyntheticData()) {}
  std::unique_ptr<Trainer> MakeTrainer() {
    return std::make_unique<Trainer>(config_, data_, data_, torch::Device(torch::kCPU), testing::LocalComm());
  }
  void Save(Trainer& t, const std::string& path) {
    save_checkpoint(path, t.model(), t.optimizer(), t.progress(), config_);
  }
  static bool SameParameters(Trainer& a, Trainer& b) {
    auto pa = a.model()->parameters(), pb = b.model()->parameters();
    for (size_t i = 0; i < pa.size(); ++i) {
      if (!torch::equal(pa[i], pb[i])) return false;
    }
    return true;
  }
  // A trainer after epochs 1 and 2 without a break.
  std::unique_ptr<Trainer> TrainedStraight() {
    auto t = MakeTrainer();
    t->train_epoch(1);
    t->train_epoch(2);
    return t;
  }
  // Trains epoch 1 and saves it; returns the checkpoint's path.
  std::string SavedAfterEpoch1() {
    auto t = MakeTrainer();
    t->train_epoch(1);
    Save(*t, dir_ / "e1.pt");
    return dir_ / "e1.pt";
  }
  std::string LoadError(const std::string& path) {
    try {
      Checkpoint ckpt(path);
    } catch (const UsageError& e) {
      return e.what();
    }
    return "";
  }

  TempDir dir_;
  Config config_;
  Dataset data_;
};

TEST_F(CheckpointTest, LossScalerStateIsSaved) {
  auto t = MakeTrainer();
  TrainProgress progress = t->progress();
  progress.scaler = ScalerState{1024.0, 1234};
  save_checkpoint(dir_ / "s.pt", t->model(), t->optimizer(), progress, config_);
  const Checkpoint ckpt(dir_ / "s.pt");
  EXPECT_EQ(ckpt.progress().scaler.scale, 1024.0);
  EXPECT_EQ(ckpt.progress().scaler.growth_tracker, 1234);
}

TEST_F(CheckpointTest, RoundTripRestoresWeightsProgressAndConfig) {
  auto a = MakeTrainer();
  a->train_epoch(1);
  Save(*a, dir_ / "a.pt");
  Checkpoint ckpt(dir_ / "a.pt");
  EXPECT_EQ(ckpt.progress().epoch, 1);
  EXPECT_EQ(ckpt.progress().global_step, 5);
  EXPECT_TRUE(ckpt.config() == config_);
  config_.seed = 99;  // a different initialisation, overwritten by the restore
  auto b = MakeTrainer();
  EXPECT_FALSE(SameParameters(*a, *b));
  b->resume_from(ckpt);
  EXPECT_TRUE(SameParameters(*a, *b));
  EXPECT_EQ(b->progress().global_step, 5);
}

TEST_F(CheckpointTest, ResumeIsBitIdenticalToAnUninterruptedRun) {
  auto straight = TrainedStraight();
  auto resumed = MakeTrainer();
  resumed->resume_from(Checkpoint(SavedAfterEpoch1()));
  resumed->train_epoch(2);
  EXPECT_TRUE(SameParameters(*straight, *resumed));
}

TEST_F(CheckpointTest, ResumeWithoutOptimizerStateWouldDiffer) {
  // Guards the test above: a restart from the weights alone (fresh Adam) must not match.
  auto straight = TrainedStraight();
  auto weights_only = MakeTrainer();
  Checkpoint(SavedAfterEpoch1()).restore_model(weights_only->model());
  weights_only->train_epoch(2);
  EXPECT_FALSE(SameParameters(*straight, *weights_only));
}

TEST_F(CheckpointTest, OtherArchitectureIsRejected) {
  auto a = MakeTrainer();
  Save(*a, dir_ / "a.pt");
  config_.latent_dim = 8;
  auto b = MakeTrainer();
  try {
    b->resume_from(Checkpoint(dir_ / "a.pt"));
    FAIL();
  } catch (const UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("holds a 784-32-4 model but the config asks for 784-32-8"),
              std::string::npos)
        << e.what();
  }
}

TEST_F(CheckpointTest, CorruptAndTruncatedFilesAreNamed) {
  auto a = MakeTrainer();
  Save(*a, dir_ / "good.pt");
  auto bytes = testing::read_bytes(dir_ / "good.pt");
  testing::write_bytes(dir_ / "truncated.pt", {bytes.begin(), bytes.begin() + bytes.size() / 2});
  testing::write_bytes(dir_ / "garbage.pt", std::vector<uint8_t>(1000, 42));
  testing::write_bytes(dir_ / "empty.pt", {});
  for (const char* name : {"truncated.pt", "garbage.pt", "empty.pt"}) {
    const std::string err = LoadError(dir_ / name);
    EXPECT_NE(err.find(dir_ / name), std::string::npos) << name << ": " << err;
  }
  EXPECT_NE(LoadError(dir_ / "missing.pt").find("cannot read"), std::string::npos);
}

// Every single-byte change anywhere in the file is caught by the SHA-256 trailer.
TEST_F(CheckpointTest, ChecksumCatchesAFlippedByteAnywhere) {
  auto a = MakeTrainer();
  Save(*a, dir_ / "good.pt");
  EXPECT_EQ(LoadError(dir_ / "good.pt"), "");
  const auto bytes = testing::read_bytes(dir_ / "good.pt");
  for (const size_t at : {size_t{0}, bytes.size() / 3, bytes.size() / 2, bytes.size() - 49, bytes.size() - 1}) {
    auto flipped = bytes;
    flipped[at] ^= 0x10;
    testing::write_bytes(dir_ / "flipped.pt", flipped);
    const std::string err = LoadError(dir_ / "flipped.pt");
    EXPECT_TRUE(err.find("checksum mismatch") != std::string::npos || err.find("no vae_ddp checksum") != std::string::npos)
        << "byte " << at << ": " << err;
  }
  auto cut = bytes;
  cut.pop_back();
  testing::write_bytes(dir_ / "cut.pt", cut);
  EXPECT_NE(LoadError(dir_ / "cut.pt").find("no vae_ddp checksum"), std::string::npos);
}

TEST_F(CheckpointTest, WriteIsAtomic) {
  auto a = MakeTrainer();
  Save(*a, dir_ / "c.pt");
  const auto before = testing::read_bytes(dir_ / "c.pt");
  a->train_epoch(1);
  Save(*a, dir_ / "c.pt");
  EXPECT_NE(testing::read_bytes(dir_ / "c.pt"), before);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "c.pt.tmp"));
  EXPECT_THROW(Save(*a, dir_ / "no/such/dir/c.pt"), std::runtime_error);
}

}  // namespace
}  // namespace vae
