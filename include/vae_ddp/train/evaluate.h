// Test-set evaluation: the negative ELBO (beta = 1) in nats per image.
#pragma once

#include <cstdint>
#include <functional>

#include <torch/torch.h>

#include "vae_ddp/data/mnist.h"
#include "vae_ddp/model/model.h"
#include "vae_ddp/parallel/comm.h"

namespace vae {

struct EvalResult {
  double loss = 0;  // bce + kld, mean per image
  double bce = 0;
  double kld = 0;
  int64_t images = 0;
};

// One z per image, as pytorch/examples does. The noise of eval batch k comes from
// (seed, k), so evaluating the same weights twice gives identical numbers. Collective:
// rank r of W evaluates rows r, r+W, ... of every eval batch (with those rows' noise)
// and the sums are reduced, so any world size gives the same result up to summation
// order. Always fp32.
// binarize: the test images are dynamically binarized (binarize_images, from `seed`).
EvalResult evaluate(VAE& model, const Dataset& data, int64_t seed, torch::Device device, Communicator& comm,
                    bool binarize = false);

// The importance-weighted estimate of -log p(x) per image (Burda et al. 2015), in nats:
//   -mean_x log( 1/K sum_k p(x|z_k) p(z_k) / q(z_k|x) ),  z_k ~ q(z|x).
// Never above the ELBO's negative in expectation, and tighter as K grows. Samples are
// drawn and reduced in chunks (a streaming log-sum-exp), so K = 5000 fits in memory. The
// noise of image i comes from (seed, i), so any world size gives the same estimate.
// Collective: rank r of W takes images r, r+W, ...
// Called after each block of images with (images done, all images), on every rank.
using EvalProgress = std::function<void(int64_t done, int64_t total)>;
double importance_weighted_nll(VAE& model, const Dataset& data, int64_t seed, int64_t samples, torch::Device device,
                               Communicator& comm, bool binarize = false, const EvalProgress& progress = {});

}  // namespace vae
