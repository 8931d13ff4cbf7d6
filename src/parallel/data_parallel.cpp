#include "vae_ddp/parallel/data_parallel.h"

#include <fmt/format.h>

#include "vae_ddp/base/rng.h"

namespace vae {

torch::Tensor epoch_permutation(int64_t n, int64_t seed, int64_t epoch) {
  auto gen = make_generator(seed, Stream::kShuffle, epoch);
  return torch::randperm(n, gen, torch::kInt64);
}

torch::Tensor shard_rows(const torch::Tensor& global, int rank, int world) {
  return global.slice(/*dim=*/0, rank, global.size(0), world);
}

int64_t shard_size(int64_t rows, int rank, int world) { return rank < rows ? (rows - rank + world - 1) / world : 0; }

FlatParameters::FlatParameters(const std::vector<torch::Tensor>& params) {
  TORCH_CHECK(!params.empty(), "FlatParameters: no parameters");
  for (const auto& p : params) {
    TORCH_CHECK(p.is_contiguous() && p.scalar_type() == torch::kFloat32, "FlatParameters: parameters must be fp32");
    numel_ += p.numel();
  }
  const auto options = params.front().options().requires_grad(false);
  params_ = torch::empty({numel_}, options);
  grads_and_slots_ = torch::zeros({numel_ + kSlots}, options);
  torch::NoGradGuard no_grad;
  int64_t offset = 0;
  for (const auto& p : params) {
    auto value = params_.slice(/*dim=*/0, offset, offset + p.numel()).view(p.sizes());
    value.copy_(p);
    auto& param = const_cast<torch::Tensor&>(p);
    param.set_data(value);
    // Autograd accumulates into a defined .grad() in place, so gradients land here.
    param.mutable_grad() = grads_and_slots_.slice(/*dim=*/0, offset, offset + p.numel()).view(p.sizes());
    offset += p.numel();
  }
}

void broadcast_parameters(const std::vector<torch::Tensor>& params, Communicator& comm) {
  if (comm.world().size == 1) return;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> flat_views;
  for (const auto& p : params) flat_views.push_back(p.reshape({-1}));
  auto flat = torch::cat(flat_views);
  comm.broadcast(flat, /*root=*/0);
  int64_t offset = 0;
  for (const auto& p : params) {
    const_cast<torch::Tensor&>(p).copy_(flat.slice(/*dim=*/0, offset, offset + p.numel()).view(p.sizes()));
    offset += p.numel();
  }
}

int64_t parameter_checksum(const std::vector<torch::Tensor>& params) {
  torch::NoGradGuard no_grad;
  auto sum = torch::zeros({}, params.front().options().dtype(torch::kInt64));
  int64_t offset = 0;
  for (const auto& p : params) {
    auto bits = p.detach().reshape({-1}).view(torch::kInt32).to(torch::kInt64);  // the float's bit pattern
    // Weight each element by its position modulo a prime, so a swap also changes the sum.
    auto weight = torch::arange(offset, offset + p.numel(), bits.options()).remainder(1000003) + 1;
    sum += (bits * weight).sum();
    offset += p.numel();
  }
  return sum.item<int64_t>();
}

void check_replicas_agree(const World& w, const std::vector<torch::Tensor>& params, const std::string& when) {
  const int64_t mine = parameter_checksum(params);
  const auto [lo, hi] = allreduce_min_max(w, mine);
  run_collectively(w, [&, lo = lo, hi = hi] {
    if (lo == hi) return;
    throw std::runtime_error(
        fmt::format("ranks diverged: parameter checksums differ across ranks {} (this rank {:#x}, "
                    "range {:#x}..{:#x}); stopping rather than training inconsistent replicas",
                    when, static_cast<uint64_t>(mine), static_cast<uint64_t>(lo), static_cast<uint64_t>(hi)));
  });
}

}  // namespace vae
