#include "vae_ddp/trainer.h"

#include <chrono>
#include <limits>
#include <filesystem>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "vae_ddp/errors.h"
#include "vae_ddp/evaluate.h"
#include "vae_ddp/fault_injection.h"
#include "vae_ddp/images.h"
#include "vae_ddp/loss.h"
#include "vae_ddp/metrics.h"
#include "vae_ddp/pictures.h"
#include "vae_ddp/plots.h"
#include "vae_ddp/runtime.h"
#include "vae_ddp/rng.h"
#include "vae_ddp/stop_signal.h"

namespace vae {

namespace {

constexpr int64_t kSampleCount = 64;  // 8x8 sample grid
constexpr int64_t kReconCount = 8;    // one row of test images over their reconstructions

// Sums kept on the device, read once per log line / epoch: a float64 [4] tensor.
enum Sum : int64_t { kObjective = 0, kBce = 1, kKld = 2, kImages = 3, kSums = 4 };

torch::Tensor new_sums(torch::Device device) {
  return torch::zeros({kSums}, torch::dtype(torch::kFloat64).device(device));
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string epoch_file(const std::string& dir, int64_t epoch, const char* ext) {
  return fmt::format("{}/epoch_{:03d}.{}", dir, epoch, ext);
}

}  // namespace

Trainer::Trainer(Config config, Dataset train, Dataset test, torch::Device device, Communicator& comm)
    : config_(std::move(config)),
      train_{train.images.to(device), train.labels.to(device)},
      test_{test.images.to(device), test.labels.to(device)},
      device_(device),
      comm_(comm),
      precision_(parse_precision(config_.precision)),
      scaler_(precision_ == Precision::kFP16, device),
      profiler_(config_.profile, device),
      schedule_(config_, steps_per_epoch()) {  // uses config_ and train_, initialised above
  torch::manual_seed(derive_seed(config_.seed, Stream::kInit));
  model_ = VAE(model_options(config_));
  model_->to(device_);
  model_->set_communicator(&comm_);  // BatchNorm statistics over the global batch
  grads_ = std::make_unique<GradBuffer>(model_->parameters());
  AdamOptions adam;
  adam.lr = config_.lr;
  adam.weight_decay = config_.weight_decay;
  adam.decoupled = config_.optimizer == "adamw";
  adam_ = std::make_unique<FlatAdam>(model_->parameters(), grads_->grads(), adam);
  if (config_.cpu_fast_path && device_.is_cpu() && precision_ == Precision::kFP32 &&
      CpuStep::supports(model_->options())) {
    cpu_step_ = std::make_unique<CpuStep>(model_);
  }
  broadcast_parameters(model_->parameters(), comm_);
  auto gen = make_generator(config_.seed, Stream::kSample);
  sample_z_ = torch::randn({kSampleCount, config_.latent_dim}, gen, torch::kFloat32).to(device_);
}

int64_t Trainer::steps_per_epoch() const {
  return (train_.size() + config_.batch_size - 1) / config_.batch_size;
}

void Trainer::resume_from(const Checkpoint& ckpt) {
  check_resumable(ckpt, config_);
  ckpt.restore_model(model_);
  ckpt.restore_optimizer(*adam_);
  ckpt.restore_rng();
  progress_ = ckpt.progress();
  scaler_ = LossScaler(precision_ == Precision::kFP16, device_, progress_.scaler);
  broadcast_parameters(model_->parameters(), comm_);
  beta_ = torch::Tensor();
}

torch::Tensor Trainer::begin_epoch(int64_t epoch) {
  model_->train();
  epoch_ = epoch;
  prepare_noise(epoch);
  if (!beta_.defined()) broadcast_beta();
  return epoch_permutation(train_.size(), config_.seed, epoch).to(device_);
}

void Trainer::prepare_noise(int64_t epoch) {
  std::vector<torch::Tensor> steps;
  for (int64_t step = 0, start = 0; start < train_.size(); ++step, start += config_.batch_size) {
    const int64_t rows = std::min(config_.batch_size, train_.size() - start);
    auto gen = make_generator(config_.seed, Stream::kNoise, epoch, step);
    steps.push_back(torch::randn({rows, config_.latent_dim}, gen, torch::kFloat32));
  }
  epoch_noise_ = torch::cat(steps).to(device_);  // one host-to-device copy per epoch
}

void Trainer::check_replicas(const std::string& when) {
  check_replicas_agree(comm_.world(), model_->parameters(), when);
}

void Trainer::broadcast_beta() {
  beta_ = torch::full({1}, is_root() ? schedule_.at(progress_.global_step) : 0.0,
                      torch::dtype(torch::kFloat32).device(device_));
  comm_.broadcast(beta_, /*root=*/0);
}

bool Trainer::train_step(const torch::Tensor& perm, int64_t step, torch::Tensor& acc,
                         StepRecord* record) {
  const int rank = comm_.world().rank, world = comm_.world().size;
  const int64_t start = step * config_.batch_size;
  const int64_t rows = std::min(config_.batch_size, train_.size() - start);  // the global batch
  const bool poison = maybe_inject_fault(FaultSite::kStep, rank, progress_.global_step) == FaultAction::kPoisonBatch;
  grads_->zero();
  // BatchNorm all-reduces inside forward and backward: then a rank without rows joins too.
  if (shard_size(rows, rank, world) > 0 || config_.batch_norm) {
    torch::Tensor x, eps;
    ForwardExtras extras;
    {
      Profiler::Scope timed(profiler_, Phase::kData);
      auto idx = shard_rows(perm.slice(/*dim=*/0, start, start + rows), rank, world);
      if (config_.binarize == "dynamic") {
        // Drawn for the whole global batch, then sharded: the same pixels at any world size.
        auto global = train_.images.index_select(/*dim=*/0, perm.slice(/*dim=*/0, start, start + rows));
        x = shard_rows(binarize_batch(global, config_.seed, epoch_, step), rank, world).contiguous();
      } else {
        x = train_.images.index_select(/*dim=*/0, idx);  // [mine, 784]
      }
      if (poison) x = x * std::numeric_limits<float>::quiet_NaN();
      // The noise of the whole global batch, so each image gets the same eps at any world size.
      eps = shard_rows(epoch_noise_.slice(/*dim=*/0, start, start + rows), rank, world);
      if (config_.conditional) extras.labels = train_.labels.index_select(/*dim=*/0, idx);
      // Dropout masks, like the noise, are drawn for the global batch and then sharded.
      for (auto& m : dropout_masks(model_->hidden_widths(), config_.dropout, rows, config_.seed, epoch_, step)) {
        extras.dropout.push_back(shard_rows(m, rank, world).to(device_));
      }
      if (record) {
        record->indices = idx.clone();
        record->eps = eps.clone();
      }
    }
    torch::Tensor loss;
    LossTerms terms;
    if (cpu_step_) {
      terms = cpu_step_->run(x, eps, beta_.item<double>(), rows, &profiler_);
      loss = objective(terms, beta_, rows);
    } else {
      {
        Profiler::Scope timed(profiler_, Phase::kForward);
        AutocastGuard autocast(device_, precision_);
        auto out = model_->forward(x, eps, extras);
        terms = loss_terms(out.logits, x, out.mu, out.logvar, config_.recon_loss == "mse");
        loss = objective(terms, beta_, rows);  // this rank's images' sum / global batch
      }
      Profiler::Scope timed(profiler_, Phase::kBackward);
      scaler_.scale(loss).backward();
    }
    if (precision_ != Precision::kFP16) {
      grads_->slot(GradBuffer::kNonFinite).copy_(loss.detach().isfinite().logical_not().to(torch::kFloat32).reshape({1}));
    }
    if (record) {
      record->beta = beta_.item<double>();
      record->loss = loss.item<double>();
    }
    Profiler::Scope timed(profiler_, Phase::kData);
    torch::NoGradGuard no_grad;
    acc[kObjective] += loss.detach().to(torch::kFloat64) * static_cast<double>(rows);
    acc[kBce] += terms.bce.detach().to(torch::kFloat64).sum();
    acc[kKld] += terms.kld.detach().to(torch::kFloat64).sum();
    acc[kImages] += static_cast<double>(x.size(0));
  }
  {
    Profiler::Scope timed(profiler_, Phase::kAllReduce);
    // Per-step control values travel in the gradient all-reduce (see GradBuffer::Slot).
    if (scaler_.enabled()) grads_->slot(GradBuffer::kFoundInf).copy_(scaler_.non_finite(grads_->grads()));
    if (is_root()) grads_->slot(GradBuffer::kNextBeta).fill_(schedule_.at(progress_.global_step + 1));
    if (stop_requested()) grads_->slot(GradBuffer::kStop).fill_(1.0);
    comm_.allreduce_sum(grads_->flat());
    beta_ = grads_->slot(GradBuffer::kNextBeta).clone();
  }
  Profiler::Scope timed(profiler_, Phase::kOptimizer);
  auto g = grads_->grads();
  const bool skip = scaler_.unscale_and_update(g, grads_->slot(GradBuffer::kFoundInf));
  if (!skip && config_.grad_clip > 0) clip_grad_norm(g, config_.grad_clip);  // the summed, unscaled gradient
  if (!skip) adam_->step();
  ++progress_.global_step;
  return !skip;
}

void Trainer::log_interval(int64_t epoch, int64_t done, torch::Tensor& interval) {
  auto sums = interval.clone();
  comm_.allreduce_sum(sums);
  interval.zero_();
  const auto s = sums.to(torch::kCPU);
  const double images = std::max(1.0, s[kImages].item<double>());
  const double loss = s[kObjective].item<double>() / images, bce = s[kBce].item<double>() / images,
               kld = s[kKld].item<double>() / images, beta = schedule_.at(progress_.global_step - 1);
  if (tb_) {
    for (const auto& [tag, v] : {std::pair{"step/loss", loss}, {"step/bce", bce}, {"step/kld", kld}, {"step/beta", beta}}) {
      tb_->scalar(tag, v, progress_.global_step);
    }
  }
  if (bar_ && bar_->enabled()) return;  // on a terminal the bar shows progress instead
  spdlog::info("epoch {} [{:>6}/{} {:3.0f}%]  loss {:8.3f}  bce {:8.3f}  kld {:7.3f}  beta {:.3g}", epoch, done,
               train_.size(), 100.0 * done / train_.size(), loss, bce, kld, beta);
}

bool Trainer::must_stop(int64_t epoch, int64_t step) {
  // On a GPU reading the slots waits for the step to finish: look every few steps only.
  // Every rank looks at the same steps and reads the same summed values.
  const bool last = step + 1 == steps_per_epoch();
  if (!device_.is_cpu() && (step + 1) % 16 != 0 && !last) return false;
  const auto slots = grads_->flat().slice(/*dim=*/0, grads_->numel()).to(torch::kCPU);
  if (slots[GradBuffer::kNonFinite].item<float>() > 0) {
    throw std::runtime_error(fmt::format("non-finite loss (NaN or inf) at epoch {}, step {}{}: training diverged; "
                                         "the last good checkpoint is kept (lower --lr, or try --precision fp32)",
                                         epoch, step + 1, device_.is_cpu() ? "" : " or a few steps before"));
  }
  return slots[GradBuffer::kStop].item<float>() > 0 && !last;  // at the epoch's end, the epoch completes
}

EpochStats Trainer::train_epoch(int64_t epoch) {
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t steps = steps_per_epoch();
  const auto perm = begin_epoch(epoch);
  auto total = new_sums(device_), interval = new_sums(device_);
  // Resuming mid-epoch: continue at the next step, with the done steps' sums counted once.
  const int64_t first = progress_.step_in_epoch;
  if (first > 0 && is_root()) {
    total.copy_(torch::tensor(std::vector<double>(progress_.partial_sums.begin(), progress_.partial_sums.end()),
                              torch::kFloat64));
  }
  const double seconds_before = first > 0 ? progress_.partial_seconds : 0.0;
  EpochStats s;
  bar_ = std::make_unique<ProgressBar>(is_root() && stdout_is_terminal(), epoch, config_.epochs, train_.size());
  for (int64_t step = first; step < steps; ++step) {
    if (!train_step(perm, step, interval)) ++s.skipped_steps;
    const bool stop = must_stop(epoch, step);
    if (bar_->due()) {  // rank 0's own rows: a running estimate, read without a collective
      const auto mine = (total + interval).to(torch::kCPU);
      bar_->draw(std::min((step + 1) * config_.batch_size, train_.size()),
                 mine[kObjective].item<double>() / std::max(1.0, mine[kImages].item<double>()));
    }
    if (config_.log_every > 0 && (step + 1) % config_.log_every == 0) {
      total += interval;
      log_interval(epoch, std::min((step + 1) * config_.batch_size, train_.size()), interval);
    }
    if (stop) {
      bar_->finish();
      total += interval;
      comm_.allreduce_sum(total);
      const auto sums = total.to(torch::kCPU);
      for (int i = 0; i < kSums; ++i) progress_.partial_sums[i] = sums[i].item<double>();
      progress_.step_in_epoch = step + 1;
      progress_.partial_seconds = seconds_before + seconds_since(t0);
      progress_.scaler = scaler_.state();
      s.stopped = true;
      return s;
    }
  }
  bar_->finish();
  total += interval;
  if (profiler_.enabled()) spdlog::info("epoch {} {}", epoch, profiler_.report_and_reset(steps - first));
  progress_.epoch = epoch;
  progress_.step_in_epoch = 0;
  progress_.partial_sums = {};
  progress_.partial_seconds = 0;
  progress_.scaler = scaler_.state();
  comm_.allreduce_sum(total);
  const auto sums = total.to(torch::kCPU);
  s.images = static_cast<int64_t>(sums[kImages].item<double>());
  const double images = std::max<double>(1, s.images);
  s.loss = sums[kObjective].item<double>() / images;
  s.bce = sums[kBce].item<double>() / images;
  s.kld = sums[kKld].item<double>() / images;
  s.beta = schedule_.at(progress_.global_step - 1);
  s.seconds = seconds_before + seconds_since(t0);
  return s;
}

std::vector<StepRecord> Trainer::trace(int64_t steps) {
  const auto perm = begin_epoch(1);
  auto sums = new_sums(device_);
  std::vector<StepRecord> records(static_cast<size_t>(std::min(steps, steps_per_epoch())));
  for (size_t k = 0; k < records.size(); ++k) train_step(perm, static_cast<int64_t>(k), sums, &records[k]);
  return records;
}

void Trainer::write_images(int64_t epoch) {
  EvalMode eval(model_);
  auto samples = torch::sigmoid(model_->decode(sample_z_, cycling_labels(kSampleCount)))
                     .view({-1, kImageSide, kImageSide});
  const auto grid = make_grid(samples, /*cols=*/8);
  const std::string png = encode_png(grid);
  write_file_atomic(epoch_file(config_.out_dir + "/samples", epoch, "png"), png);
  tb_->image("samples", png, grid.size(0), grid.size(1), epoch);

  auto x = test_.images.slice(/*dim=*/0, 0, std::min(kReconCount, test_.size()));  // [8, 784]
  const ForwardExtras labels{test_.labels.slice(/*dim=*/0, 0, x.size(0))};
  auto recon = torch::sigmoid(model_->decode(model_->encode(x, labels).first, labels));  // decoded posterior means
  auto pair = torch::cat({x, recon}).view({-1, kImageSide, kImageSide});
  write_grid_png(epoch_file(config_.out_dir + "/reconstructions", epoch, "png"), pair, /*cols=*/x.size(0));
  // The latest pictures of the latent space, replaced at each sample epoch.
  if (plots_available()) {
    write_latent_map(model_, test_, class_names(config_.dataset), config_.out_dir + "/latent_map.png");
  }
  if (config_.latent_dim == 2) write_manifold(model_, config_.out_dir + "/manifold.png");
  write_interpolations(model_, test_, config_.out_dir + "/interpolation.png");
}

void Trainer::save(const std::string& path, int64_t epoch) {
  save_checkpoint(path, model_, *adam_, progress_, config_,
                  [&] { maybe_inject_fault(FaultSite::kSave, comm_.world().rank, epoch); });
}

void Trainer::write_checkpoints(int64_t epoch) {
  const std::string dir = config_.out_dir + "/checkpoints";
  save(dir + "/last.pt", epoch);
  if (epoch % config_.checkpoint_every != 0 && epoch != config_.epochs) return;
  save(epoch_file(dir, epoch, "pt"), epoch);
  if (config_.keep_checkpoints == 0) return;
  // Prune the oldest epoch_NNN.pt beyond the newest keep_checkpoints.
  const auto found = epoch_checkpoints(dir);
  for (size_t i = static_cast<size_t>(config_.keep_checkpoints); i < found.size(); ++i) {
    std::filesystem::remove(found[i].second);
  }
}

RunEnd Trainer::run() {
  std::unique_ptr<MetricsWriter> metrics;
  if (is_root()) metrics = std::make_unique<MetricsWriter>(config_.out_dir + "/metrics.csv", progress_.epoch);
  if (progress_.epoch >= config_.epochs) {
    spdlog::info("already trained through epoch {} (--epochs {}): nothing to do; raise --epochs to continue",
                 progress_.epoch, config_.epochs);
    return RunEnd::kFinished;
  }
  if (is_root()) tb_ = std::make_unique<EventWriter>(config_.out_dir + "/tb");
  check_replicas("at start");
  for (int64_t epoch = progress_.epoch + 1; epoch <= config_.epochs; ++epoch) {
    const EpochStats train = train_epoch(epoch);
    if (train.stopped) {
      if (is_root()) save(config_.out_dir + "/checkpoints/last.pt", epoch);
      spdlog::info("stop requested: saved {}/checkpoints/last.pt at epoch {}, step {} of {}", config_.out_dir, epoch,
                   progress_.step_in_epoch, steps_per_epoch());
      return RunEnd::kStopped;
    }
    const EvalResult test = evaluate(model_, test_, config_.seed, device_, comm_, config_.binarize == "dynamic");
    check_replicas(fmt::format("after epoch {}", epoch));
    const double ips = train.images / std::max(train.seconds, 1e-9);
    if (is_root()) {
      if (config_.sample_every > 0 && (epoch % config_.sample_every == 0 || epoch == config_.epochs)) {
        write_images(epoch);
      }
      metrics->append({epoch, train.loss, train.bce, train.kld, train.beta, test.loss, test.bce, test.kld, ips,
                       train.seconds});
      if (plots_available()) {
        write_loss_curves(config_.out_dir + "/metrics.csv", config_.out_dir + "/loss_curves.png");
      }
      const std::pair<const char*, double> scalars[] = {
          {"epoch/train_loss", train.loss}, {"epoch/train_bce", train.bce}, {"epoch/train_kld", train.kld},
          {"epoch/beta", train.beta},       {"epoch/test_loss", test.loss}, {"epoch/test_bce", test.bce},
          {"epoch/test_kld", test.kld},     {"epoch/images_per_s", ips}};
      for (const auto& [tag, v] : scalars) tb_->scalar(tag, v, epoch);
      tb_->flush();
      write_checkpoints(epoch);
    }
    spdlog::info("==> epoch {}/{}  train loss {:.4f} (bce {:.4f}, kld {:.4f}, beta {:.3g})  test loss {:.4f}  "
                 "{:.2f} s  {:.0f} img/s{}",
                 epoch, config_.epochs, train.loss, train.bce, train.kld, train.beta, test.loss, train.seconds, ips,
                 train.skipped_steps ? fmt::format("  ({} fp16 steps skipped)", train.skipped_steps) : "");
    // A signal that arrived during evaluation or saving: every rank agrees, the epoch is saved.
    if (allreduce_min_max(comm_.world(), stop_requested() ? 1 : 0).second > 0 && epoch < config_.epochs) {
      spdlog::info("stop requested: stopping after epoch {} (checkpoint saved)", epoch);
      return RunEnd::kStopped;
    }
  }
  return RunEnd::kFinished;
}

}  // namespace vae
