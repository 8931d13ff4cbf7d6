// The device step (`--step graph`): one whole training step, optimizer included, as a fixed
// sequence of ATen ops on buffers allocated at its first run and reused by every later one:
//   gather the batch's rows from the device-resident training set by an index buffer;
//   forward, loss and backward written out (explicit backward GEMMs, bias + ReLU fused
//   through at::_addmm_activation, BCE from logits; the encoder's mu and log sigma^2 heads are
//   one Linear, so one GEMM); the control slots; the gradient all-reduce (none for one rank);
//   fp16's unscale and loss-scale update in place; the clip factor folded into the fused
//   optimizer's grad_scale; Adam/AdamW as one at::_fused_adam(w)_ call with its step count on
//   the device; beta of every global step from a device table, the step counter on the
//   device; the loss sums added into the trainer's sums on the device.
// On CUDA the full batches' sequence is captured once as a CUDA graph (step_graph.h) and
// replayed; the last, partial batch of an epoch runs the same sequence eagerly. On a CPU
// every step runs eagerly: that is how the CPU tests prove it equal to the autograd step.
// It needs libtorch 2.4 or later (the fused Adam and AMP kernels' CPU versions).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include <torch/torch.h>

#include "vae_ddp/base/config.h"
#include "vae_ddp/base/fault_injection.h"
#include "vae_ddp/model/model.h"
#include "vae_ddp/parallel/comm.h"
#include "vae_ddp/parallel/data_parallel.h"
#include "vae_ddp/train/amp.h"
#include "vae_ddp/train/batch.h"
#include "vae_ddp/train/flat_adam.h"
#include "vae_ddp/train/step_graph.h"

namespace vae {

// What the step reads and updates in place: the trainer's.
struct DeviceStepParts {
  VAE* model;
  FlatParameters* flat;
  FlatAdam* adam;
  LossScaler* scaler;
  Communicator* comm;
  torch::Tensor train_images;  // [n, 784] float32 on the device
  torch::Tensor skipped;       // 0-dim float32 on the device: fp16 steps skipped, added to
};

struct DeviceStepOptions {
  Precision precision = Precision::kFP32;  // bf16/fp16: GEMM operands and activations in that dtype,
                                           // the latent and loss math, gradients and Adam in fp32
  double grad_clip = 0;                    // the summed gradient's norm clipped to this (0: off)
  torch::Tensor betas;                     // [steps] float32 on the device: beta of global step s at [s]
  int64_t full_batch = 0;                  // rows of a full global batch: its steps are captured on CUDA
  bool capture = true;                     // false: CUDA runs eagerly too (the GPU test's reference)
};

// Sums the step adds into the trainer's float64 [4] sums tensor, in this order.
enum DeviceStepSum : int64_t { kSumObjective = 0, kSumBce = 1, kSumKld = 2, kSumImages = 3 };

class DeviceStep {
 public:
  DeviceStep(DeviceStepParts parts, DeviceStepOptions options);
  ~DeviceStep();

  // Why the device step does not implement `c` ("" when it does): ReLU, no BatchNorm, no
  // dropout, unconditional, BCE, --binarize none, in a libtorch with the fused kernels; on
  // CUDA with more than one rank, the NCCL backend (a captured all-reduce).
  static std::string not_covered(const Config& c, bool cuda);

  // The global step the next run() is (its beta; Adam's count is the optimizer's own).
  void set_global_step(int64_t step);
  // Every rank stops after the step in which one asked (the kStop slot of the all-reduce).
  void request_stop();
  // One optimizer step on `batch` (BatchMaker::make without pixels: indices and noise), its
  // [objective, bce, kld, images] of this rank's rows added into `sums` (float64 [4]; the
  // same tensor every call once captured). A fault (fault_injection.h) runs that step eagerly.
  void run(const Batch& batch, torch::Tensor& sums, FaultAction fault = FaultAction::kNone);

  // Host reads, for the trace and the tests: the last step's beta and objective (its sum / global rows).
  double last_beta() const;
  double last_loss() const;
  // The CUDA graph of the full batches: captured yet, and its node count (-1: none).
  bool captured() const;
  int64_t graph_nodes() const;

 private:
  struct Shape;  // the buffers for one global batch size, and its graph
  Shape& shape_for(int64_t global_rows, int64_t rows);
  // The sequence itself: `capturing` while a CUDA graph records it.
  void sequence(Shape& s, torch::Tensor& sums, bool capturing, FaultAction fault);

  DeviceStepParts parts_;
  DeviceStepOptions options_;
  torch::ScalarType compute_;  // the GEMMs' dtype
  struct Layer {
    torch::Tensor w, b;        // the parameters (fp32 views of the flat buffer)
    torch::Tensor dw, db;      // their gradients (fp32 views)
    torch::Tensor w_lp, b_lp;  // bf16/fp16: views of the low-precision copy (else w, b)
    torch::Tensor dw_lp, db_lp;
    bool relu = true;
  };
  std::vector<Layer> encoder_, decoder_;
  Layer head_;
  int64_t latent_ = 0;
  torch::Tensor params_lp_, grads_lp_;  // bf16/fp16: [numel] copies of the flat parameters / gradients
  // Per-step scalars on the device, [1] each.
  torch::Tensor step_, beta_, cs_, cb_, found_, inv_scale_, norm_, clip_, stop_;
  std::map<int64_t, std::unique_ptr<Shape>> shapes_;
  Shape* last_ = nullptr;
  void* captured_sums_data_ = nullptr;
};

}  // namespace vae
