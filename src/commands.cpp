#include "vae_ddp/commands.h"

#include <filesystem>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <torch/version.h>

#include "vae_ddp/checkpoint.h"
#include "vae_ddp/download.h"
#include "vae_ddp/errors.h"
#include "vae_ddp/evaluate.h"
#include "vae_ddp/images.h"
#include "vae_ddp/mnist.h"
#include "vae_ddp/rng.h"
#include "vae_ddp/runtime.h"
#include "vae_ddp/trainer.h"

namespace vae {

namespace {

// The checkpoint --resume names, or none: auto picks out_dir's last.pt when present.
std::unique_ptr<Checkpoint> resume_checkpoint(const Config& c, torch::Device device) {
  if (c.resume == "none") return nullptr;
  std::string path = c.resume;
  if (c.resume == "auto") {
    path = c.out_dir + "/checkpoints/last.pt";
    if (!std::filesystem::exists(path)) return nullptr;
  } else if (!std::filesystem::exists(path)) {
    throw UsageError(fmt::format("--resume {}: no such checkpoint", path));
  }
  return std::make_unique<Checkpoint>(path, device);
}

void log_startup(const Config& c, torch::Device device, int threads, const Trainer& trainer,
                 int64_t parameters, int64_t train_images, int64_t test_images) {
  spdlog::info("vae_ddp · libtorch {} · device {} · {} thread(s) · BLAS {}", TORCH_VERSION, device.str(), threads,
               blas_name());
  spdlog::info("model {} ({} parameters) · data {} ({} train, {} test images) · {} steps/epoch",
               describe_architecture(c), parameters, c.data_dir, train_images, test_images,
               trainer.steps_per_epoch());
  for (const auto& f : config_fields()) spdlog::info("  {:<18} {}", f.name, field_to_string(c, f));
}

int64_t count_parameters(VAE& model) {
  int64_t n = 0;
  for (const auto& p : model->parameters()) n += p.numel();
  return n;
}

// The model stored in a checkpoint, on `device`, in eval mode.
VAE load_model(const Checkpoint& ckpt, torch::Device device) {
  VAE model(ckpt.config().hidden_dims, ckpt.config().latent_dim);
  model->to(device);
  ckpt.restore_model(model);
  model->eval();
  return model;
}

}  // namespace

int train_command(const Config& c) {
  if (c.world != 1) {
    throw UsageError(fmt::format("--world {}: this build trains in one process; use --world 1", c.world));
  }
  const torch::Device device = resolve_device(c.device);
  const int threads = configure_threads(c.threads, /*local_ranks=*/1);
  prepare_out_dir(c.out_dir);
  auto ckpt = resume_checkpoint(c, device);
  if (ckpt) check_resumable(*ckpt, c);  // before the data is read: fail fast
  if (c.download) download_mnist(c.data_dir);
  Dataset train = load_mnist(c.data_dir, Split::kTrain, c.verify_md5, c.train_limit);
  Dataset test = load_mnist(c.data_dir, Split::kTest, c.verify_md5);
  const int64_t train_images = train.size(), test_images = test.size();

  Trainer trainer(c, std::move(train), std::move(test), device);
  if (ckpt) trainer.resume_from(*ckpt);
  write_file_atomic(c.out_dir + "/config.yaml", to_yaml(c));
  log_startup(c, device, threads, trainer, count_parameters(trainer.model()), train_images, test_images);
  if (!ckpt && std::filesystem::exists(c.out_dir + "/checkpoints/last.pt")) {
    spdlog::warn("warning: --resume {}: starting afresh in {}; its metrics.csv and checkpoints will be replaced",
                 c.resume, c.out_dir);
  }
  if (ckpt) spdlog::info("resuming from {} (epoch {}, step {})", ckpt->path(), ckpt->progress().epoch,
                         ckpt->progress().global_step);
  trainer.run();
  spdlog::info("outputs in {}: metrics.csv, config.yaml, samples/, reconstructions/, checkpoints/last.pt",
               c.out_dir);
  return kExitOk;
}

int eval_command(const EvalOptions& o) {
  const torch::Device device = resolve_device(o.device);
  configure_threads(o.threads, /*local_ranks=*/1);
  Checkpoint ckpt(o.checkpoint, device);
  VAE model = load_model(ckpt, device);
  const Dataset test = load_mnist(o.data_dir, Split::kTest, o.verify_md5);
  const int64_t seed = o.seed >= 0 ? o.seed : ckpt.config().seed;
  const EvalResult r = evaluate(model, test, seed, device);
  if (o.json) {
    fmt::print("{{\"checkpoint\": \"{}\", \"epoch\": {}, \"seed\": {}, \"images\": {}, \"test_loss\": {:.17g}, "
               "\"test_bce\": {:.17g}, \"test_kld\": {:.17g}}}\n",
               o.checkpoint, ckpt.progress().epoch, seed, r.images, r.loss, r.bce, r.kld);
  } else {
    fmt::print("{} (epoch {}): test loss {:.4f} nats/image (bce {:.4f}, kld {:.4f}) over {} images, seed {}\n",
               o.checkpoint, ckpt.progress().epoch, r.loss, r.bce, r.kld, r.images, seed);
  }
  return kExitOk;
}

int sample_command(const SampleOptions& o) {
  const torch::Device device = resolve_device(o.device);
  Checkpoint ckpt(o.checkpoint, device);
  VAE model = load_model(ckpt, device);
  const int64_t seed = o.seed >= 0 ? o.seed : ckpt.config().seed;
  torch::NoGradGuard no_grad;
  auto gen = make_generator(seed, Stream::kSample);
  auto z = torch::randn({o.n, model->latent_dim()}, gen, torch::kFloat32).to(device);  // [n, latent]
  auto images = torch::sigmoid(model->decode(z)).view({-1, kImageSide, kImageSide});
  const auto cols = static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(o.n))));
  write_grid_png(o.out, images, cols);
  fmt::print("wrote {} ({} samples)\n", o.out, o.n);
  return kExitOk;
}

}  // namespace vae
