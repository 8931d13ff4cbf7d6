// The .cu probe (cuda_probe.cu) on the GPU, against the same affine map computed by libtorch
// on the CPU. Skipped, with a message, where no GPU is visible.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <c10/cuda/CUDAStream.h>
#include <torch/torch.h>

cudaError_t vae_probe_affine(const float* x, float* y, float a, float b, int n, cudaStream_t stream);

namespace {

TEST(CudaProbeTest, KernelFromNvccRunsOnTheGpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no GPU here: the .cu probe is compiled and linked, not run";
  const int n = 1000003;  // not a multiple of the block size
  const auto x = torch::randn({n});
  const auto gx = x.to(torch::kCUDA);
  auto gy = torch::empty_like(gx);
  ASSERT_EQ(vae_probe_affine(gx.data_ptr<float>(), gy.data_ptr<float>(), 2.5f, -1.0f, n,
                             c10::cuda::getCurrentCUDAStream().stream()),
            cudaSuccess);
  EXPECT_TRUE(torch::allclose(gy.cpu(), 2.5 * x - 1.0, /*rtol=*/1e-6, /*atol=*/1e-6));
}

}  // namespace
