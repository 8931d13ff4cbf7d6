// cpu_gemm.h through ATen (at::mm/addmm: MKL in PyTorch's own libtorch builds), for a
// libtorch that carries its own oneDNN inside: with one of those, Debian's oneDNN cannot be
// used in the same process (see CMakeLists.txt, VAE_CPU_GEMM). Same contract as the oneDNN
// version: C = op(A) op(B) (+ bias) (+ C), then ReLU. bf16 is emulated here (operands
// rounded to bf16, an fp32 GEMM): ATen's bf16 matmul rounds its output to bf16 too.
#include "vae_ddp/train/cpu_gemm.h"

#include <torch/torch.h>

namespace vae::cpu {

void gemm(const GemmOp& op, int64_t m, int64_t n, int64_t k, const float* a, const float* b, const float* bias,
          float* c) {
  torch::NoGradGuard no_grad;
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  // The operands are only read; from_blob wraps them without copying.
  auto A = torch::from_blob(const_cast<float*>(a), op.trans_a ? std::vector<int64_t>{k, m} : std::vector<int64_t>{m, k},
                            f32);
  auto B = torch::from_blob(const_cast<float*>(b), op.trans_b ? std::vector<int64_t>{n, k} : std::vector<int64_t>{k, n},
                            f32);
  if (op.bf16) {
    A = A.to(torch::kBFloat16).to(torch::kFloat32);
    B = B.to(torch::kBFloat16).to(torch::kFloat32);
  }
  if (op.trans_a) A = A.t();  // [M, K]
  if (op.trans_b) B = B.t();  // [K, N]
  auto C = torch::from_blob(c, {m, n}, f32);
  if (op.accumulate) {
    C.addmm_(A, B);
    if (bias) C.add_(torch::from_blob(const_cast<float*>(bias), {n}, f32));
  } else if (bias) {
    at::addmm_out(C, torch::from_blob(const_cast<float*>(bias), {n}, f32), A, B);
  } else {
    at::mm_out(C, A, B);
  }
  if (op.relu) C.relu_();
}

const char* gemm_library() { return "ATen"; }

bool gemm_bf16_native() { return false; }

}  // namespace vae::cpu
