// What a trained VAE looks like: the latent map, the 2-D manifold, interpolation strips
// and the loss curves, as PNG files. Rank 0 writes them during training; the
// latent-map, manifold and interpolate subcommands write them from a checkpoint.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "vae_ddp/data/mnist.h"
#include "vae_ddp/model/model.h"

namespace vae {

// Test-set posterior means as a scatter coloured by class with a legend: the means
// themselves for a 2-D latent, else their first two principal components (labelled
// with the share of variance each explains).
// The file each picture has in a run's directory, which the picture commands also write
// by default: latent-map -> latent_map.png, manifold -> manifold.png, interpolate ->
// interpolation.png.
std::string picture_file(const std::string& kind);

void write_latent_map(VAE& model, const Dataset& data, const std::vector<std::string>& class_names,
                      const std::string& path);

// Points of the latent map: [N, 2] (the means, or PCA scores) and the axis labels.
struct LatentProjection {
  torch::Tensor points;
  std::string xlabel, ylabel;
};
LatentProjection project_latent_means(VAE& model, const Dataset& data);

// Kingma & Welling's figure: decodes a side x side grid of z whose coordinates are the
// standard normal's quantiles at (i + 0.5) / side (so the grid covers the prior's
// mass evenly); z2 grows upwards. A conditional model draws `label` (>= 0). Throws
// UsageError unless the latent is 2-D.
void write_manifold(VAE& model, const std::string& path, int64_t side = 20, int64_t label = 0);
torch::Tensor manifold_grid(int64_t side);  // [side * side, 2], row-major from top-left

// Rows of interpolation: test images 2i and 2i+1 at both ends, between them the decoded
// points (1 - t) mu_a + t mu_b for `steps` values of t in [0, 1]. A conditional model
// decodes with the first image's label.
void write_interpolations(VAE& model, const Dataset& data, const std::string& path, int64_t pairs = 8,
                          int64_t steps = 10);

// Loss curves from metrics.csv, four panels: train and test loss, BCE and KLD, and beta.
void write_loss_curves(const std::string& metrics_csv, const std::string& path, const std::string& recon = "bce");

}  // namespace vae
