#include "vae_ddp/train/step_graph.h"

#include <stdexcept>

#include <fmt/format.h>

#ifdef VAE_TORCH_CUDA
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAEvent.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#endif

namespace vae {

#ifdef VAE_TORCH_CUDA

namespace {

#define CUDA_CHECK(call) cuda_check((call), #call, __FILE__, __LINE__)

void cuda_check(cudaError_t rc, const char* call, const char* file, int line) {
  if (rc == cudaSuccess) return;
  throw std::runtime_error(fmt::format("CUDA error in {} at {}:{}: {}", call, file, line, cudaGetErrorString(rc)));
}

}  // namespace

struct StepGraph::Impl {
  explicit Impl(torch::Device d) : device(d), side(c10::cuda::getStreamFromPool(/*isHighPriority=*/false, d.index())) {}
  torch::Device device;
  c10::cuda::CUDAStream side;  // warm-up, capture and replay run here
  c10::cuda::CUDAEvent before, after;
  std::unique_ptr<at::cuda::CUDAGraph> graph;
  int runs = 0;
  int64_t nodes = -1;
};

StepGraph::StepGraph(torch::Device device) : impl_(device.is_cuda() ? std::make_unique<Impl>(device) : nullptr) {}
StepGraph::~StepGraph() = default;

void StepGraph::run(const std::function<void(bool)>& work) {
  if (!impl_) {
    work(false);
    return;
  }
  Impl& g = *impl_;
  const c10::cuda::CUDAStream current = c10::cuda::getCurrentCUDAStream(g.device.index());
  g.before.record(current);
  g.before.block(g.side);  // the side stream waits for what the step reads (copies into its buffers)
  {
    c10::cuda::CUDAStreamGuard on_side(g.side);
    if (g.runs < kWarmupRuns) {
      work(false);
    } else if (!g.graph) {
      // keep_graph: the captured graph stays readable (its node count) after instantiation.
      g.graph = std::make_unique<at::cuda::CUDAGraph>(/*keep_graph=*/true);
      // Thread-local: the NCCL watchdog's thread may query events while this one captures.
      g.graph->capture_begin(/*pool=*/{0, 0}, cudaStreamCaptureModeThreadLocal);
      work(true);
      g.graph->capture_end();
      size_t n = 0;
      CUDA_CHECK(cudaGraphGetNodes(g.graph->raw_cuda_graph(), nullptr, &n));
      g.nodes = static_cast<int64_t>(n);
      g.graph->replay();
    } else {
      g.graph->replay();
    }
  }
  g.after.record(g.side);
  g.after.block(current);  // later work on the current stream sees this step's results
  ++g.runs;
}

bool StepGraph::captured() const { return impl_ && impl_->graph != nullptr; }
int64_t StepGraph::node_count() const { return impl_ ? impl_->nodes : -1; }
bool step_graph_can_capture() { return true; }

#else  // a libtorch without CUDA: every device runs the work eagerly

struct StepGraph::Impl {};

StepGraph::StepGraph(torch::Device device) {
  if (device.is_cuda()) throw std::runtime_error("StepGraph: this build's libtorch has no CUDA");
}
StepGraph::~StepGraph() = default;
void StepGraph::run(const std::function<void(bool)>& work) { work(false); }
bool StepGraph::captured() const { return false; }
int64_t StepGraph::node_count() const { return -1; }
bool step_graph_can_capture() { return false; }

#endif

}  // namespace vae
