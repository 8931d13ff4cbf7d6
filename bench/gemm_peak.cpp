// The GEMM ceiling of one training step on this machine: times, through oneDNN (the
// library the CPU fast path uses), exactly the GEMMs a step of the given MLP performs at
// the given batch (forward, input gradients except the first layer's, weight gradients)
// and prints {"gflops_per_s", "gemm_ms_per_step", "flops_per_image"} as JSON.
// Usage: gemm_peak [--batch-size 128] [--hidden-dims 400] [--latent-dim 20] [--threads 1]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "bench_args.h"
#include "vae_ddp/base/config.h"
#include "vae_ddp/model/model.h"
#include "vae_ddp/train/cpu_gemm.h"

namespace {

struct Layer {
  int64_t in, out;
};

// The step's Linear layers, in order: encoder, head (2L wide), decoder.
std::vector<Layer> step_layers(const std::vector<int64_t>& hidden, int64_t latent) {
  std::vector<Layer> layers;
  int64_t prev = vae::kImagePixels;
  for (int64_t h : hidden) layers.push_back({prev, h}), prev = h;
  layers.push_back({prev, 2 * latent});
  prev = latent;
  for (auto it = hidden.rbegin(); it != hidden.rend(); ++it) layers.push_back({prev, *it}), prev = *it;
  layers.push_back({prev, vae::kImagePixels});
  return layers;
}

}  // namespace

int main(int argc, char** argv) {
  vae::Config defaults;
  defaults.threads = 1;
  const vae::Config c = vae::bench::parse_flags(argc, argv, defaults);
  torch::set_num_threads(static_cast<int>(c.threads));
  const int64_t b = c.batch_size;
  const auto layers = step_layers(c.hidden_dims, c.latent_dim);
  std::vector<torch::Tensor> w, x, y;
  for (const auto& l : layers) {
    w.push_back(torch::rand({l.out, l.in}));
    x.push_back(torch::rand({b, l.in}));
    y.push_back(torch::rand({b, l.out}));
  }
  double flops = 0;
  auto step = [&] {
    flops = 0;
    for (size_t i = 0; i < layers.size(); ++i) {
      const auto& l = layers[i];
      auto* W = w[i].data_ptr<float>();
      auto* X = x[i].data_ptr<float>();
      auto* Y = y[i].data_ptr<float>();
      vae::cpu::GemmOp fwd;
      fwd.trans_b = true;
      vae::cpu::gemm(fwd, b, l.out, l.in, X, W, nullptr, Y);  // forward
      vae::cpu::GemmOp dw;
      dw.trans_a = true;
      vae::cpu::gemm(dw, l.out, l.in, b, Y, X, nullptr, W);  // weight gradient
      flops += 4.0 * b * l.in * l.out;
      if (i > 0) {  // input gradient (not needed for the images)
        vae::cpu::gemm(vae::cpu::GemmOp{}, b, l.in, l.out, Y, W, nullptr, X);
        flops += 2.0 * b * l.in * l.out;
      }
    }
  };
  for (int i = 0; i < 30; ++i) step();
  const int reps = 300;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) step();
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
  std::printf(
      "{\"gflops_per_s\": %.1f, \"gemm_ms_per_step\": %.4f, \"flops_per_image\": %.0f, \"batch\": %lld, "
      "\"threads\": %lld}\n",
      flops / sec / 1e9, sec * 1e3, flops / b, static_cast<long long>(b), static_cast<long long>(c.threads));
  return 0;
}
