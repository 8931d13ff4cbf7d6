// The CPU fast path's step alone, without data, all-reduce or logging: per-step time of
// CpuStep::run (forward, backward and the sum of the chunks' gradients) and of the fused
// Adam update, for fp32 and bf16 GEMMs, with the batch's rows split one chunk per thread
// ("split") and not split (one chunk, oneDNN/ATen splitting each GEMM across the threads).
// The variants take turns, round after round, so a noisy machine treats them alike; it
// prints one JSON line per variant with the median and min over the rounds.
// Usage: step_bench [--batch-size 128] [--hidden-dims 400] [--latent-dim 20] [--threads 1]
//                   [--epochs 15 (rounds, of 40 steps per variant each)]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "bench_args.h"
#include "vae_ddp/model/model.h"
#include "vae_ddp/parallel/data_parallel.h"
#include "vae_ddp/train/cpu_gemm.h"
#include "vae_ddp/train/cpu_step.h"
#include "vae_ddp/train/flat_adam.h"

namespace {

struct Variant {
  std::string name;
  vae::CpuStepOptions options;
  vae::CpuStep step;  // built once: its scratch gradients are allocated in the warm-up round
  std::vector<double> step_ms, adam_ms;
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  vae::Config defaults;
  defaults.threads = 1;
  defaults.epochs = 15;
  const int64_t steps = 40;
  const vae::Config c = vae::bench::parse_flags(argc, argv, defaults);
  torch::set_num_threads(static_cast<int>(c.threads));
  torch::manual_seed(0);
  vae::VAE model(c.hidden_dims, c.latent_dim);
  vae::FlatParameters flat(model->parameters());
  vae::FlatAdam adam(flat.params(), flat.grads(), vae::AdamOptions{});
  const int64_t b = c.batch_size;
  const auto x = torch::rand({b, vae::kImagePixels}).bernoulli(), eps = torch::randn({b, c.latent_dim});

  std::vector<Variant> variants;
  for (bool bf16 : {false, true}) {
    for (bool split : {true, false}) {
      vae::CpuStepOptions o;
      o.bf16 = bf16;
      if (!split) o.rows_per_chunk = b + 1;
      variants.push_back(
          {std::string(bf16 ? "bf16" : "fp32") + (split ? " split" : " one chunk"), o, vae::CpuStep(model, o), {}, {}});
    }
  }
  using clock = std::chrono::steady_clock;
  auto ms_since = [](clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(clock::now() - t0).count();
  };
  for (int64_t round = 0; round <= c.epochs; ++round) {  // round 0 warms up
    for (auto& v : variants) {
      double run = 0, update = 0;
      for (int64_t s = 0; s < steps; ++s) {
        auto t0 = clock::now();
        v.step.run(x, eps, /*beta=*/1.0, b);
        run += ms_since(t0);
        t0 = clock::now();
        adam.step();
        update += ms_since(t0);
      }
      if (round == 0) continue;
      v.step_ms.push_back(run / static_cast<double>(steps));
      v.adam_ms.push_back(update / static_cast<double>(steps));
    }
  }
  for (const auto& v : variants) {
    std::printf(
        "{\"variant\": \"%s\", \"threads\": %lld, \"batch\": %lld, \"step_ms\": %.3f, \"step_ms_min\": %.3f, "
        "\"adam_ms\": %.3f, \"chunks\": %lld, \"bf16_gemms\": \"%s\"}\n",
        v.name.c_str(), static_cast<long long>(c.threads), static_cast<long long>(b), median(v.step_ms),
        *std::min_element(v.step_ms.begin(), v.step_ms.end()), median(v.adam_ms),
        static_cast<long long>(vae::CpuStep::chunks_for(b, c.threads, v.options.rows_per_chunk)),
        !v.options.bf16                ? "-"
        : vae::cpu::gemm_bf16_native() ? "native"
                                       : "emulated");
  }
  return 0;
}
