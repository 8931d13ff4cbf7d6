// A model with the flat buffers, optimizer and loss scaler the trainer would hold, and a
// device step over them: what device_step_test (CPU) and device_step_gpu_test share.
#pragma once

#include <memory>
#include <vector>

#include "test_util.h"
#include "vae_ddp/train/device_step.h"

namespace vae::testing {

struct DeviceStepRig {
  DeviceStepRig(const std::vector<int64_t>& hidden, int64_t latent, AdamOptions adam, Precision precision,
                torch::Device device = torch::kCPU)
      : model(hidden, latent),
        flat((model->to(device), model->parameters())),
        adam(flat.params(), flat.grads(), adam),
        scaler(precision == Precision::kFP16, device),
        skipped(torch::zeros({}, torch::TensorOptions().device(device))) {}
  // A step over `images` (on the model's device) with a constant beta; global batches of
  // `full_batch` rows are the ones a GPU captures unless `capture` is false.
  std::unique_ptr<DeviceStep> Step(Precision precision, const torch::Tensor& images, double beta, double clip = 0,
                                   int64_t full_batch = 40, bool capture = true) {
    DeviceStepOptions o;
    o.precision = precision;
    o.grad_clip = clip;
    o.betas = torch::full({1000}, beta, torch::TensorOptions().device(images.device()));
    o.full_batch = full_batch;
    o.capture = capture;
    return std::make_unique<DeviceStep>(DeviceStepParts{&model, &flat, &adam, &scaler, &LocalComm(), images, skipped},
                                        o);
  }
  VAE model;
  FlatParameters flat;
  FlatAdam adam;
  LossScaler scaler;
  torch::Tensor skipped;
};

}  // namespace vae::testing
