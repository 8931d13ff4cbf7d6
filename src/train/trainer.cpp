#include "vae_ddp/train/trainer.h"

#include <chrono>
#include <limits>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "vae_ddp/base/errors.h"
#include "vae_ddp/base/fault_injection.h"
#include "vae_ddp/base/rng.h"
#include "vae_ddp/base/stop_signal.h"
#include "vae_ddp/model/loss.h"
#include "vae_ddp/train/evaluate.h"
#include "vae_ddp/train/gpu_audit.h"

namespace vae {

namespace {

// Sums kept on the device, read once per log line / epoch: a float64 [4] tensor.
enum Sum : int64_t { kObjective = 0, kBce = 1, kKld = 2, kImages = 3, kSums = 4 };

// On a GPU reading the control slots waits for the step to finish: the trainer reads them
// every this many steps (and at an epoch's last step) there, every step on the CPU.
constexpr int64_t kGpuSlotReadEvery = 16;
// --profile or VAE_DDP_SYNC_DEBUG on a GPU counts the GPU operations of steps
// kOpsFrom+1 .. kOpsFrom+kOpsSteps of an epoch.
constexpr int64_t kOpsFrom = 10, kOpsSteps = 10;

torch::Tensor new_sums(torch::Device device) {
  return torch::zeros({kSums}, torch::dtype(torch::kFloat64).device(device));
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

Trainer::Trainer(Config config, Dataset train, Dataset test, torch::Device device, Communicator& comm)
    : config_(std::move(config)),
      train_{train.images.to(device), train.labels.to(device)},
      test_{test.images.to(device), test.labels.to(device)},
      device_(device),
      comm_(comm),
      precision_(config_.precision),
      scaler_(precision_ == Precision::kFP16, device),
      profiler_(config_.profile, device),
      schedule_(config_, steps_per_epoch()) {  // uses config_ and train_, initialised above
  torch::manual_seed(derive_seed(config_.seed, Stream::kInit));
  model_ = VAE(model_options(config_));
  model_->to(device_);
  model_->set_communicator(&comm_);  // BatchNorm statistics over the global batch
  flat_ = std::make_unique<FlatParameters>(model_->parameters());
  AdamOptions adam;
  adam.lr = config_.lr;
  adam.weight_decay = config_.weight_decay;
  adam.decoupled = config_.optimizer == Optimizer::kAdamW;
  adam_ = std::make_unique<FlatAdam>(flat_->params(), flat_->grads(), adam);
  batches_ = std::make_unique<BatchMaker>(config_, train_, model_->hidden_widths(), device_);
  step_ = choose_step(config_, model_, device_, precision_, scaler_, profiler_);
  skipped_ = torch::zeros({}, torch::dtype(torch::kFloat32).device(device_));
  total_ = new_sums(device_);
  interval_ = new_sums(device_);
  if (step_.kind == StepKind::kGraph) make_device_step();
  broadcast_parameters(model_->parameters(), comm_);
  outputs_ = std::make_unique<RunOutputs>(is_root(), config_, model_, *adam_, progress_, test_);
}

void Trainer::make_device_step() {
  // Beta of every global step of the run, rank 0's schedule on every rank: the device step
  // reads it by its own step counter.
  const int64_t steps = config_.epochs * steps_per_epoch() + 1;
  std::vector<float> betas(static_cast<size_t>(steps));
  for (int64_t s = 0; s < steps; ++s) betas[static_cast<size_t>(s)] = static_cast<float>(schedule_.at(s));
  auto table = torch::tensor(betas, torch::kFloat32).to(device_);
  comm_.broadcast(table, /*root=*/0);
  DeviceStepOptions o;
  o.precision = precision_;
  o.grad_clip = config_.grad_clip;
  o.betas = table;
  o.full_batch = config_.batch_size;
  device_step_ = std::make_unique<DeviceStep>(
      DeviceStepParts{&model_, flat_.get(), adam_.get(), &scaler_, &comm_, train_.images, skipped_}, o);
}

int64_t Trainer::steps_per_epoch() const { return vae::steps_per_epoch(train_.size(), config_.batch_size); }

void Trainer::resume_from(const Checkpoint& ckpt) {
  check_resumable(ckpt, config_);
  ckpt.restore_model(model_);
  ckpt.restore_optimizer(*adam_);
  ckpt.restore_rng();
  progress_ = ckpt.progress();
  scaler_.load_state(progress_.scaler);  // in place: the device step reads the scaler's tensors
  broadcast_parameters(model_->parameters(), comm_);
  beta_ = torch::Tensor();
}

void Trainer::begin_epoch(int64_t epoch) {
  model_->train();
  batches_->begin_epoch(epoch);
  skipped_.zero_();
  if (device_step_) device_step_->set_global_step(progress_.global_step);
  if (!beta_.defined()) broadcast_beta();
}

void Trainer::check_replicas(const std::string& when) {
  check_replicas_agree(comm_.world(), model_->parameters(), when);
}

void Trainer::broadcast_beta() {
  beta_ = torch::full({1}, is_root() ? schedule_.at(progress_.global_step) : 0.0,
                      torch::dtype(torch::kFloat32).device(device_));
  comm_.broadcast(beta_, /*root=*/0);
}

Batch Trainer::make_batch(int64_t step, FaultAction fault) {
  Profiler::Scope timed(profiler_, Phase::kData);
  Batch b = batches_->make(step, comm_.world().rank, comm_.world().size);
  if (fault == FaultAction::kPoisonBatch) b.x = b.x * std::numeric_limits<float>::quiet_NaN();
  return b;
}

void Trainer::train_step(int64_t step, torch::Tensor& acc, StepRecord* record) {
  const FaultAction fault = maybe_inject_fault(FaultSite::kStep, comm_.world().rank, progress_.global_step);
  if (device_step_) {
    device_train_step(step, acc, fault, record);
    return;
  }
  const Batch batch = make_batch(step, fault);
  // BatchNorm all-reduces inside forward and backward: then a rank without rows joins too.
  const bool runs = batch.rows() > 0 || config_.batch_norm;
  if (runs && step_.step->overwrites_gradients()) {
    flat_->zero_slots();
  } else {
    flat_->zero_grads();
  }
  if (runs) {
    const StepResult r = step_.step->run(batch, beta_);
    if (precision_ != Precision::kFP16) {
      flat_->slot(FlatParameters::kNonFinite)
          .copy_(r.loss.detach().isfinite().logical_not().to(torch::kFloat32).reshape({1}));
    }
    if (record) *record = {batch.indices.clone(), batch.eps.clone(), beta_.item<double>(), r.loss.item<double>()};
    add_sums(acc, r, batch);
  }
  if (fault == FaultAction::kOverflowGradients)
    flat_->grads().narrow(0, 0, 1).fill_(std::numeric_limits<float>::infinity());
  reduce_gradients();
  update_parameters();
}

void Trainer::device_train_step(int64_t step, torch::Tensor& acc, FaultAction fault, StepRecord* record) {
  if (stop_requested()) device_step_->request_stop();
  Batch batch;
  {
    Profiler::Scope timed(profiler_, Phase::kData);
    batch = batches_->make(step, comm_.world().rank, comm_.world().size, /*with_pixels=*/false);
  }
  {
    // The whole step is one piece of device work: --profile shows it as the forward.
    Profiler::Scope timed(profiler_, Phase::kForward);
    device_step_->run(batch, acc, fault);
  }
  if (record) {
    *record = {batch.indices.clone(), batch.eps.clone(), device_step_->last_beta(), device_step_->last_loss()};
  }
  ++progress_.global_step;
}

void Trainer::add_sums(torch::Tensor& acc, const StepResult& r, const Batch& batch) {
  Profiler::Scope timed(profiler_, Phase::kData);
  torch::NoGradGuard no_grad;
  acc[kObjective] += r.loss.detach().to(torch::kFloat64) * static_cast<double>(batch.global_rows);
  acc[kBce] += r.terms.bce.detach().to(torch::kFloat64).sum();
  acc[kKld] += r.terms.kld.detach().to(torch::kFloat64).sum();
  acc[kImages] += static_cast<double>(batch.rows());
}

void Trainer::reduce_gradients() {
  Profiler::Scope timed(profiler_, Phase::kAllReduce);
  // Per-step control values travel in the gradient all-reduce (see FlatParameters::Slot).
  if (is_root()) flat_->slot(FlatParameters::kNextBeta).fill_(schedule_.at(progress_.global_step + 1));
  if (stop_requested()) flat_->slot(FlatParameters::kStop).fill_(1.0);
  comm_.allreduce_sum(flat_->flat());
  beta_ = flat_->slot(FlatParameters::kNextBeta).clone();
}

void Trainer::update_parameters() {
  Profiler::Scope timed(profiler_, Phase::kOptimizer);
  auto g = flat_->grads();
  // fp16: whether to skip the step is decided on the device, and counted there.
  const torch::Tensor skip = scaler_.unscale_and_update(g);
  if (config_.grad_clip > 0) clip_grad_norm(g, config_.grad_clip);  // the summed, unscaled gradient
  adam_->step(skip);
  if (skip.defined()) skipped_ += skip;
  ++progress_.global_step;
}

void Trainer::log_interval(int64_t epoch, int64_t done, torch::Tensor& interval) {
  auto sums = interval.clone();
  comm_.allreduce_sum(sums);
  interval.zero_();
  const auto s = sums.to(torch::kCPU);
  const double images = std::max(1.0, s[kImages].item<double>());
  const StepLosses l{s[kObjective].item<double>() / images, s[kBce].item<double>() / images,
                     s[kKld].item<double>() / images, schedule_.at(progress_.global_step - 1)};
  outputs_->log_step(epoch, done, progress_.global_step, l);
}

bool Trainer::must_stop(int64_t epoch, int64_t step) {
  // Every rank looks at the same steps and reads the same summed values.
  const bool last = step + 1 == steps_per_epoch();
  if (!device_.is_cpu() && (step + 1) % kGpuSlotReadEvery != 0 && !last) return false;
  const auto slots = flat_->flat().slice(/*dim=*/0, flat_->numel()).to(torch::kCPU);
  if (slots[FlatParameters::kNonFinite].item<float>() != 0) {  // NaN too: the device step writes objective * 0
    throw std::runtime_error(
        fmt::format("non-finite loss (NaN or inf) at epoch {}, step {}{}: training diverged; "
                    "the last good checkpoint is kept (lower --lr, or try --precision fp32)",
                    epoch, step + 1, device_.is_cpu() ? "" : " or a few steps before"));
  }
  return slots[FlatParameters::kStop].item<float>() > 0 && !last;  // at the epoch's end, the epoch completes
}

void Trainer::show_progress(int64_t epoch, int64_t step, torch::Tensor& total, torch::Tensor& interval) {
  const int64_t done = std::min((step + 1) * config_.batch_size, train_.size());
  if (outputs_->bar_due()) {  // rank 0's own rows: a running estimate, read without a collective
    const auto mine = (total + interval).to(torch::kCPU);
    outputs_->draw_bar(done, mine[kObjective].item<double>() / std::max(1.0, mine[kImages].item<double>()));
  }
  if (config_.log_every > 0 && (step + 1) % config_.log_every == 0) {
    total += interval;
    log_interval(epoch, done, interval);
  }
}

EpochStats Trainer::train_epoch(int64_t epoch) {
  const auto t0 = std::chrono::steady_clock::now();
  begin_epoch(epoch);
  // The same two tensors every epoch: the device step's CUDA graph adds into `interval`.
  torch::Tensor& total = total_;
  torch::Tensor& interval = interval_;
  total.zero_();
  interval.zero_();
  // Resuming mid-epoch: continue at the next step, with the done steps' sums counted once.
  const int64_t first = progress_.step_in_epoch;
  if (first > 0 && is_root()) {
    total.copy_(torch::tensor(std::vector<double>(progress_.partial_sums.begin(), progress_.partial_sums.end()),
                              torch::kFloat64));
  }
  const double seconds_before = first > 0 ? progress_.partial_seconds : 0.0;
  outputs_->begin_epoch(epoch, train_.size());
  // --profile or VAE_DDP_SYNC_DEBUG on a GPU: the GPU operations of kOpsSteps steps, once per run.
  const int64_t ops_from = first + kOpsFrom, ops_to = ops_from + kOpsSteps;
  const bool count_ops = (profiler_.enabled() || sync_debug_ != 0) && !ops_counted_ &&
                         GpuOpCounter::available(device_) && ops_to <= steps_per_epoch();
  GpuOpCounter ops;
  for (int64_t step = first; step < steps_per_epoch(); ++step) {
    if (count_ops && step == ops_from) ops.start();
    {
      // VAE_DDP_SYNC_DEBUG: no host sync inside a step; for the CUDA graph step, from its first
      // replay on (its warm-up and capture set it up once).
      const bool setting_up = device_step_ && !device_step_->captured();
      const SyncDebugScope sync_check(setting_up ? 0 : sync_debug_, device_);
      train_step(step, interval);
    }
    if (count_ops && step + 1 == ops_to) {
      spdlog::info("epoch {} steps {}-{}: {}", epoch, ops_from + 1, ops_to, ops.stop(kOpsSteps).describe());
      ops_counted_ = true;
    }
    const bool stop = must_stop(epoch, step);
    show_progress(epoch, step, total, interval);
    if (stop) return pause_epoch(step, total += interval, seconds_before + seconds_since(t0));
  }
  outputs_->finish_bar();
  if (profiler_.enabled()) spdlog::info("epoch {} {}", epoch, profiler_.report_and_reset(steps_per_epoch() - first));
  EpochStats s = finish_epoch(epoch, total += interval, seconds_before + seconds_since(t0));
  s.skipped_steps = static_cast<int64_t>(skipped_.item<float>());
  return s;
}

EpochStats Trainer::pause_epoch(int64_t step, torch::Tensor& total, double seconds) {
  outputs_->finish_bar();
  comm_.allreduce_sum(total);
  const auto sums = total.to(torch::kCPU);
  for (int i = 0; i < kSums; ++i) progress_.partial_sums[i] = sums[i].item<double>();
  progress_.step_in_epoch = step + 1;
  progress_.partial_seconds = seconds;
  progress_.scaler = scaler_.state();
  EpochStats s;
  s.stopped = true;
  return s;
}

EpochStats Trainer::finish_epoch(int64_t epoch, torch::Tensor& total, double seconds) {
  progress_.epoch = epoch;
  progress_.step_in_epoch = 0;
  progress_.partial_sums = {};
  progress_.partial_seconds = 0;
  progress_.scaler = scaler_.state();
  comm_.allreduce_sum(total);
  const auto sums = total.to(torch::kCPU);
  EpochStats s;
  s.images = static_cast<int64_t>(sums[kImages].item<double>());
  const double images = std::max<double>(1, s.images);
  s.loss = sums[kObjective].item<double>() / images;
  s.bce = sums[kBce].item<double>() / images;
  s.kld = sums[kKld].item<double>() / images;
  s.beta = schedule_.at(progress_.global_step - 1);
  s.first_beta = schedule_.at(std::max<int64_t>(0, progress_.global_step - steps_per_epoch()));
  s.seconds = seconds;
  return s;
}

std::vector<StepRecord> Trainer::trace(int64_t steps) {
  begin_epoch(1);
  torch::Tensor& sums = interval_;
  sums.zero_();
  std::vector<StepRecord> records(static_cast<size_t>(std::min(steps, steps_per_epoch())));
  for (size_t k = 0; k < records.size(); ++k) train_step(static_cast<int64_t>(k), sums, &records[k]);
  return records;
}

RunEnd Trainer::run() {
  const bool nothing_to_do = progress_.epoch >= config_.epochs;
  outputs_->begin_run(/*training=*/!nothing_to_do);
  if (nothing_to_do) {
    spdlog::info("already trained through epoch {} (--epochs {}): nothing to do; raise --epochs to continue",
                 progress_.epoch, config_.epochs);
    return RunEnd::kFinished;
  }
  check_replicas("at start");
  for (int64_t epoch = progress_.epoch + 1; epoch <= config_.epochs; ++epoch) {
    const EpochStats train = train_epoch(epoch);
    if (train.stopped) {
      outputs_->save_last(epoch);
      spdlog::info("stop requested: saved {}/checkpoints/last.pt at epoch {}, step {} of {}", config_.out_dir, epoch,
                   progress_.step_in_epoch, steps_per_epoch());
      return RunEnd::kStopped;
    }
    const EvalResult test =
        evaluate(model_, test_, config_.seed, device_, comm_, config_.binarize == Binarize::kDynamic);
    check_replicas(fmt::format("after epoch {}", epoch));
    outputs_->end_epoch(epoch, train, test);
    // A signal that arrived during evaluation or saving: every rank agrees, the epoch is saved.
    if (allreduce_min_max(comm_.world(), stop_requested() ? 1 : 0).second > 0 && epoch < config_.epochs) {
      spdlog::info("stop requested: stopping after epoch {} (checkpoint saved)", epoch);
      return RunEnd::kStopped;
    }
  }
  return RunEnd::kFinished;
}

}  // namespace vae
