#include "vae_ddp/viz/pictures.h"

#include <fmt/format.h>

#include "vae_ddp/base/errors.h"
#include "vae_ddp/io/metrics.h"
#include "vae_ddp/viz/images.h"
#include "vae_ddp/viz/plots.h"

namespace vae {

namespace {

// Posterior means of every image, [N, latent] float64 on the CPU, in eval mode.
torch::Tensor posterior_means(VAE& model, const Dataset& data) {
  EvalMode eval(model);
  const auto device = model->parameters().front().device();
  std::vector<torch::Tensor> chunks;
  for (int64_t start = 0; start < data.size(); start += kEvalBatch) {
    const int64_t end = std::min(data.size(), start + kEvalBatch);
    auto x = data.images.slice(0, start, end).to(device);
    chunks.push_back(model->encode(x, {data.labels.slice(0, start, end).to(device)}).first.to(torch::kCPU));
  }
  return torch::cat(chunks).to(torch::kFloat64);
}

std::vector<double> column(const torch::Tensor& t, int64_t c) {
  auto col = t.select(1, c).contiguous();
  return {col.data_ptr<double>(), col.data_ptr<double>() + col.numel()};
}

Series series(const std::string& name, const std::vector<EpochMetrics>& rows, double EpochMetrics::*field) {
  Series s{name, {}, {}};
  for (const auto& r : rows) {
    s.x.push_back(static_cast<double>(r.epoch));
    s.y.push_back(r.*field);
  }
  return s;
}

}  // namespace

LatentProjection project_latent_means(VAE& model, const Dataset& data) {
  const auto means = posterior_means(model, data);
  if (means.size(1) == 2) return {means, "z1 (posterior mean)", "z2 (posterior mean)"};
  if (means.size(1) == 1) {
    return {torch::cat({means, torch::zeros_like(means)}, 1), "z1 (posterior mean)", "(latent is 1-D)"};
  }
  const auto centered = means - means.mean(0, /*keepdim=*/true);
  auto [u, s, vh] = torch::linalg_svd(centered, /*full_matrices=*/false);
  const auto share = s.square() / s.square().sum();
  return {torch::matmul(centered, vh.slice(0, 0, 2).t()),
          fmt::format("PC1 of the posterior means ({:.0f}% of variance)", 100 * share[0].item<double>()),
          fmt::format("PC2 ({:.0f}% of variance)", 100 * share[1].item<double>())};
}

void write_latent_map(VAE& model, const Dataset& data, const std::vector<std::string>& class_names,
                      const std::string& path) {
  const auto p = project_latent_means(model, data);
  Scatter s;
  s.title = fmt::format("Latent map: {} test images by class", data.size());
  s.xlabel = p.xlabel;
  s.ylabel = p.ylabel;
  s.x = column(p.points, 0);
  s.y = column(p.points, 1);
  const auto labels = data.labels.to(torch::kCPU).contiguous();
  s.group.assign(labels.data_ptr<int64_t>(), labels.data_ptr<int64_t>() + labels.numel());
  s.group_names = class_names;
  write_scatter_plot(path, s);
}

torch::Tensor manifold_grid(int64_t side) {
  auto q = torch::special::ndtri((torch::arange(side, torch::kFloat64) + 0.5) / static_cast<double>(side));
  auto z1 = q.repeat({side});                   // columns: left to right
  auto z2 = q.flip(0).repeat_interleave(side);  // rows: top is the largest z2
  return torch::stack({z1, z2}, 1).to(torch::kFloat32);
}

void write_manifold(VAE& model, const std::string& path, int64_t side, int64_t label) {
  if (model->latent_dim() != 2) {
    throw UsageError(
        fmt::format("the manifold needs a 2-D latent space; this model has --latent-dim {}", model->latent_dim()));
  }
  torch::Tensor images;
  {
    EvalMode eval(model);
    auto z = manifold_grid(side).to(model->parameters().front().device());
    auto labels = torch::full({side * side}, label, torch::kInt64);
    images = torch::sigmoid(model->decode(z, {labels})).view({-1, kImageSide, kImageSide});
  }
  write_grid_png(path, images, side);
}

void write_interpolations(VAE& model, const Dataset& data, const std::string& path, int64_t pairs, int64_t steps) {
  pairs = std::min(pairs, data.size() / 2);
  if (pairs <= 0) throw UsageError("interpolation needs at least two test images");
  EvalMode eval(model);
  const auto device = model->parameters().front().device();
  auto x = data.images.slice(0, 0, 2 * pairs).to(device).view({pairs, 2, kImagePixels});
  auto y = data.labels.slice(0, 0, 2 * pairs).to(device).view({pairs, 2});
  auto mu = model->encode(x.reshape({-1, kImagePixels}), {y.reshape(-1)}).first.view({pairs, 2, -1});
  auto t = torch::linspace(0, 1, steps, torch::dtype(torch::kFloat32).device(device)).view({1, steps, 1});
  auto z = mu.select(1, 0).unsqueeze(1) * (1 - t) + mu.select(1, 1).unsqueeze(1) * t;  // [pairs, steps, L]
  auto labels = y.select(1, 0).repeat_interleave(steps);
  auto decoded = torch::sigmoid(model->decode(z.reshape({pairs * steps, -1}), {labels})).view({pairs, steps, -1});
  auto rows =
      torch::cat({x.select(1, 0).unsqueeze(1), decoded, x.select(1, 1).unsqueeze(1)}, 1);  // [pairs, steps+2, 784]
  write_grid_png(path, rows.reshape({-1, kImageSide, kImageSide}), steps + 2);
}

std::string picture_file(const std::string& kind) {
  if (kind == "latent-map") return "latent_map.png";
  if (kind == "interpolate") return "interpolation.png";
  return kind + ".png";
}

void write_loss_curves(const std::string& metrics_csv, const std::string& path, const std::string& recon) {
  const auto rows = read_metrics(metrics_csv);
  using M = EpochMetrics;
  const bool nats = recon == "bce";  // MSE is a squared error, not a log-likelihood
  const std::string units = nats ? "nats per image" : "per image";
  write_line_plot(path, {
                            {nats ? "Loss (negative ELBO, beta-weighted in training)"
                                  : "Loss (squared error + beta * KL in training)",
                             "epoch",
                             units,
                             {series("train", rows, &M::train_loss), series("test", rows, &M::test_loss)}},
                            {nats ? "Reconstruction term (BCE)" : "Reconstruction term (MSE, summed over pixels)",
                             "epoch",
                             units,
                             {series("train", rows, &M::train_bce), series("test", rows, &M::test_bce)}},
                            {"KL divergence (KLD)",
                             "epoch",
                             "nats per image",
                             {series("train", rows, &M::train_kld), series("test", rows, &M::test_kld)}},
                            {"KL weight", "epoch", "beta", {series("beta", rows, &M::beta)}},
                        });
}

}  // namespace vae
