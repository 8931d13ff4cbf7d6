// Dense row-major GEMMs on the CPU through oneDNN's matmul (Debian's libdnnl, the library
// libtorch itself links): its AVX-512 brgemm kernels run these MLP shapes at about twice
// the speed of libtorch's fp32 addmm (OpenBLAS here). Primitives are built once per shape
// and reused.
#pragma once

#include <cstdint>

namespace vae::cpu {

struct GemmOp {
  bool trans_a = false;     // A is stored [K, M] and used transposed
  bool trans_b = false;     // B is stored [N, K] and used transposed (a torch Linear weight)
  bool relu = false;        // C = max(C, 0) after the bias
  bool accumulate = false;  // C += result instead of C = result
  bool bf16 = false;        // A and B rounded to bf16 (to nearest even), products summed in fp32
};

// C[M, N] = op(A)[M, K] · op(B)[K, N] (+ bias[N]) with the options in `op`. All fp32,
// contiguous row-major; `bias` may be null. Runs on the caller's OpenMP thread count, or on
// the calling thread alone inside a parallel region; several threads may call it at once.
// With `op.bf16` the GEMM multiplies A and B as bf16 and accumulates in fp32 (C and the bias
// stay fp32): on bf16 hardware (AVX512-BF16, AMX) as bf16 matmuls, elsewhere emulated
// (operands rounded, then an fp32 GEMM: the same numbers up to the order of the sums, at
// about fp32's speed).
void gemm(const GemmOp& op, int64_t m, int64_t n, int64_t k, const float* a, const float* b, const float* bias,
          float* c);

// The library the GEMMs run on in this build: "oneDNN" or "ATen".
const char* gemm_library();

// Whether bf16 GEMMs run as bf16 matmuls here (false: emulated, see gemm()).
bool gemm_bf16_native();

}  // namespace vae::cpu
