// A kernel compiled by CMake's CUDA language with the toolkit's nvcc, under the flags a
// CUDA libtorch's CMake config sets (TORCH_CUDA_ARCH_LIST, sm_90 + PTX by default). Without
// a GPU it proves on every CI run that .cu code builds and links into this project; on a GPU
// (cuda_probe_test) that it loads and runs on the device libtorch uses.
#include <cuda_runtime.h>

namespace {

__global__ void affine_kernel(const float* x, float* y, float a, float b, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i] + b;
}

}  // namespace

// y[i] = a * x[i] + b for i < n, on `stream`; returns the launch's error code.
cudaError_t vae_probe_affine(const float* x, float* y, float a, float b, int n, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  affine_kernel<<<(n + 255) / 256, 256, 0, stream>>>(x, y, a, b, n);
  return cudaGetLastError();
}
