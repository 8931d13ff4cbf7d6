#include "vae_ddp/checkpoint.h"

#include <cstring>
#include <fstream>
#include <sstream>

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>

#include "vae_ddp/errors.h"
#include "vae_ddp/runtime.h"

namespace vae {

namespace {

constexpr int64_t kFormatVersion = 1;

torch::Tensor string_to_tensor(const std::string& s) {
  auto t = torch::empty({static_cast<int64_t>(s.size())}, torch::kUInt8);
  std::memcpy(t.data_ptr<uint8_t>(), s.data(), s.size());
  return t;
}

std::string tensor_to_string(const torch::Tensor& t) {
  auto c = t.to(torch::kCPU, torch::kUInt8).contiguous();
  return std::string(reinterpret_cast<const char*>(c.data_ptr<uint8_t>()), static_cast<size_t>(c.numel()));
}

torch::Tensor read_tensor(torch::serialize::InputArchive& ar, const char* key) {
  torch::Tensor t;
  ar.read(key, t);
  return t;
}

}  // namespace

void save_checkpoint(const std::string& path, VAE& model, torch::optim::Adam& opt, const TrainProgress& progress,
                     const Config& config) {
  torch::serialize::OutputArchive root;
  torch::serialize::OutputArchive model_ar, opt_ar;
  model->save(model_ar);
  opt.save(opt_ar);
  root.write("model", model_ar);
  root.write("optimizer", opt_ar);
  root.write("format_version", torch::tensor(kFormatVersion));
  root.write("epoch", torch::tensor(progress.epoch));
  root.write("global_step", torch::tensor(progress.global_step));
  root.write("config_yaml", string_to_tensor(to_yaml(config)));
  root.write("cpu_rng_state", at::detail::getDefaultCPUGenerator().get_state());
  root.write("loss_scale", torch::tensor(progress.scaler.scale, torch::kFloat64));
  root.write("scale_growth_tracker", torch::tensor(progress.scaler.growth_tracker));

  std::string bytes;
  root.save_to([&bytes](const void* data, size_t size) {
    bytes.append(static_cast<const char*>(data), size);
    return size;
  });
  write_file_atomic(path, bytes);
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

Checkpoint::Checkpoint(const std::string& path, const std::string& bytes, torch::Device device) : path_(path) {
  archive_ = std::make_shared<torch::serialize::InputArchive>();
  try {
    archive_->load_from(bytes.data(), bytes.size(), device);
    const int64_t version = read_tensor(*archive_, "format_version").item<int64_t>();
    if (version != kFormatVersion) {
      throw UsageError(fmt::format("checkpoint {}: format version {}, this build reads {}", path, version,
                                   kFormatVersion));
    }
    progress_.epoch = read_tensor(*archive_, "epoch").item<int64_t>();
    progress_.global_step = read_tensor(*archive_, "global_step").item<int64_t>();
    torch::Tensor scale, tracker;
    if (archive_->try_read("loss_scale", scale)) progress_.scaler.scale = scale.item<double>();
    if (archive_->try_read("scale_growth_tracker", tracker)) progress_.scaler.growth_tracker = tracker.item<int64_t>();
    config_ = load_yaml_string(tensor_to_string(read_tensor(*archive_, "config_yaml")), path + " (config)", Config{});
  } catch (const UsageError&) {
    throw;
  } catch (const std::exception& e) {
    throw UsageError(fmt::format("checkpoint {}: corrupt, truncated or not a vae_ddp checkpoint ({})", path,
                                 error_line(e)));
  }
}

void Checkpoint::restore_model(VAE& model) const {
  try {
    torch::serialize::InputArchive model_ar;
    archive_->read("model", model_ar);
    // Load into a twin and copy the values over: loading rebinds each tensor's storage,
    // and the model's parameters must stay where they are (views into flat buffers).
    VAE loaded(config_.hidden_dims, config_.latent_dim);
    loaded->load(model_ar);
    const auto src = loaded->parameters();
    auto dst = model->parameters();
    TORCH_CHECK(src.size() == dst.size(), "expected ", dst.size(), " parameter tensors, found ", src.size());
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

void Checkpoint::restore_optimizer(torch::optim::Adam& opt) const {
  try {
    torch::serialize::InputArchive opt_ar;
    archive_->read("optimizer", opt_ar);
    opt.load(opt_ar);
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

void check_resumable(const Checkpoint& ckpt, const Config& config) {
  if (same_architecture(ckpt.config(), config)) return;
  throw UsageError(fmt::format("--resume {}: the checkpoint holds a {} model but the config asks for {}; "
                               "match --hidden-dims/--latent-dim, or pass --resume none or another --out-dir",
                               ckpt.path(), describe_architecture(ckpt.config()), describe_architecture(config)));
}

}  // namespace vae
