#include "vae_ddp/train/run_outputs.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "vae_ddp/base/fault_injection.h"
#include "vae_ddp/base/rng.h"
#include "vae_ddp/io/files.h"
#include "vae_ddp/train/trainer.h"  // EpochStats
#include "vae_ddp/viz/images.h"
#include "vae_ddp/viz/pictures.h"
#include "vae_ddp/viz/plots.h"

namespace vae {

namespace {

constexpr int64_t kSampleCount = 64;  // 8x8 sample grid
constexpr int64_t kReconCount = 8;    // one row of test images over their reconstructions

std::string epoch_file(const std::string& dir, int64_t epoch, const char* ext) {
  return fmt::format("{}/epoch_{:03d}.{}", dir, epoch, ext);
}

}  // namespace

RunOutputs::RunOutputs(bool writer, const Config& c, VAE& model, const FlatAdam& adam, const TrainProgress& progress,
                       const Dataset& test)
    : writer_(writer),
      config_(c),
      model_(model),
      adam_(adam),
      progress_(progress),
      test_(test),
      recon_(name_of(c.recon_loss)) {
  auto gen = make_generator(c.seed, Stream::kSample);
  sample_z_ = torch::randn({kSampleCount, c.latent_dim}, gen, torch::kFloat32).to(test.images.device());
}

void RunOutputs::begin_run(bool training) {
  if (!writer_) return;
  metrics_ = std::make_unique<MetricsWriter>(config_.out_dir + "/metrics.csv", progress_.epoch, recon_);
  if (training) tb_ = std::make_unique<EventWriter>(config_.out_dir + "/tb");
}

void RunOutputs::begin_epoch(int64_t epoch, int64_t images) {
  epoch_images_ = images;
  bar_.reset();
  if (writer_ && stdout_is_terminal()) bar_ = std::make_unique<ProgressBar>(true, epoch, config_.epochs, images);
}

void RunOutputs::log_step(int64_t epoch, int64_t done_images, int64_t global_step, const StepLosses& l) {
  if (tb_) {
    for (const auto& [tag, v] : {std::pair{std::string("step/loss"), l.loss},
                                 {"step/" + recon_, l.bce},
                                 {std::string("step/kld"), l.kld},
                                 {std::string("step/beta"), l.beta}}) {
      tb_->scalar(tag, v, global_step);
    }
  }
  if (bar_) return;  // on a terminal the bar shows progress instead
  spdlog::info("epoch {} [{:>6}/{} {:3.0f}%]  loss {:8.3f}  {} {:8.3f}  kld {:7.3f}  beta {:.3g}", epoch, done_images,
               epoch_images_, 100.0 * done_images / epoch_images_, l.loss, recon_, l.bce, l.kld, l.beta);
}

void RunOutputs::end_epoch(int64_t epoch, const EpochStats& train, const EvalResult& test) {
  const double ips = train.images / std::max(train.seconds, 1e-9);
  if (writer_) {
    if (config_.sample_every > 0 && (epoch % config_.sample_every == 0 || epoch == config_.epochs)) {
      write_images(epoch);
    }
    metrics_->append(
        {epoch, train.loss, train.bce, train.kld, train.beta, test.loss, test.bce, test.kld, ips, train.seconds});
    if (plots_available()) {
      write_loss_curves(config_.out_dir + "/metrics.csv", config_.out_dir + "/loss_curves.png", recon_);
    }
    const std::pair<std::string, double> scalars[] = {
        {"epoch/train_loss", train.loss}, {"epoch/train_" + recon_, train.bce}, {"epoch/train_kld", train.kld},
        {"epoch/beta", train.beta},       {"epoch/test_loss", test.loss},       {"epoch/test_" + recon_, test.bce},
        {"epoch/test_kld", test.kld},     {"epoch/images_per_s", ips}};
    for (const auto& [tag, v] : scalars) tb_->scalar(tag, v, epoch);
    tb_->flush();
    write_checkpoints(epoch);
  }
  // β: one value, or where the schedule moved during the epoch its first and last step's.
  const std::string beta = train.first_beta == train.beta
                               ? fmt::format("beta {:.3g}", train.beta)
                               : fmt::format("beta {:.3g}→{:.3g}", train.first_beta, train.beta);
  spdlog::info(
      "==> epoch {}/{}  train loss {:.4f} ({} {:.4f}, kld {:.4f}, {})  test loss {:.4f}  "
      "{:.2f} s  {:.0f} img/s{}",
      epoch, config_.epochs, train.loss, recon_, train.bce, train.kld, beta, test.loss, train.seconds, ips,
      train.skipped_steps ? fmt::format("  ({} fp16 steps skipped)", train.skipped_steps) : "");
}

void RunOutputs::save_last(int64_t epoch) {
  if (writer_) save(config_.out_dir + "/checkpoints/last.pt", epoch);
}

void RunOutputs::write_images(int64_t epoch) {
  EvalMode eval(model_);
  auto samples =
      torch::sigmoid(model_->decode(sample_z_, cycling_labels(kSampleCount))).view({-1, kImageSide, kImageSide});
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
    write_latent_map(model_, test_, class_names(config_.dataset), config_.out_dir + "/" + picture_file("latent-map"));
  }
  if (config_.latent_dim == 2) write_manifold(model_, config_.out_dir + "/" + picture_file("manifold"));
  write_interpolations(model_, test_, config_.out_dir + "/" + picture_file("interpolate"));
}

void RunOutputs::save(const std::string& path, int64_t epoch) {
  save_checkpoint(path, model_, adam_, progress_, config_, [&] { maybe_inject_fault(FaultSite::kSave, 0, epoch); });
}

void RunOutputs::write_checkpoints(int64_t epoch) {
  const std::string dir = config_.out_dir + "/checkpoints";
  save(dir + "/last.pt", epoch);
  if (epoch % config_.checkpoint_every != 0 && epoch != config_.epochs) return;
  save(epoch_file(dir, epoch, "pt"), epoch);
  prune_checkpoints(dir, config_.keep_checkpoints);
}

}  // namespace vae
