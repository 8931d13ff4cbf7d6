#include "vae_ddp/train/checkpoint.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>

#include "vae_ddp/base/digest.h"
#include "vae_ddp/base/errors.h"
#include "vae_ddp/io/files.h"

namespace vae {

namespace {

// 2: SHA-256 trailer, mid-epoch progress; Adam state in libtorch's optimizer layout.
// 3: Adam state under vae_ddp's own keys (flat moments and the step count), the same for
//    every libtorch version. Both are read.
constexpr int64_t kFormatVersion = 3;
constexpr int64_t kOldestReadable = 2;

// The file is the libtorch archive followed by a 48-byte trailer: this magic, the
// archive's length (8 bytes, little-endian) and its SHA-256 (32 raw bytes). A torn,
// truncated or bit-flipped file fails the check before libtorch parses a byte of it.
constexpr char kTrailerMagic[9] = "VAEDDPck";
constexpr size_t kMagicBytes = 8, kLengthBytes = 8, kDigestBytes = 32;
constexpr size_t kTrailerSize = kMagicBytes + kLengthBytes + kDigestBytes;

std::string sha256_raw(const std::string& bytes) {
  const std::string hex = sha256_hex(bytes.data(), bytes.size());
  std::string raw;
  for (size_t i = 0; i < hex.size(); i += 2) raw += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return raw;
}

std::string with_trailer(std::string bytes) {
  uint64_t n = bytes.size();
  std::string trailer(kTrailerMagic, kMagicBytes);
  for (size_t i = 0; i < kLengthBytes; ++i) trailer += static_cast<char>((n >> (8 * i)) & 0xff);
  trailer += sha256_raw(bytes);
  return bytes + trailer;
}

// The archive inside `bytes`; throws UsageError naming `path` when the trailer is missing
// or does not match.
std::string verified_payload(const std::string& path, const std::string& bytes) {
  if (bytes.size() < kTrailerSize ||
      bytes.compare(bytes.size() - kTrailerSize, kMagicBytes, kTrailerMagic, kMagicBytes) != 0) {
    throw UsageError(
        fmt::format("checkpoint {}: no vae_ddp checksum at its end: truncated, written by an older "
                    "vae_ddp, or not a vae_ddp checkpoint",
                    path));
  }
  uint64_t n = 0;
  const size_t length_at = bytes.size() - kLengthBytes - kDigestBytes;
  for (size_t i = 0; i < kLengthBytes; ++i)
    n |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[length_at + i])) << (8 * i);
  std::string payload = bytes.substr(0, bytes.size() - kTrailerSize);
  if (n != payload.size() || sha256_raw(payload) != bytes.substr(bytes.size() - kDigestBytes)) {
    throw UsageError(fmt::format("checkpoint {}: checksum mismatch: the file is corrupt", path));
  }
  return payload;
}

torch::Tensor string_to_tensor(const std::string& s) {
  auto t = torch::empty({static_cast<int64_t>(s.size())}, torch::kUInt8);
  std::memcpy(t.data_ptr<uint8_t>(), s.data(), s.size());
  return t;
}

std::string tensor_to_string(const torch::Tensor& t) {
  auto c = t.to(torch::kCPU, torch::kUInt8).contiguous();
  return std::string(reinterpret_cast<const char*>(c.data_ptr<uint8_t>()), static_cast<size_t>(c.numel()));
}

torch::Tensor read_tensor(torch::serialize::InputArchive& ar, const std::string& key) {
  torch::Tensor t;
  ar.read(key, t);
  return t;
}

torch::serialize::InputArchive read_archive(torch::serialize::InputArchive& ar, const std::string& key) {
  torch::serialize::InputArchive sub;
  ar.read(key, sub);
  return sub;
}

c10::IValue read_value(torch::serialize::InputArchive& ar, const std::string& key) {
  c10::IValue v;
  ar.read(key, v);
  return v;
}

struct AdamState {
  torch::Tensor exp_avg, exp_avg_sq;  // [numel], parameter order
  int64_t steps = 0;
};

// Format 2's Adam state, written by torch::optim::Adam::save: "param_groups" lists each
// parameter's state key in parameter order ("param_groups/0" -> "params/<i>"), "state"
// holds one archive per key with step, exp_avg and exp_avg_sq. The keys are only matched
// as strings, so files from any libtorch version read alike.
AdamState read_legacy_adam(torch::serialize::InputArchive& opt) {
  auto groups = read_archive(opt, "param_groups");
  TORCH_CHECK(read_tensor(groups, "param_groups/size").item<int64_t>() == 1, "expected one parameter group");
  auto group = read_archive(groups, "param_groups/0");
  auto state = read_archive(opt, "state");
  const int64_t n = read_tensor(group, "params/size").item<int64_t>();
  std::vector<torch::Tensor> m, v;
  AdamState out;
  for (int64_t i = 0; i < n; ++i) {
    auto param = read_archive(state, read_value(group, "params/" + std::to_string(i)).toStringRef());
    m.push_back(read_tensor(param, "exp_avg").reshape({-1}));
    v.push_back(read_tensor(param, "exp_avg_sq").reshape({-1}));
    out.steps = std::max(out.steps, read_value(param, "step").toInt());
  }
  out.exp_avg = torch::cat(m);
  out.exp_avg_sq = torch::cat(v);
  return out;
}

}  // namespace

void save_checkpoint(const std::string& path, VAE& model, const FlatAdam& adam, const TrainProgress& progress,
                     const Config& config, const std::function<void()>& before_rename) {
  torch::serialize::OutputArchive root;
  torch::serialize::OutputArchive model_ar;
  model->save(model_ar);
  root.write("model", model_ar);
  root.write("adam_exp_avg", adam.exp_avg());
  root.write("adam_exp_avg_sq", adam.exp_avg_sq());
  root.write("adam_step", torch::tensor(adam.steps()));
  root.write("format_version", torch::tensor(kFormatVersion));
  root.write("epoch", torch::tensor(progress.epoch));
  root.write("global_step", torch::tensor(progress.global_step));
  root.write("config_yaml", string_to_tensor(to_yaml(config)));
  root.write("cpu_rng_state", at::detail::getDefaultCPUGenerator().get_state());
  root.write("loss_scale", torch::tensor(progress.scaler.scale, torch::kFloat64));
  root.write("scale_growth_tracker", torch::tensor(progress.scaler.growth_tracker));
  root.write("step_in_epoch", torch::tensor(progress.step_in_epoch));
  root.write(
      "partial_sums",
      torch::tensor(std::vector<double>(progress.partial_sums.begin(), progress.partial_sums.end()), torch::kFloat64));
  root.write("partial_seconds", torch::tensor(progress.partial_seconds, torch::kFloat64));

  std::string bytes;
  root.save_to([&bytes](const void* data, size_t size) {
    bytes.append(static_cast<const char*>(data), size);
    return size;
  });
  write_file_atomic(path, with_trailer(std::move(bytes)), before_rename);
}

std::vector<std::pair<int64_t, std::string>> epoch_checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  const std::regex pattern(R"(epoch_(\d+)\.pt)");
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    std::smatch m;
    const std::string name = entry.path().filename().string();
    if (std::regex_match(name, m, pattern)) found.emplace_back(std::stoll(m[1]), entry.path().string());
  }
  std::sort(found.rbegin(), found.rend());
  return found;
}

VAE open_model(const Checkpoint& ckpt, torch::Device device) {
  VAE model(model_options(ckpt.config()));
  model->to(device);
  ckpt.restore_model(model);
  model->eval();
  return model;
}

ResumeSource find_resume(const Config& c) {
  if (c.resume == "none") return {};
  if (c.resume != "auto") {
    if (!std::filesystem::exists(c.resume)) throw UsageError(fmt::format("--resume {}: no such checkpoint", c.resume));
    ResumeSource src{c.resume, read_checkpoint_bytes(c.resume), ""};
    Checkpoint(src.path, src.bytes, torch::kCPU);  // verifies: throws UsageError naming the file
    return src;
  }
  const std::string dir = c.out_dir + "/checkpoints";
  std::vector<std::string> candidates;
  if (std::filesystem::exists(dir + "/last.pt")) candidates.push_back(dir + "/last.pt");
  for (const auto& e : epoch_checkpoints(dir)) candidates.push_back(e.second);
  std::string first_problem;
  for (const auto& path : candidates) {
    try {
      ResumeSource src{path, read_checkpoint_bytes(path), ""};
      Checkpoint(src.path, src.bytes, torch::kCPU);
      if (!first_problem.empty()) src.note = fmt::format("warning: {}; resuming from {} instead", first_problem, path);
      return src;
    } catch (const UsageError& e) {
      if (first_problem.empty()) first_problem = e.what();
    }
  }
  if (!first_problem.empty()) {
    throw UsageError(fmt::format("--resume auto: no usable checkpoint in {} ({}); pass --resume none to start afresh",
                                 dir, first_problem));
  }
  return {};
}

void prune_checkpoints(const std::string& dir, int64_t keep) {
  if (keep == 0) return;
  const auto found = epoch_checkpoints(dir);
  for (size_t i = static_cast<size_t>(keep); i < found.size(); ++i) std::filesystem::remove(found[i].second);
}

std::string read_checkpoint_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError(fmt::format("checkpoint {}: cannot read the file", path));
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

Checkpoint::Checkpoint(const std::string& path, torch::Device device)
    : Checkpoint(path, read_checkpoint_bytes(path), device) {}

Checkpoint::Checkpoint(const std::string& path, const std::string& file_bytes, torch::Device device) : path_(path) {
  const std::string bytes = verified_payload(path, file_bytes);
  archive_ = std::make_shared<torch::serialize::InputArchive>();
  try {
    archive_->load_from(bytes.data(), bytes.size(), device);
    version_ = read_tensor(*archive_, "format_version").item<int64_t>();
    if (version_ < kOldestReadable || version_ > kFormatVersion) {
      throw UsageError(fmt::format("checkpoint {}: format version {}, this build reads {} to {}", path, version_,
                                   kOldestReadable, kFormatVersion));
    }
    progress_.epoch = read_tensor(*archive_, "epoch").item<int64_t>();
    progress_.global_step = read_tensor(*archive_, "global_step").item<int64_t>();
    torch::Tensor scale, tracker;
    if (archive_->try_read("loss_scale", scale)) progress_.scaler.scale = scale.item<double>();
    if (archive_->try_read("scale_growth_tracker", tracker)) progress_.scaler.growth_tracker = tracker.item<int64_t>();
    progress_.step_in_epoch = read_tensor(*archive_, "step_in_epoch").item<int64_t>();
    const auto sums = read_tensor(*archive_, "partial_sums").to(torch::kCPU, torch::kFloat64).contiguous();
    const int64_t expected = static_cast<int64_t>(progress_.partial_sums.size());
    TORCH_CHECK(sums.numel() == expected, "partial_sums has ", sums.numel(), " values, expected ", expected);
    for (int64_t i = 0; i < expected; ++i) progress_.partial_sums[i] = sums[i].item<double>();
    progress_.partial_seconds = read_tensor(*archive_, "partial_seconds").item<double>();
    config_ = load_yaml_string(tensor_to_string(read_tensor(*archive_, "config_yaml")), path + " (config)", Config{},
                               /*warn_old_keys=*/false);
  } catch (const UsageError&) {
    throw;
  } catch (const std::exception& e) {
    throw UsageError(
        fmt::format("checkpoint {}: corrupt, truncated or not a vae_ddp checkpoint ({})", path, error_line(e)));
  }
}

void Checkpoint::restore_model(VAE& model) const {
  try {
    torch::serialize::InputArchive model_ar;
    archive_->read("model", model_ar);
    // Load into a twin and copy the values over: loading rebinds each tensor's storage,
    // and the model's parameters must stay where they are (views into flat buffers).
    VAE loaded(model_options(config_));
    loaded->load(model_ar);
    auto src = loaded->parameters(), dst = model->parameters();
    for (const auto& b : loaded->buffers()) src.push_back(b);  // BatchNorm running statistics
    for (const auto& b : model->buffers()) dst.push_back(b);
    TORCH_CHECK(src.size() == dst.size(), "expected ", dst.size(), " tensors, found ", src.size());
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < dst.size(); ++i) {
      TORCH_CHECK(src[i].sizes() == dst[i].sizes(), "parameter ", i, " has shape ", src[i].sizes(), ", expected ",
                  dst[i].sizes());
      dst[i].copy_(src[i]);
    }
  } catch (const UsageError&) {
    throw;
  } catch (const std::exception& e) {
    throw UsageError(fmt::format("checkpoint {}: its model ({}) does not load: {}", path_,
                                 describe_architecture(config_), error_line(e)));
  }
}

void Checkpoint::restore_optimizer(FlatAdam& adam) const {
  try {
    AdamState state;
    if (version_ == 2) {
      auto opt = read_archive(*archive_, "optimizer");
      state = read_legacy_adam(opt);
    } else {
      state = {read_tensor(*archive_, "adam_exp_avg"), read_tensor(*archive_, "adam_exp_avg_sq"),
               read_tensor(*archive_, "adam_step").item<int64_t>()};
    }
    adam.load_state(state.exp_avg, state.exp_avg_sq, state.steps);
  } catch (const UsageError&) {
    throw;
  } catch (const std::exception& e) {
    throw UsageError(fmt::format("checkpoint {}: optimizer state unreadable ({})", path_, error_line(e)));
  }
}

void Checkpoint::restore_rng() const {
  at::Generator gen = at::detail::getDefaultCPUGenerator();
  gen.set_state(read_tensor(*archive_, "cpu_rng_state").to(torch::kCPU));
}

namespace {

// Settings a resumed run cannot change, and those that shape only the run, not what it trains.
const char* const kFixedOnResume[] = {"dataset", "train-limit", "binarize", "batch-size", "seed", "recon-loss"};
const char* const kRunOnly[] = {
    "data-dir",         "download",         "verify-md5",   "out-dir", "log-every", "sample-every",
    "checkpoint-every", "keep-checkpoints", "resume",       "requeue", "threads",   "world",
    "device",           "backend",          "comm-timeout", "profile", "step"};

bool listed(const char* const* begin, const char* const* end, const std::string& name) {
  return std::find_if(begin, end, [&](const char* n) { return name == n; }) != end;
}

}  // namespace

std::vector<SettingChange> changed_settings(const Config& was, const Config& now) {
  std::vector<SettingChange> out;
  for (const auto& f : config_fields()) {
    if (listed(std::begin(kRunOnly), std::end(kRunOnly), f.name)) continue;
    const std::string a = field_to_string(was, f), b = field_to_string(now, f);
    if (a != b) out.push_back({f.name, a, b});
  }
  return out;
}

void check_resumable(const Checkpoint& ckpt, const Config& config) {
  if (!same_architecture(ckpt.config(), config)) {
    throw UsageError(
        fmt::format("--resume {}: the checkpoint holds a {} model but the config asks for {}; "
                    "match --hidden-dims/--latent-dim, or pass --resume none or another --out-dir",
                    ckpt.path(), describe_architecture(ckpt.config()), describe_architecture(config)));
  }
}

void check_unchanged_on_resume(const Checkpoint& ckpt, const Config& config) {
  for (const auto& f : config_fields()) {
    if (!listed(std::begin(kFixedOnResume), std::end(kFixedOnResume), f.name)) continue;
    const std::string was = field_to_string(ckpt.config(), f), now = field_to_string(config, f);
    if (was == now) continue;
    throw UsageError(
        fmt::format("--{} {}: {} was trained with --{} {}, which a resumed run cannot change; "
                    "keep it, or pass --resume none or another --out-dir to start a new run",
                    f.name, now.empty() ? "\"\"" : now, ckpt.path(), f.name, was.empty() ? "\"\"" : was));
  }
}

}  // namespace vae
