// The .cu probe (cuda_probe.cu) on the GPU, against the same affine map computed by libtorch
// on the CPU; and the check that a GPU the driver lists is one libtorch can use. Skipped,
// with a message, where no GPU is visible; failed where one is listed but unusable.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

#include <c10/cuda/CUDAStream.h>
#include <torch/torch.h>

#include "test_util.h"

cudaError_t vae_probe_affine(const float* x, float* y, float a, float b, int n, cudaStream_t stream);

namespace {

// True when this process has libtorch's CUDA library mapped (a linker's --as-needed can drop it).
bool libtorch_cuda_loaded() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find("libtorch_cuda") != std::string::npos) return true;
  }
  return false;
}

// Where the driver lists a GPU, libtorch must see it: else every --device cuda run fails.
TEST(CudaProbeTest, GpusTheDriverListsAreUsable) {
  const int listed = vae::testing::GpusListedByNvidiaSmi();
  if (listed == 0) GTEST_SKIP() << "no GPU visible here (nvidia-smi lists none): skipped";
  int runtime_count = -1;
  const cudaError_t rc = cudaGetDeviceCount(&runtime_count);
  ASSERT_TRUE(torch::cuda::is_available())
      << "nvidia-smi lists " << listed << " GPU(s), but libtorch cannot use any: cudaGetDeviceCount says "
      << (rc == cudaSuccess ? std::to_string(runtime_count) + " device(s)" : std::string(cudaGetErrorString(rc)))
      << " (a driver too old for this CUDA runtime?); libtorch_cuda "
      << (libtorch_cuda_loaded() ? "is loaded" : "is not loaded (dropped by the linker's --as-needed?)");
  EXPECT_EQ(static_cast<int>(torch::cuda::device_count()), listed) << "libtorch and nvidia-smi count differently";
}

TEST(CudaProbeTest, KernelFromNvccRunsOnTheGpu) {
  VAE_REQUIRE_GPU();      // without a GPU the .cu probe is compiled and linked, not run
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
