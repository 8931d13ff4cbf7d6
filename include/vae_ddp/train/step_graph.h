// A fixed sequence of device work run once per training step: on CUDA, warmed up and then
// captured once as a CUDA graph on a side stream and replayed from there on; on any other
// device, run eagerly each time. The work must use only tensors allocated before the capture
// that stay alive (and in place) for the graph's life, and must not read anything on the host.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include <torch/torch.h>

namespace vae {

class StepGraph {
 public:
  // Eager runs on the capture stream before the capture (as torch.cuda.make_graphed_callables).
  static constexpr int kWarmupRuns = 3;

  explicit StepGraph(torch::Device device);
  ~StepGraph();
  StepGraph(const StepGraph&) = delete;
  StepGraph& operator=(const StepGraph&) = delete;

  // Runs `work` once: `work(capturing)` is called eagerly (capturing false) for the warm-up
  // runs and on a non-CUDA device; on CUDA the next call captures it (capturing true) and
  // replays the graph, and every later call only replays it (`work` is not called).
  // Stream order: after everything already queued on the current stream, before anything
  // queued on it afterwards.
  void run(const std::function<void(bool capturing)>& work);

  bool captured() const;
  // The captured graph's nodes (kernels, copies, memsets, the collective); -1 before a capture.
  int64_t node_count() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// True in a build whose libtorch has CUDA (StepGraph captures there).
bool step_graph_can_capture();

}  // namespace vae
