// Test-set evaluation: the negative ELBO (beta = 1) in nats per image.
#pragma once

#include <cstdint>

#include <torch/torch.h>

#include "vae_ddp/comm.h"
#include "vae_ddp/mnist.h"
#include "vae_ddp/model.h"

namespace vae {

struct EvalResult {
  double loss = 0;  // bce + kld, mean per image
  double bce = 0;
  double kld = 0;
  int64_t images = 0;
};

constexpr int64_t kEvalBatch = 1000;

// One z per image, as pytorch/examples does. The noise of eval batch k comes from
// (seed, k), so evaluating the same weights twice gives identical numbers. Collective:
// rank r of W evaluates rows r, r+W, ... of every eval batch (with those rows' noise)
// and the sums are reduced, so any world size gives the same result up to summation
// order. Always fp32.
EvalResult evaluate(VAE& model, const Dataset& data, int64_t seed, torch::Device device, Communicator& comm);

}  // namespace vae
