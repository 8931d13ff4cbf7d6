#include "vae_ddp/trainer.h"

#include <chrono>
#include <filesystem>
#include <regex>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "vae_ddp/errors.h"
#include "vae_ddp/evaluate.h"
#include "vae_ddp/images.h"
#include "vae_ddp/loss.h"
#include "vae_ddp/metrics.h"
#include "vae_ddp/rng.h"

namespace vae {

namespace {

constexpr int64_t kSampleCount = 64;  // 8x8 sample grid
constexpr int64_t kReconCount = 8;    // one row of test images over their reconstructions

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string epoch_file(const std::string& dir, int64_t epoch, const char* ext) {
  return fmt::format("{}/epoch_{:03d}.{}", dir, epoch, ext);
}

// Sums over a stretch of steps, kept on the device: read once per log line / epoch.
struct Accumulator {
  torch::Tensor objective, bce, kld;  // float64 scalars: sums over images
  int64_t images = 0;

  explicit Accumulator(torch::Device device)
      : objective(torch::zeros({}, torch::dtype(torch::kFloat64).device(device))),
        bce(torch::zeros_like(objective)),
        kld(torch::zeros_like(objective)) {}

  void add(const LossTerms& t, const torch::Tensor& obj_sum, int64_t rows) {
    objective += obj_sum.detach().to(torch::kFloat64);
    bce += t.bce.detach().sum().to(torch::kFloat64);
    kld += t.kld.detach().sum().to(torch::kFloat64);
    images += rows;
  }
  double mean(const torch::Tensor& sum) const { return images ? sum.item<double>() / images : 0.0; }
};

}  // namespace

torch::Tensor epoch_permutation(int64_t n, int64_t seed, int64_t epoch) {
  auto gen = make_generator(seed, Stream::kShuffle, epoch);
  return torch::randperm(n, gen, torch::kInt64);
}

Trainer::Trainer(Config config, Dataset train, Dataset test, torch::Device device)
    : config_(std::move(config)),
      train_{train.images.to(device), train.labels.to(device)},
      test_{test.images.to(device), test.labels.to(device)},
      device_(device),
      schedule_(config_, steps_per_epoch()) {  // uses config_ and train_, initialised above
  torch::manual_seed(derive_seed(config_.seed, Stream::kInit));
  model_ = VAE(config_.hidden_dims, config_.latent_dim);
  model_->to(device_);
  optimizer_ = std::make_unique<torch::optim::Adam>(model_->parameters(), torch::optim::AdamOptions(config_.lr));
  auto gen = make_generator(config_.seed, Stream::kSample);
  sample_z_ = torch::randn({kSampleCount, config_.latent_dim}, gen, torch::kFloat32).to(device_);
}

int64_t Trainer::steps_per_epoch() const {
  return (train_.size() + config_.batch_size - 1) / config_.batch_size;
}

void Trainer::resume_from(const Checkpoint& ckpt) {
  check_resumable(ckpt, config_);
  ckpt.restore_model(model_);
  ckpt.restore_optimizer(*optimizer_);
  ckpt.restore_rng();
  progress_ = ckpt.progress();
}

EpochStats Trainer::train_epoch(int64_t epoch) {
  model_->train();
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t n = train_.size();
  const int64_t steps = steps_per_epoch();
  const auto perm = epoch_permutation(n, config_.seed, epoch).to(device_);
  Accumulator total(device_), interval(device_);
  double beta = 0;
  for (int64_t step = 0; step < steps; ++step) {
    const int64_t start = step * config_.batch_size;
    const int64_t rows = std::min(config_.batch_size, n - start);
    auto x = train_.images.index_select(/*dim=*/0, perm.slice(/*dim=*/0, start, start + rows));  // [rows, 784]
    auto gen = make_generator(config_.seed, Stream::kNoise, epoch, step);
    auto eps = torch::randn({rows, config_.latent_dim}, gen, torch::kFloat32).to(device_);  // [rows, latent]
    beta = schedule_.at(progress_.global_step);

    auto out = model_->forward(x, eps);
    auto terms = loss_terms(out.logits, x, out.mu, out.logvar);
    auto loss = objective(terms, beta, rows);
    optimizer_->zero_grad();
    loss.backward();
    optimizer_->step();
    ++progress_.global_step;

    auto loss_sum = loss.detach() * static_cast<double>(rows);
    total.add(terms, loss_sum, rows);
    interval.add(terms, loss_sum, rows);
    if (config_.log_every > 0 && (step + 1) % config_.log_every == 0) {
      spdlog::info("epoch {} [{:>6}/{} {:3.0f}%]  loss {:8.3f}  bce {:8.3f}  kld {:7.3f}  beta {:.3g}", epoch,
                   start + rows, n, 100.0 * (start + rows) / n, interval.mean(interval.objective),
                   interval.mean(interval.bce), interval.mean(interval.kld), beta);
      interval = Accumulator(device_);
    }
  }
  progress_.epoch = epoch;
  EpochStats s;
  s.loss = total.mean(total.objective);
  s.bce = total.mean(total.bce);
  s.kld = total.mean(total.kld);
  s.beta = beta;
  s.images = total.images;
  s.seconds = seconds_since(t0);
  return s;
}

void Trainer::write_images(int64_t epoch) {
  torch::NoGradGuard no_grad;
  model_->eval();
  auto samples = torch::sigmoid(model_->decode(sample_z_)).view({-1, kImageSide, kImageSide});
  write_grid_png(epoch_file(config_.out_dir + "/samples", epoch, "png"), samples, /*cols=*/8);

  auto x = test_.images.slice(/*dim=*/0, 0, std::min(kReconCount, test_.size()));  // [8, 784]
  auto recon = torch::sigmoid(model_->decode(model_->encode(x).first));          // decoded posterior means
  auto pair = torch::cat({x, recon}).view({-1, kImageSide, kImageSide});
  write_grid_png(epoch_file(config_.out_dir + "/reconstructions", epoch, "png"), pair, /*cols=*/x.size(0));
  model_->train();
}

void Trainer::write_checkpoints(int64_t epoch) {
  const std::string dir = config_.out_dir + "/checkpoints";
  save_checkpoint(dir + "/last.pt", model_, *optimizer_, progress_, config_);
  if (epoch % config_.checkpoint_every != 0 && epoch != config_.epochs) return;
  save_checkpoint(epoch_file(dir, epoch, "pt"), model_, *optimizer_, progress_, config_);
  if (config_.keep_checkpoints == 0) return;
  // Prune the oldest epoch_NNN.pt beyond the newest keep_checkpoints.
  std::vector<std::pair<int64_t, std::filesystem::path>> found;
  const std::regex pattern(R"(epoch_(\d+)\.pt)");
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::smatch m;
    const std::string name = entry.path().filename().string();
    if (std::regex_match(name, m, pattern)) found.emplace_back(std::stoll(m[1]), entry.path());
  }
  std::sort(found.rbegin(), found.rend());
  for (size_t i = static_cast<size_t>(config_.keep_checkpoints); i < found.size(); ++i) {
    std::filesystem::remove(found[i].second);
  }
}

void Trainer::run() {
  MetricsWriter metrics(config_.out_dir + "/metrics.csv", progress_.epoch);
  if (progress_.epoch >= config_.epochs) {
    spdlog::info("already trained through epoch {} (--epochs {}): nothing to do; raise --epochs to continue",
                 progress_.epoch, config_.epochs);
    return;
  }
  for (int64_t epoch = progress_.epoch + 1; epoch <= config_.epochs; ++epoch) {
    const EpochStats train = train_epoch(epoch);
    const EvalResult test = evaluate(model_, test_, config_.seed, device_);
    if (config_.sample_every > 0 && (epoch % config_.sample_every == 0 || epoch == config_.epochs)) {
      write_images(epoch);
    }
    const double ips = train.images / std::max(train.seconds, 1e-9);
    metrics.append({epoch, train.loss, train.bce, train.kld, train.beta, test.loss, test.bce, test.kld, ips,
                    train.seconds});
    write_checkpoints(epoch);
    spdlog::info("==> epoch {}/{}  train loss {:.4f} (bce {:.4f}, kld {:.4f}, beta {:.3g})  test loss {:.4f}  "
                 "{:.2f} s  {:.0f} img/s",
                 epoch, config_.epochs, train.loss, train.bce, train.kld, train.beta, test.loss, train.seconds, ips);
  }
}

}  // namespace vae
