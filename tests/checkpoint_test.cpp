#include "vae_ddp/train/checkpoint.h"

#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include "test_util.h"
#include "vae_ddp/base/digest.h"
#include "vae_ddp/base/errors.h"
#include "vae_ddp/train/trainer.h"

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
  static bool SameParameters(Trainer& a, Trainer& b) { return testing::SameParameters(a.model(), b.model()); }
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
  // Writes `t`'s model as format 2 did (vae_ddp up to libtorch 1.13 only): the Adam state
  // in torch::optim::Adam's own archive layout, here after one libtorch Adam step on the
  // gradients `grads` (one per parameter), so the moments are (1-b1) g and (1-b2) g^2.
  void SaveFormat2(Trainer& t, const std::vector<torch::Tensor>& grads, const std::string& path) {
    auto params = t.model()->parameters();
    std::vector<torch::Tensor> copies;
    for (size_t i = 0; i < params.size(); ++i) {
      copies.push_back(params[i].detach().clone().requires_grad_());
      copies.back().mutable_grad() = grads[i];
    }
    torch::optim::Adam adam(copies, torch::optim::AdamOptions(config_.lr));
    adam.step();
    torch::serialize::OutputArchive root, model_ar, opt_ar;
    t.model()->save(model_ar);
    adam.save(opt_ar);
    root.write("model", model_ar);
    root.write("optimizer", opt_ar);
    root.write("format_version", torch::tensor(int64_t{2}));
    root.write("epoch", torch::tensor(int64_t{1}));
    root.write("global_step", torch::tensor(int64_t{1}));
    const std::string yaml = to_yaml(config_);
    root.write(
        "config_yaml",
        torch::from_blob(const_cast<char*>(yaml.data()), {static_cast<int64_t>(yaml.size())}, torch::kUInt8).clone());
    root.write("cpu_rng_state", at::detail::getDefaultCPUGenerator().get_state());
    root.write("loss_scale", torch::tensor(65536.0, torch::kFloat64));
    root.write("scale_growth_tracker", torch::tensor(int64_t{0}));
    root.write("step_in_epoch", torch::tensor(int64_t{0}));
    root.write("partial_sums", torch::zeros({4}, torch::kFloat64));
    root.write("partial_seconds", torch::tensor(0.0, torch::kFloat64));
    std::string bytes;
    root.save_to([&bytes](const void* data, size_t size) {
      bytes.append(static_cast<const char*>(data), size);
      return size;
    });
    // The trailer: magic, the archive's length (8 bytes, little-endian), its raw SHA-256.
    std::string trailer = "VAEDDPck";
    for (int i = 0; i < 8; ++i) trailer += static_cast<char>((bytes.size() >> (8 * i)) & 0xff);
    const std::string hex = sha256_hex(bytes.data(), bytes.size());
    for (size_t i = 0; i < hex.size(); i += 2) trailer += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
    const std::string file = bytes + trailer;
    testing::write_bytes(path, {file.begin(), file.end()});
  }
  std::string LoadError(const std::string& path) {
    return testing::ErrorOf([&] { Checkpoint ckpt(path); });
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

// Format 3 stores the Adam state under vae_ddp's own keys: a resumed trainer has the
// writer's moments and step count, bit for bit.
TEST_F(CheckpointTest, AdamStateRoundTripsExactly) {
  auto a = MakeTrainer();
  a->train_epoch(1);
  Save(*a, dir_ / "a.pt");
  auto b = MakeTrainer();
  EXPECT_EQ(b->optimizer().steps(), 0);
  b->resume_from(Checkpoint(dir_ / "a.pt"));
  EXPECT_EQ(b->optimizer().steps(), 5);
  EXPECT_TRUE(torch::equal(a->optimizer().exp_avg(), b->optimizer().exp_avg()));
  EXPECT_TRUE(torch::equal(a->optimizer().exp_avg_sq(), b->optimizer().exp_avg_sq()));
  EXPECT_GT(b->optimizer().exp_avg_sq().sum().item<double>(), 0);
}

// Files written before format 3 (torch::optim::Adam's layout, whatever libtorch wrote
// them) still resume: the moments come back in parameter order.
TEST_F(CheckpointTest, Format2FilesStillResume) {
  auto a = MakeTrainer();
  std::vector<torch::Tensor> grads;
  for (const auto& p : a->model()->parameters()) grads.push_back(torch::randn(p.sizes()));
  SaveFormat2(*a, grads, dir_ / "v2.pt");
  auto b = MakeTrainer();
  b->resume_from(Checkpoint(dir_ / "v2.pt"));
  std::vector<torch::Tensor> flat;
  for (const auto& g : grads) flat.push_back(g.reshape({-1}));
  const auto g = torch::cat(flat);
  EXPECT_EQ(b->optimizer().steps(), 1);
  EXPECT_TRUE(torch::allclose(b->optimizer().exp_avg(), 0.1 * g, /*rtol=*/1e-6, /*atol=*/0));
  EXPECT_TRUE(torch::allclose(b->optimizer().exp_avg_sq(), 0.001 * g * g, /*rtol=*/1e-5, /*atol=*/0));
  EXPECT_TRUE(SameParameters(*a, *b));
  b->train_epoch(2);  // and training goes on from there
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
    EXPECT_NE(std::string(e.what()).find("holds a 784-32-4 model but the config asks for 784-32-8"), std::string::npos)
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
    EXPECT_TRUE(err.find("checksum mismatch") != std::string::npos ||
                err.find("no vae_ddp checksum") != std::string::npos)
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

TEST(PruneCheckpointsTest, KeepsTheNewestEpochFilesAndEverythingElse) {
  testing::TempDir dir;
  for (const char* name : {"epoch_001.pt", "epoch_002.pt", "epoch_010.pt", "epoch_003.pt", "last.pt", "notes.txt"}) {
    testing::write_bytes(dir / name, {1, 2, 3});
  }
  prune_checkpoints(dir.path(), /*keep=*/0);  // 0: keep them all
  EXPECT_EQ(epoch_checkpoints(dir.path()).size(), 4u);
  prune_checkpoints(dir.path(), /*keep=*/2);
  const auto left = epoch_checkpoints(dir.path());
  ASSERT_EQ(left.size(), 2u);
  EXPECT_EQ(left[0].first, 10);
  EXPECT_EQ(left[1].first, 3);
  EXPECT_TRUE(std::filesystem::exists(dir / "last.pt"));
  EXPECT_TRUE(std::filesystem::exists(dir / "notes.txt"));
  prune_checkpoints(dir.path() + "/absent", /*keep=*/1);  // no folder: nothing to do
}

}  // namespace
}  // namespace vae
