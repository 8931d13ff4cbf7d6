// Helpers shared by the tests: temporary directories and small files.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "vae_ddp/base/config.h"
#include "vae_ddp/base/errors.h"
#include "vae_ddp/data/mnist.h"
#include "vae_ddp/model/model.h"
#include "vae_ddp/parallel/comm.h"
#include "vae_ddp/train/checkpoint.h"

namespace vae::testing {

// What the build made and where the tests find it: the build's own paths, compiled in as
// VAE_DDP_<NAME>_BUILT, unless the environment names another place (VAE_DDP_TEST_<NAME>), as a
// packed GPU check (launch/gpu-check) does for the copies it carries.
inline const char* BuiltOrEnv(const char* env, const char* built) {
  const char* v = std::getenv(env);
  return v && *v ? v : built;
}

}  // namespace vae::testing

#ifdef VAE_DDP_BINARY_BUILT
#define VAE_DDP_BINARY ::vae::testing::BuiltOrEnv("VAE_DDP_TEST_BINARY", VAE_DDP_BINARY_BUILT)
#endif
#ifdef VAE_DDP_DATA_DIR_BUILT
#define VAE_DDP_DATA_DIR ::vae::testing::BuiltOrEnv("VAE_DDP_TEST_DATA_DIR", VAE_DDP_DATA_DIR_BUILT)
#endif
#ifdef VAE_DDP_MPIRUN_BUILT
#define VAE_DDP_MPIRUN ::vae::testing::BuiltOrEnv("VAE_DDP_TEST_MPIRUN", VAE_DDP_MPIRUN_BUILT)
#endif
#ifdef VAE_DDP_MPIRUN_BUILT
namespace vae::testing {
// What starts a command on `np` ranks ("mpirun ... -q -np NP "), or "" for np = 0 (no launcher).
inline std::string Launcher(int np) {
  return np > 0 ? std::string(VAE_DDP_MPIRUN) + " -q -np " + std::to_string(np) + " " : "";
}
}  // namespace vae::testing
#endif
#ifdef VAE_DDP_SOURCE_DIR_BUILT
#define VAE_DDP_SOURCE_DIR ::vae::testing::BuiltOrEnv("VAE_DDP_TEST_SOURCE_DIR", VAE_DDP_SOURCE_DIR_BUILT)
#endif
#ifdef VAE_DDP_OPTIONS_PAGE_BUILT
#define VAE_DDP_OPTIONS_PAGE VAE_DDP_OPTIONS_PAGE_BUILT
#endif

namespace vae::testing {

// The device of the tests written for either: VAE_DDP_TEST_DEVICE, which tests/CMakeLists.txt
// sets to "cuda" for their `gpu`-labelled runs; else the CPU.
inline std::string TestDevice() {
  const char* d = std::getenv("VAE_DDP_TEST_DEVICE");
  return d && *d ? d : "cpu";
}

// The flags that put a training run on TestDevice(): on CUDA also `--backend mpi`, so that
// the ranks of a multi-rank test share the one GPU (NCCL takes one GPU per rank).
inline std::string TrainDeviceFlags() {
  return TestDevice() == "cuda" ? "--device cuda --backend mpi" : "--device " + TestDevice();
}

// `args` for the vae_ddp binary pinned to TestDevice() (the CPU unless a `gpu` run says
// otherwise): its flags right after the subcommand word (or first, for training flags), for
// every subcommand that takes --device, so that a test meant for the CPU does not train on
// a GPU box's `auto` choice. A --device later in `args` still wins (cxxopts keeps the last).
inline std::string OnTestDevice(const std::string& args) {
  const std::string first = args.substr(0, args.find(' '));
  for (const char* no_device : {"export", "inspect"}) {
    if (first == no_device) return args;
  }
  if (first == "train") return first + " " + TrainDeviceFlags() + args.substr(first.size());
  for (const char* command : {"eval", "sample", "latent-map", "manifold", "interpolate", "trace"}) {
    if (first == command) return first + " --device " + TestDevice() + args.substr(first.size());
  }
  if (!first.empty() && first[0] != '-') return args;  // not a subcommand: left for vae_ddp to refuse
  return TrainDeviceFlags() + " " + args;
}

// The GPUs `nvidia-smi -L` lists ("GPU 0: NVIDIA H200 (UUID: ...)"): 0 without the tool.
inline int GpusListedByNvidiaSmi() {
  FILE* p = ::popen("nvidia-smi -L 2>/dev/null", "r");
  if (!p) return 0;
  int gpus = 0;
  char line[512];
  while (std::fgets(line, sizeof(line), p)) gpus += std::string(line).rfind("GPU ", 0) == 0;
  ::pclose(p);
  return gpus;
}

}  // namespace vae::testing

// In a test (or its fixture's SetUp) that needs a GPU: skips, with a message, where no GPU is
// visible; fails where nvidia-smi lists one that libtorch cannot use.
#define VAE_REQUIRE_GPU()                                                                                  \
  do {                                                                                                     \
    const int vae_listed_ = ::vae::testing::GpusListedByNvidiaSmi();                                       \
    if (vae_listed_ == 0) GTEST_SKIP() << "no GPU visible here (nvidia-smi lists none): skipped";          \
    ASSERT_TRUE(torch::cuda::is_available())                                                               \
        << "nvidia-smi lists " << vae_listed_ << " GPU(s), but libtorch cannot use any (a driver too old " \
        << "for this CUDA runtime, or a CPU-only libtorch?)";                                              \
  } while (0)
// The same for a test written for either device, when its run is on CUDA.
#define VAE_REQUIRE_TEST_DEVICE()                                  \
  do {                                                             \
    if (::vae::testing::TestDevice() == "cuda") VAE_REQUIRE_GPU(); \
  } while (0)

namespace vae::testing {

// How many times `needle` occurs in `text`.
inline int Count(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + needle.size())) ++n;
  return n;
}

// The one-process communicator (every collective is the identity), for in-process tests.
inline Communicator& LocalComm() {
  static auto comm = make_local_communicator(World{});
  return *comm;
}

// The message of the E that `fn` throws, or "" when it throws none.
template <typename E = UsageError, typename F>
std::string ErrorOf(F&& fn) {
  try {
    fn();
  } catch (const E& e) {
    return e.what();
  }
  return "";
}

// True when every parameter of `a` equals `b`'s bit for bit.
inline bool SameParameters(VAE& a, VAE& b) {
  const auto pa = a->parameters(), pb = b->parameters();
  for (size_t i = 0; i < pa.size(); ++i) {
    if (!torch::equal(pa[i], pb[i])) return false;
  }
  return true;
}

// ||a - b|| / ||b|| of each parameter tensor, the largest over the model.
inline double MaxRelativeDifference(VAE& a, VAE& b) {
  double worst = 0;
  const auto pa = a->parameters(), pb = b->parameters();
  for (size_t i = 0; i < pa.size(); ++i)
    worst = std::max(worst, ((pa[i] - pb[i]).norm() / pb[i].norm()).item<double>());
  return worst;
}

// A fresh directory under $TMPDIR, removed when the object dies.
class TempDir {
 public:
  TempDir() {
    std::string templ = (std::filesystem::temp_directory_path() / "vae_ddp_test_XXXXXX").string();
    path_ = ::mkdtemp(templ.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

inline std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void write_text(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

inline std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A small model and batch that train in milliseconds: 300 images in batches of 64 make
// four full batches and one of 44.
inline Config TinyConfig(const std::string& out_dir) {
  Config c;
  c.hidden_dims = {32};
  c.latent_dim = 4;
  c.batch_size = 64;
  c.epochs = 2;
  c.out_dir = out_dir;
  return c;
}

// `n` images, each one of three fixed random binary patterns (its label), seeded: data a
// VAE can learn within a few epochs.
inline Dataset SyntheticData(int64_t n = 300) {
  auto gen = at::detail::createCPUGenerator(7);
  auto patterns = (torch::rand({3, kImagePixels}, gen) < 0.3).to(torch::kFloat32);  // [3, 784]
  auto labels = torch::arange(n, torch::kInt64).remainder(3);                       // [n]
  return {patterns.index_select(0, labels).contiguous(), labels};
}

// --- running the binary ---

struct Result {
  int code = -1;  // exit code, or 128 + signal
  std::string out, err;
};

// Runs a shell command, capturing exit code, stdout and stderr (via files in `scratch`).
inline Result run_command(const std::string& cmd, const std::string& scratch) {
  const std::string out = scratch + "/cmd.out", err = scratch + "/cmd.err";
  const int status = std::system((cmd + " >" + out + " 2>" + err).c_str());
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), read_text(out), read_text(err)};
}

// The weights stored in a checkpoint.
inline std::vector<torch::Tensor> Weights(const std::string& ckpt_path) {
  Checkpoint ckpt(ckpt_path);
  VAE model(model_options(ckpt.config()));
  ckpt.restore_model(model);
  return model->parameters();
}

// metrics.csv without the two timing columns.
inline std::string MetricsWithoutTimes(const std::string& path) {
  std::istringstream in(read_text(path));
  std::string line, out;
  while (std::getline(in, line)) out += std::regex_replace(line, std::regex(",[^,]*,[^,]*$"), "") + "\n";
  return out;
}

}  // namespace vae::testing
