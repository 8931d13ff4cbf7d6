// Helpers shared by the tests: temporary directories and small files.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "vae_ddp/base/config.h"
#include "vae_ddp/base/errors.h"
#include "vae_ddp/data/mnist.h"
#include "vae_ddp/dist/comm.h"
#include "vae_ddp/model/model.h"
#include "vae_ddp/train/checkpoint.h"

namespace vae::testing {

// `args` for the vae_ddp binary pinned to the CPU: `--device cpu` right after the
// subcommand word (or first, for training flags), for every subcommand that takes --device, so
// that a test meant for the CPU does not train on a GPU box's `auto` choice. A --device
// later in `args` still wins (cxxopts keeps the last value).
inline std::string OnCpu(const std::string& args) {
  const std::string first = args.substr(0, args.find(' '));
  for (const char* no_device : {"export", "inspect"}) {
    if (first == no_device) return args;
  }
  for (const char* command : {"train", "eval", "sample", "latent-map", "manifold", "interpolate", "trace"}) {
    if (first == command) return first + " --device cpu" + args.substr(first.size());
  }
  if (!first.empty() && first[0] != '-') return args;  // not a subcommand: left for vae_ddp to refuse
  return "--device cpu " + args;
}

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
