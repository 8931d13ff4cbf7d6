// End-to-end: the vae_ddp binary on the real MNIST files (fetched by launch/setup).
#include <filesystem>
#include <regex>
#include <sstream>

#include <gtest/gtest.h>

#include "test_util.h"
#include "vae_ddp/app/runtime.h"
#include "vae_ddp/model/model.h"
#include "vae_ddp/train/checkpoint.h"
#include "vae_ddp/viz/plots.h"

namespace vae {
namespace {

using testing::TempDir;
namespace fs = std::filesystem;

using testing::Result;

class CliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    ASSERT_TRUE(fs::exists(std::string(VAE_DDP_DATA_DIR) + "/train-images-idx3-ubyte"))
        << "MNIST missing in " << VAE_DDP_DATA_DIR << ": run ./launch/test, which fetches it";
  }
  void SetUp() override { VAE_REQUIRE_TEST_DEVICE(); }
  // Runs `vae_ddp <args>` on the test device (testing::OnTestDevice) and captures its exit code, stdout
  // and stderr.
  Result Run(const std::string& args) {
    return testing::run_command(std::string(VAE_DDP_BINARY) + " " + testing::OnTestDevice(args), tmp_.path());
  }
  // A quick training run on the first 2000 images.
  Result Train(const std::string& out_dir, const std::string& extra) {
    return Run("--data-dir " + data_ + " --out-dir " + out_dir + " --train-limit 2000 --log-every 0 " + extra);
  }
  // A user error: exit 2, one line on stderr that contains `needle`, no backtrace.
  void ExpectUsageError(const std::string& args, const std::string& needle) {
    const Result r = Run(args);
    EXPECT_EQ(r.code, 2) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << args << "\nstderr: " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(r.err.find("Exception raised from"), std::string::npos) << r.err;
  }
  // A copy of the MNIST directory in `dir`, with `name` replaced by `bytes`.
  std::string DataWith(const std::string& name, const std::vector<uint8_t>& bytes) {
    const std::string dir = tmp_ / "data";
    fs::create_directories(dir);
    for (const auto& e : fs::directory_iterator(data_)) {
      if (e.path().filename() != name) fs::create_symlink(e.path(), dir + "/" + e.path().filename().string());
    }
    testing::write_bytes(dir + "/" + name, bytes);
    return dir;
  }
  TempDir tmp_;
  const std::string data_ = VAE_DDP_DATA_DIR;
};

TEST_F(CliTest, OneEpochWritesEveryOutput) {
  const std::string out = tmp_ / "run";
  const Result r = Train(out, "--epochs 1");
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("BLAS"), std::string::npos);
  EXPECT_NE(r.out.find("==> epoch 1/1"), std::string::npos);
  for (const char* f : {"config.yaml", "metrics.csv", "samples/epoch_001.png", "reconstructions/epoch_001.png",
                        "checkpoints/last.pt", "checkpoints/epoch_001.pt", "interpolation.png"}) {
    EXPECT_TRUE(fs::exists(out + "/" + f)) << f;
  }
  for (const char* f : {"loss_curves.png", "latent_map.png"}) {  // drawn with cairo, when built with it
    EXPECT_EQ(fs::exists(out + "/" + f), plots_available()) << f;
  }
  const std::string metrics = testing::read_text(out + "/metrics.csv");
  EXPECT_EQ(metrics.substr(0, metrics.find('\n')),
            "epoch,train_loss,train_bce,train_kld,beta,test_loss,test_bce,test_kld,images_per_s,seconds");
  EXPECT_EQ(std::count(metrics.begin(), metrics.end(), '\n'), 2);
  // The saved config reruns the same job: resume=auto finds it finished.
  const Result again = Run("--config " + out + "/config.yaml");
  EXPECT_EQ(again.code, 0) << again.err;
  EXPECT_NE(again.out.find("nothing to do"), std::string::npos) << again.out;
}

// The seed-001 exercise: a conditional VAE with a 2-D latent, and every picture
// subcommand on its checkpoint.
TEST_F(CliTest, PictureSubcommandsOnAConditionalLatent2Model) {
  const std::string out = tmp_ / "run", ckpt = out + "/checkpoints/last.pt";
  const Result r = Train(out, "--epochs 1 --latent-dim 2 --conditional");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(out + "/manifold.png"));  // latent dim 2: training draws it too
  for (const std::string& args :
       {"latent-map --out " + (tmp_ / "map.png"), "manifold --label 3 --out " + (tmp_ / "m.png"),
        "interpolate --pairs 4 --points 6 --out " + (tmp_ / "i.png"),
        "sample --label 7 --n 16 --out " + (tmp_ / "s.png")}) {
    const Result p = Run(args + " --checkpoint " + ckpt);
    EXPECT_EQ(p.code, 0) << args << "\n" << p.err;
    EXPECT_NE(p.out.find("wrote"), std::string::npos) << p.out;
  }
  for (const char* f : {"map.png", "m.png", "i.png", "s.png"}) EXPECT_TRUE(fs::exists(tmp_ / f)) << f;
  ExpectUsageError("sample --label 10 --checkpoint " + ckpt, "--label must be a class 0..9, got 10");
  ExpectUsageError("interpolate --points 0 --checkpoint " + ckpt, "--points must be positive");
  const Result old_name = Run("interpolate --steps 3 --out " + (tmp_ / "old.png") + " --checkpoint " + ckpt);
  EXPECT_EQ(old_name.code, 0) << old_name.err;  // --points' old name, read until the next release
  EXPECT_NE(old_name.err.find("vae_ddp: warning: interpolate --steps: now --points"), std::string::npos)
      << old_name.err;
}

TEST_F(CliTest, PicturesNeedTheRightModel) {
  const std::string out = tmp_ / "run", ckpt = out + "/checkpoints/last.pt";
  ASSERT_EQ(Train(out, "--epochs 1 --sample-every 0").code, 0);
  ExpectUsageError("manifold --checkpoint " + ckpt, "the manifold needs a 2-D latent space");
  ExpectUsageError("sample --label 3 --checkpoint " + ckpt, "is not a conditional model");
  ExpectUsageError("latent-map", "--checkpoint");
}

TEST_F(CliTest, FashionMnistFromTheDebianPackage) {
  if (!fs::exists("/usr/share/datasets/fashion-mnist")) GTEST_SKIP() << "apt-get install dataset-fashion-mnist";
  const std::string out = tmp_ / "run";
  const Result r = Run("--dataset fashion-mnist --out-dir " + out + " --train-limit 1000 --epochs 1 --log-every 0");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("fashion-mnist /usr/share/datasets/fashion-mnist"), std::string::npos) << r.out;
  const Result e = Run("eval --json --checkpoint " + out + "/checkpoints/last.pt");  // the checkpoint's dataset
  EXPECT_EQ(e.code, 0) << e.err;
  ExpectUsageError("--dataset fashion-mnist --data-dir " + data_ + " --out-dir " + (tmp_ / "x"), "md5");
}

TEST_F(CliTest, EvalIsDeterministicAndMatchesTraining) {
  const std::string out = tmp_ / "run";
  ASSERT_EQ(Train(out, "--epochs 1").code, 0);
  const std::string cmd = "eval --json --checkpoint " + out + "/checkpoints/last.pt --data-dir " + data_;
  const Result a = Run(cmd), b = Run(cmd);
  ASSERT_EQ(a.code, 0) << a.err;
  EXPECT_EQ(a.out, b.out);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(a.out, m, std::regex("\"test_loss\": ([0-9.]+)"))) << a.out;
  const double eval_loss = std::stod(m[1]);
  EXPECT_NE(a.out.find("\"images\": 10000"), std::string::npos);
  // Same seed as training: the number metrics.csv recorded for that epoch.
  const std::string row = testing::read_text(out + "/metrics.csv");
  std::vector<std::string> cols;
  std::stringstream line(row.substr(row.find('\n') + 1));
  for (std::string c; std::getline(line, c, ',');) cols.push_back(c);
  EXPECT_NEAR(eval_loss, std::stod(cols[5]), 1e-5);
  // Another seed, other noise.
  const Result c = Run(cmd + " --seed 5");
  EXPECT_NE(a.out, c.out);
  // --iw-samples adds the importance-weighted NLL, below the ELBO-based test loss.
  const Result iw = Run(cmd + " --iw-samples 20");
  ASSERT_EQ(iw.code, 0) << iw.err;
  std::smatch n;
  ASSERT_TRUE(std::regex_search(iw.out, n, std::regex("\"iw_nll\": ([0-9.]+)"))) << iw.out;
  EXPECT_LT(std::stod(n[1]), eval_loss);
  EXPECT_NE(iw.out.find("\"iw_samples\": 20"), std::string::npos);
}

TEST_F(CliTest, ResumeGivesBitIdenticalWeights) {
  ASSERT_EQ(Train(tmp_ / "straight", "--epochs 2").code, 0);
  ASSERT_EQ(Train(tmp_ / "split", "--epochs 1").code, 0);
  const Result r = Train(tmp_ / "split", "--epochs 2 --resume auto");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("resuming from"), std::string::npos);
  const auto a = testing::Weights(tmp_ / "straight/checkpoints/last.pt");
  const auto b = testing::Weights(tmp_ / "split/checkpoints/last.pt");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "parameter " << i;
  EXPECT_EQ(testing::MetricsWithoutTimes(tmp_ / "straight/metrics.csv"),
            testing::MetricsWithoutTimes(tmp_ / "split/metrics.csv"));
}

TEST_F(CliTest, SampleWritesAGrid) {
  ASSERT_EQ(Train(tmp_ / "run", "--epochs 1 --sample-every 0").code, 0);
  EXPECT_FALSE(fs::exists(tmp_ / "run/samples/epoch_001.png"));
  const Result r =
      Run("sample --checkpoint " + (tmp_ / "run/checkpoints/last.pt") + " --n 16 --out " + (tmp_ / "s.png"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(fs::exists(tmp_ / "s.png"));
}

TEST_F(CliTest, KeepsOnlyTheNewestCheckpoints) {
  ASSERT_EQ(Train(tmp_ / "run", "--epochs 3 --keep-checkpoints 2 --train-limit 500").code, 0);
  EXPECT_FALSE(fs::exists(tmp_ / "run/checkpoints/epoch_001.pt"));
  EXPECT_TRUE(fs::exists(tmp_ / "run/checkpoints/epoch_002.pt"));
  EXPECT_TRUE(fs::exists(tmp_ / "run/checkpoints/epoch_003.pt"));
}

TEST_F(CliTest, BadFlagsAreUsageErrors) {
  ExpectUsageError("--epochs 0", "--epochs must be positive, got 0");
  ExpectUsageError("--batch-size -1", "--batch-size must be positive");
  ExpectUsageError("--lr 0", "--lr must be positive");
  ExpectUsageError("--hidden-dims 400,0", "--hidden-dims");
  ExpectUsageError("--latent-dim 0", "--latent-dim must be positive");
  ExpectUsageError("--no-such-flag 3", "no-such-flag");
  ExpectUsageError("--precision fp8", "--precision");
  ExpectUsageError("frobnicate", "unknown command 'frobnicate'");
  ExpectUsageError("eval", "--checkpoint PATH is required");
  ExpectUsageError("--backend gloo", "--backend");
  ExpectUsageError("--binarize static", "--binarize");
  ExpectUsageError("--comm-timeout 0", "--comm-timeout must be positive");
  ExpectUsageError("eval --checkpoint x.pt --iw-samples -1", "--iw-samples must be >= 0");
}

// bf16 on a CPU without native bf16 (AVX512-BF16 or AMX) is no faster than fp32 on the fast
// path and far slower through autograd: refused at start with one line. The detection
// is forced either way; forced on, bf16 trains on the fast path (its GEMMs emulated on a CPU
// without bf16 kernels).
TEST_F(CliTest, Bf16IsRefusedOnACpuWithoutNativeBf16) {
  const std::string bin = VAE_DDP_BINARY, run = " --device cpu --precision bf16 --data-dir " + data_ + " --log-every 0";
  const Result refused =
      testing::run_command("VAE_CPU_NATIVE_BF16=0 " + bin + run + " --out-dir " + (tmp_ / "a"), tmp_.path());
  EXPECT_EQ(refused.code, 2) << refused.err;
  EXPECT_NE(refused.err.find("--precision bf16: this CPU"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("use --precision fp32"), std::string::npos) << refused.err;
  EXPECT_EQ(std::count(refused.err.begin(), refused.err.end(), '\n'), 1) << refused.err;
  EXPECT_FALSE(fs::exists(tmp_ / "a")) << "refused before anything was written";
  const Result native = testing::run_command(
      "VAE_CPU_NATIVE_BF16=1 " + bin + run + " --train-limit 500 --epochs 1 --out-dir " + (tmp_ / "b"), tmp_.path());
  EXPECT_EQ(native.code, 0) << native.err;
  EXPECT_NE(native.out.find("cpu: "), std::string::npos) << "the start-up table names the CPU:\n" << native.out;
  EXPECT_TRUE(std::regex_search(native.out,
                                std::regex(R"(step: CPU fast path \((oneDNN|ATen) GEMMs, bf16 (matmuls|emulated)\))")))
      << "bf16 runs on the fast path, and the start-up table says how:\n"
      << native.out;
}

// --step names the implementation; one that does not cover the model is refused at start,
// and the old --cpu-fast-path still works, with a warning on stderr.
TEST_F(CliTest, StepChoiceAndTheOldCpuFastPathFlag) {
  ExpectUsageError("--step fastest", "--step must be one of auto, autograd, cpu-fast, graph, got 'fastest'");
  ExpectUsageError("--device cpu --step cpu-fast --batch-norm", "--step cpu-fast does not cover --batch-norm");
  ExpectUsageError("--device cpu --step graph --dropout 0.2", "--step graph does not cover --dropout");
  const Result old =
      Train(tmp_ / "old", "--device cpu --train-limit 300 --epochs 1 --sample-every 0 --cpu-fast-path=false");
  EXPECT_EQ(old.code, 0) << old.err;
  EXPECT_NE(old.err.find("--cpu-fast-path: now --step"), std::string::npos) << old.err;
  EXPECT_NE(old.out.find("step: autograd (--step autograd)"), std::string::npos) << old.out;
  const Result fast = Train(tmp_ / "fast", "--device cpu --train-limit 300 --epochs 1 --sample-every 0");
  EXPECT_NE(fast.out.find("step: CPU fast path ("), std::string::npos) << fast.out;
}

TEST_F(CliTest, FlagsThatNeedAGpuAreUsageErrorsOnCpu) {
  if (cuda_usable()) GTEST_SKIP() << "a GPU is visible: fp16 and NCCL are allowed here";
  ExpectUsageError("--precision fp16", "--precision fp16: fp16 autocast needs a CUDA device; on CPU use fp32");
  ExpectUsageError("--device cpu --backend nccl", "--backend nccl: NCCL reduces CUDA tensors");
  ExpectUsageError("--device cuda", "--device cuda: no usable GPU");
}

TEST_F(CliTest, BadConfigFilesAreUsageErrors) {
  testing::write_bytes(tmp_ / "bad.yaml", {'e', 'p', 'o', 'c', 'h', 'z', ':', ' ', '3', '\n'});
  ExpectUsageError("--config " + (tmp_ / "bad.yaml"), "unknown key 'epochz'");
  ExpectUsageError("--config " + (tmp_ / "missing.yaml"), "missing.yaml");
}

TEST_F(CliTest, BadDataIsAUsageError) {
  ExpectUsageError("--data-dir " + (tmp_ / "nowhere") + " --out-dir " + (tmp_ / "o"), "no such directory");
  auto labels = testing::read_bytes(data_ + "/t10k-labels-idx1-ubyte");
  labels[100] ^= 1;
  ExpectUsageError("--out-dir " + (tmp_ / "o") + " --data-dir " + DataWith("t10k-labels-idx1-ubyte", labels),
                   "t10k-labels-idx1-ubyte: md5 mismatch");
}

TEST_F(CliTest, BadMagicIsAUsageError) {
  auto labels = testing::read_bytes(data_ + "/t10k-labels-idx1-ubyte");
  labels[3] = 3;
  ExpectUsageError(
      "--verify-md5=false --out-dir " + (tmp_ / "o") + " --data-dir " + DataWith("t10k-labels-idx1-ubyte", labels),
      "magic 0x00000803, expected 0x00000801");
}

TEST_F(CliTest, TruncatedIdxIsAUsageError) {
  auto labels = testing::read_bytes(data_ + "/t10k-labels-idx1-ubyte");
  labels.resize(5000);
  ExpectUsageError(
      "--verify-md5=false --out-dir " + (tmp_ / "o") + " --data-dir " + DataWith("t10k-labels-idx1-ubyte", labels),
      "t10k-labels-idx1-ubyte: truncated");
}

TEST_F(CliTest, CountMismatchIsAUsageError) {
  // The test split's 10000 labels next to the training split's 60000 images.
  ExpectUsageError("--verify-md5=false --out-dir " + (tmp_ / "o") + " --data-dir " +
                       DataWith("train-labels-idx1-ubyte", testing::read_bytes(data_ + "/t10k-labels-idx1-ubyte")),
                   "has 60000 images but train-labels-idx1-ubyte has 10000 labels");
}

TEST_F(CliTest, BadCheckpointsAreUsageErrors) {
  testing::write_bytes(tmp_ / "junk.pt", std::vector<uint8_t>(4096, 7));
  ExpectUsageError("eval --checkpoint " + (tmp_ / "junk.pt"), "junk.pt: no vae_ddp checksum");
  ExpectUsageError("eval --checkpoint " + (tmp_ / "none.pt"), "none.pt");
  ASSERT_EQ(Train(tmp_ / "run", "--epochs 1 --train-limit 300").code, 0);
  ExpectUsageError("--data-dir " + data_ + " --out-dir " + (tmp_ / "other") + " --latent-dim 8 --resume " +
                       (tmp_ / "run/checkpoints/last.pt"),
                   "holds a 784-400-20 model but the config asks for 784-400-8");
}

TEST_F(CliTest, UnwritableOutDirIsAUsageError) {
  testing::write_bytes(tmp_ / "file", {1});
  ExpectUsageError("--out-dir " + (tmp_ / "file/sub"), "--out-dir");
}

// ctest runs this binary with VAE_DDP_TEST_AUTO_DEVICE=cuda: `auto` then picks CUDA, as on
// a GPU box, and a run that forgot `--device cpu` fails here with one line.
TEST_F(CliTest, AutoPicksCudaUnderTheTestSuitesGpuStandIn) {
  if (cuda_usable()) GTEST_SKIP() << "a GPU is visible: auto picks it for real";
  const std::string args = " --data-dir " + data_ + " --out-dir " + (tmp_ / "o") + " --train-limit 200 --epochs 1";
  const Result r =
      testing::run_command("VAE_DDP_TEST_AUTO_DEVICE=cuda " + std::string(VAE_DDP_BINARY) + args, tmp_.path());
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_NE(r.err.find("--device auto: VAE_DDP_TEST_AUTO_DEVICE=cuda"), std::string::npos) << r.err;
  const Result plain =
      testing::run_command("env -u VAE_DDP_TEST_AUTO_DEVICE " + std::string(VAE_DDP_BINARY) + args, tmp_.path());
  EXPECT_EQ(plain.code, 0) << plain.err;  // without it, auto is the CPU here
}

// One rank per GPU, or the one GPU that a per-task binding (CUDA_VISIBLE_DEVICES naming one
// device) leaves each rank.
TEST(DeviceTest, EachLocalRankGetsItsGpu) {
  EXPECT_EQ(gpu_for_local_rank(0, 4, nullptr), 0);
  EXPECT_EQ(gpu_for_local_rank(3, 4, nullptr), 3);
  EXPECT_EQ(gpu_for_local_rank(3, 4, "0,1,2,3"), 3);
  EXPECT_EQ(gpu_for_local_rank(2, 1, "5"), 0);  // Slurm bound GPU 5 to this task: cuda:0 is it
  EXPECT_EQ(gpu_for_local_rank(0, 1, "GPU-8f2c"), 0);
  const std::string e = testing::ErrorOf([] { gpu_for_local_rank(1, 1, nullptr); });
  EXPECT_NE(e.find("local rank 1 needs GPU 1, but this node shows 1 GPU(s)"), std::string::npos) << e;
  EXPECT_NE(e.find("share the GPUs with --backend mpi"), std::string::npos) << e;  // says what to do
  EXPECT_THROW(gpu_for_local_rank(2, 2, "0,1"), UsageError);
  EXPECT_THROW(gpu_for_local_rank(1, 1, ""), UsageError);
  // --backend mpi: ranks share the GPUs, round robin.
  EXPECT_EQ(gpu_for_local_rank(2, 1, nullptr, /*shared=*/true), 0);
  EXPECT_EQ(gpu_for_local_rank(3, 2, "0,1", /*shared=*/true), 1);
}

TEST_F(CliTest, CudaWithoutGpuIsAUsageError) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "a GPU is present";
  ExpectUsageError("--device cuda --out-dir " + (tmp_ / "o"), "--device cuda");
}

// --- what a new user trips over (issue [Y]) ---

// Every command that reads the dataset checks it as eval does: a Fashion-MNIST directory
// under an MNIST checkpoint is refused, not plotted under a digit legend.
TEST_F(CliTest, PicturesAndExportCheckTheDataDirLikeEval) {
  if (!fs::exists("/usr/share/datasets/fashion-mnist")) GTEST_SKIP() << "apt-get install dataset-fashion-mnist";
  const std::string ckpt = tmp_ / "run/checkpoints/last.pt", other = " --data-dir /usr/share/datasets/fashion-mnist";
  ASSERT_EQ(Train(tmp_ / "run", "--epochs 1 --sample-every 0").code, 0);
  for (const std::string& cmd : {std::string("eval"), "latent-map --out " + (tmp_ / "m.png"),
                                 "interpolate --out " + (tmp_ / "i.png"), "export --out " + (tmp_ / "w.pt")}) {
    ExpectUsageError(cmd + " --checkpoint " + ckpt + other, "md5 mismatch");
  }
  EXPECT_FALSE(fs::exists(tmp_ / "m.png"));
  EXPECT_FALSE(fs::exists(tmp_ / "w.pt"));
}

// A fresh start in a run's directory moves the old run aside, whole, and says where.
TEST_F(CliTest, ResumeNoneMovesThePreviousRunAsideWhole) {
  const std::string out = tmp_ / "run";
  ASSERT_EQ(Train(out, "--epochs 2").code, 0);
  const Result r = Train(out, "--epochs 1 --resume none --lr 0.002");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("moved it, whole, to " + fs::absolute(out + ".previous-1").string()), std::string::npos)
      << r.err;
  for (const char* f : {"checkpoints/epoch_002.pt", "samples/epoch_002.png", "reconstructions/epoch_002.png"}) {
    EXPECT_FALSE(fs::exists(out + "/" + f)) << "the old run's " << f << " is among the new one's files";
    EXPECT_TRUE(fs::exists(out + ".previous-1/" + f)) << f;
  }
  const std::string metrics = testing::read_text(out + "/metrics.csv");
  EXPECT_EQ(std::count(metrics.begin(), metrics.end(), '\n'), 2) << metrics;
  std::vector<fs::path> events;
  for (const auto& e : fs::directory_iterator(out + "/tb")) events.push_back(e.path());
  EXPECT_EQ(events.size(), 1u) << "one TensorBoard event file: the new run's";
  // A second fresh start: the next free name; nothing is ever replaced.
  ASSERT_EQ(Train(out, "--epochs 1 --resume none").code, 0);
  EXPECT_TRUE(fs::exists(out + ".previous-2/metrics.csv"));
  EXPECT_TRUE(fs::exists(out + ".previous-1/checkpoints/epoch_002.pt"));
}

// A setting changed on resume is said at start, kept in config.yaml with the epoch it took
// effect from; one that a resumed run cannot change is refused.
TEST_F(CliTest, ChangedSettingsOnResumeAreSaidAndRecorded) {
  const std::string out = tmp_ / "run";
  ASSERT_EQ(Train(out, "--epochs 1 --sample-every 0").code, 0);
  const Result r = Train(out, "--epochs 2 --sample-every 0 --lr 0.01");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("resuming with --lr 0.01 (the checkpoint's run had 0.001): from epoch 2 on"), std::string::npos)
      << r.err;
  EXPECT_NE(r.out.find("resuming with --epochs 2 (the checkpoint's run had 1)"), std::string::npos) << r.out;
  const std::string yaml = testing::read_text(out + "/config.yaml");
  EXPECT_NE(yaml.find("\nlr: 0.001\n"), std::string::npos) << "the run's first settings stay:\n" << yaml;
  EXPECT_NE(yaml.find("# resumed from " + out + "/checkpoints/last.pt after epoch 1"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("#   lr: 0.01  (was 0.001)"), std::string::npos) << yaml;
  ExpectUsageError("--data-dir " + data_ + " --out-dir " + out + " --train-limit 2000 --epochs 3 --batch-size 64",
                   "--batch-size 64: " + out + "/checkpoints/last.pt was trained with --batch-size 128");
}

TEST_F(CliTest, MseRunsAreNotLabelledBce) {
  const std::string out = tmp_ / "run";
  const Result r = Train(out, "--epochs 1 --recon-loss mse --sample-every 0");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("(mse "), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("bce"), std::string::npos) << r.out;
  const std::string metrics = testing::read_text(out + "/metrics.csv");
  EXPECT_EQ(metrics.substr(0, metrics.find('\n')),
            "epoch,train_loss,train_mse,train_kld,beta,test_loss,test_mse,test_kld,images_per_s,seconds");
  const Result e = Run("eval --checkpoint " + out + "/checkpoints/last.pt --data-dir " + data_);
  ASSERT_EQ(e.code, 0) << e.err;
  EXPECT_EQ(e.out.find("nats"), std::string::npos) << e.out;
  EXPECT_NE(e.out.find("per image (squared error + KL) (mse "), std::string::npos) << e.out;
  const Result j = Run("eval --json --checkpoint " + out + "/checkpoints/last.pt --data-dir " + data_);
  EXPECT_NE(j.out.find("\"test_mse\": "), std::string::npos) << j.out;
}

TEST_F(CliTest, PictureCommandsWriteTheNamesTrainingGives) {
  const std::string out = tmp_ / "run", here = tmp_ / "here";
  ASSERT_EQ(Train(out, "--epochs 1").code, 0);
  EXPECT_TRUE(fs::exists(out + "/interpolation.png"));
  fs::create_directories(here);
  for (const std::string cmd : {"latent-map", "interpolate"}) {
    const Result r =
        testing::run_command("cd " + here + " && " + VAE_DDP_BINARY + " " +
                                 testing::OnTestDevice(cmd + " --checkpoint " + out + "/checkpoints/last.pt"),
                             tmp_.path());
    EXPECT_EQ(r.code, 0) << r.err;
  }
  EXPECT_TRUE(fs::exists(here + "/interpolation.png"));
  EXPECT_EQ(fs::exists(here + "/latent_map.png"), plots_available());
  EXPECT_FALSE(fs::exists(here + "/latent-map.png") || fs::exists(here + "/interpolate.png"));
}

// Nothing a user had is replaced without a line that says so.
TEST_F(CliTest, CommandsSayWhenTheyReplaceAFile) {
  const std::string ckpt = tmp_ / "run/checkpoints/last.pt";
  ASSERT_EQ(Train(tmp_ / "run", "--epochs 1 --sample-every 0").code, 0);
  for (const std::string& cmd : {"sample --out " + (tmp_ / "s.png"), "interpolate --out " + (tmp_ / "i.png"),
                                 "export --out " + (tmp_ / "w.pt")}) {
    const Result first = Run(cmd + " --checkpoint " + ckpt), second = Run(cmd + " --checkpoint " + ckpt);
    ASSERT_EQ(first.code, 0) << first.err;
    EXPECT_EQ(first.out.find("replaced"), std::string::npos) << first.out;
    EXPECT_NE(second.out.find("; replaced the file that was there"), std::string::npos) << cmd << ": " << second.out;
  }
}

TEST_F(CliTest, EpochLineShowsTheBetaRangeOfASchedule) {
  const Result r = Train(tmp_ / "run", "--epochs 2 --kl-schedule linear --kl-warmup-epochs 4 --sample-every 0");
  ASSERT_EQ(r.code, 0) << r.err;
  // 16 steps an epoch, β = step / 64 over 4 epochs: epoch 2 runs from step 16 to step 31.
  EXPECT_NE(r.out.find("beta 0.25→0.484)"), std::string::npos) << r.out;
  const Result c = Train(tmp_ / "c", "--epochs 1 --sample-every 0");
  EXPECT_NE(c.out.find("beta 1)"), std::string::npos) << c.out;
}

TEST_F(CliTest, BatchLargerThanTheTrainingSetWarnsOnStderr) {
  const Result r = Train(tmp_ / "run", "--epochs 1 --batch-size 5000 --sample-every 0");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.err.find("--batch-size 5000 is larger than the training set (2000 images)"), std::string::npos) << r.err;
  EXPECT_EQ(r.out.find("larger than"), std::string::npos) << "warnings go to stderr:\n" << r.out;
}

TEST_F(CliTest, FailedStartCreatesNoOutputs) {
  ExpectUsageError("--data-dir " + (tmp_ / "missing") + " --out-dir " + (tmp_ / "a"), "--data-dir");
  ExpectUsageError("--data-dir " + data_ + " --resume " + (tmp_ / "none.pt") + " --out-dir " + (tmp_ / "b"), "none.pt");
  EXPECT_FALSE(fs::exists(tmp_ / "a"));
  EXPECT_FALSE(fs::exists(tmp_ / "b"));
}

TEST_F(CliTest, SubcommandsRefuseWhatTheyCannotHonour) {
  const std::string ckpt = tmp_ / "run/checkpoints/last.pt";
  ASSERT_EQ(Train(tmp_ / "run", "--epochs 1 --sample-every 0").code, 0);
  ExpectUsageError("interpolate --side 5 --checkpoint " + ckpt, "--side: not an option of interpolate");
  ExpectUsageError("latent-map --points 4 --checkpoint " + ckpt, "--points: not an option of latent-map");
  ExpectUsageError("manifold --pairs 3 --checkpoint " + ckpt, "--pairs: not an option of manifold");
  ExpectUsageError("sample --out " + (tmp_ / "no/such/dir/s.png") + " --checkpoint " + ckpt,
                   "--out " + (tmp_ / "no/such/dir/s.png") + ": cannot write it");
  ExpectUsageError("latent-map --out " + (tmp_ / "no/m.png") + " --checkpoint " + ckpt, "--out");
  ExpectUsageError("export --out " + (tmp_ / "no/w.pt") + " --checkpoint " + ckpt, "--out");
  ExpectUsageError("eval --chekpoint " + ckpt, "did you mean --checkpoint?");
}

TEST_F(CliTest, EndOfRunSummaryNamesEveryOutputAndWhatToRunNext) {
  const std::string out = tmp_ / "run";
  const Result r = Train(out, "--epochs 2");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("==> done: epoch 2 of 2 (2 this run, "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("best test loss "), std::string::npos) << r.out;
  const auto at = r.out.find("outputs in " + out + ": ");
  ASSERT_NE(at, std::string::npos) << r.out;
  const std::string listed = r.out.substr(at, r.out.find('\n', at) - at);
  for (const auto& e : fs::directory_iterator(out)) {
    EXPECT_NE(listed.find(e.path().filename().string()), std::string::npos) << e.path() << " not in: " << listed;
  }
  EXPECT_NE(r.out.find("next: vae_ddp eval --checkpoint " + out + "/checkpoints/last.pt"), std::string::npos) << r.out;
}

TEST_F(CliTest, VersionNamesWhatTheBinaryWasBuiltWith) {
  const Result r = Run("--version");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_TRUE(std::regex_search(r.out, std::regex("^vae_ddp [0-9]+\\.[0-9]+\\.[0-9]+ \\(commit [^)]+\\)\n"))) << r.out;
  for (const char* line : {"\nlibtorch: ", "\nNCCL: ", "\nMPI: ", "\nCPU fast path GEMMs: "}) {
    EXPECT_NE(r.out.find(line), std::string::npos) << line << " missing:\n" << r.out;
  }
}

TEST_F(CliTest, MisspelledFlagsAndYamlKeysGetASuggestionAndALine) {
  ExpectUsageError("--lrr 0.1", "unknown option --lrr; did you mean --lr?");
  testing::write_text(tmp_ / "a.yaml", "lr: 0.1\nepoch: 3\n");
  ExpectUsageError("--config " + (tmp_ / "a.yaml"), "line 2: unknown key 'epoch'; did you mean 'epochs'?");
  testing::write_text(tmp_ / "b.yaml", "lr: 0.1\nepochs: [3\n");
  ExpectUsageError("--config " + (tmp_ / "b.yaml"), "b.yaml: line ");
}

TEST_F(CliTest, ImportanceWeightedEvalShowsProgressOnStderr) {
  ASSERT_EQ(Train(tmp_ / "run", "--epochs 1 --sample-every 0").code, 0);
  const Result r =
      Run("eval --json --iw-samples 20 --checkpoint " + (tmp_ / "run/checkpoints/last.pt") + " --data-dir " + data_);
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << "stdout holds the JSON alone:\n" << r.out;
  EXPECT_NE(r.err.find("importance-weighted NLL (K = 20): 10000/10000 images (100%)"), std::string::npos) << r.err;
}

TEST_F(CliTest, InspectPrintsTheTrainingConfiguration) {
  ASSERT_EQ(Train(tmp_ / "run", "--epochs 1 --sample-every 0 --lr 0.002").code, 0);
  const Result r = Run("inspect --checkpoint " + (tmp_ / "run/checkpoints/last.pt"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("\"config\": {\"dataset\": \"mnist\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"lr\": \"0.002\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"train-limit\": \"2000\""), std::string::npos) << r.out;
}

TEST_F(CliTest, ExportSaysHowToLoadAConditionalModel) {
  ASSERT_EQ(Train(tmp_ / "run", "--epochs 1 --sample-every 0 --conditional --hidden-dims 64 --latent-dim 4").code, 0);
  const Result r = Run("export --checkpoint " + (tmp_ / "run/checkpoints/last.pt") + " --out " + (tmp_ / "w.pt"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("TunedVAE([64], 4, classes=10)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("model.encode(x, labels)"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace vae
