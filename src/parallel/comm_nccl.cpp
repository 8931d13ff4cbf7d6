// NCCL backend: CUDA tensors. Rank 0 makes the ncclUniqueId, MPI broadcasts it, every
// rank binds its GPU and joins with ncclCommInitRank. Collectives are enqueued on the
// stream the compute uses, so stream order (not a host sync) puts each all-reduce
// after the backward pass that filled its buffer and before the optimizer that reads
// it. CUDA events recorded before and after each collective let the watchdog see one that
// the GPU has reached but that never completes (the deadline counts from the first, so a
// host running steps ahead does not shorten it); it also polls ncclCommGetAsyncError, and
// on either it calls ncclCommAbort and ends the job. Its thread binds this rank's GPU.
//
// Only the CUDA runtime and NCCL headers are used here, not ATen's CUDA headers, so
// this file compiles and links against the CUDA toolkit even when libtorch is CPU-only.
#include "vae_ddp/parallel/comm.h"

#include "vae_ddp/base/errors.h"
#include "vae_ddp/base/fault_injection.h"

#ifdef VAE_WITH_NCCL

#include <atomic>
#include <cstring>
#include <deque>
#include <mutex>
#include <vector>

#include <cuda_runtime.h>
#include <fmt/format.h>
#include <nccl.h>

#ifdef VAE_TORCH_CUDA
#include <c10/cuda/CUDAStream.h>
#endif

#include "vae_ddp/parallel/watchdog.h"

namespace vae {

namespace {

#define CUDA_CHECK(call) cuda_check((call), #call, __FILE__, __LINE__)
#define NCCL_CHECK(call) nccl_check((call), #call, __FILE__, __LINE__)

void cuda_check(cudaError_t rc, const char* call, const char* file, int line) {
  if (rc == cudaSuccess) return;
  throw std::runtime_error(fmt::format("CUDA error in {} at {}:{}: {}", call, file, line, cudaGetErrorString(rc)));
}

void nccl_check(ncclResult_t rc, const char* call, const char* file, int line) {
  if (rc == ncclSuccess) return;
  throw std::runtime_error(fmt::format("NCCL error in {} at {}:{}: {} ({})", call, file, line, ncclGetErrorString(rc),
                                       ncclGetLastError(nullptr)));
}

ncclDataType_t nccl_type(const torch::Tensor& t) { return dtype_code(t, "NCCL", ncclFloat32, ncclFloat64, ncclInt64); }

// The stream libtorch computes on for `device`: the collectives go there.
cudaStream_t compute_stream(int device) {
#ifdef VAE_TORCH_CUDA
  return c10::cuda::getCurrentCUDAStream(static_cast<c10::DeviceIndex>(device)).stream();
#else
  (void)device;
  return nullptr;  // the legacy default stream; a CPU-only libtorch never gets here with CUDA tensors
#endif
}

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(const World& w, int device, std::chrono::seconds timeout) : Communicator(w), device_(device) {
    ncclUniqueId id;
    std::memset(&id, 0, sizeof(id));
    // Each rank's own part first, agreed on before the broadcast: a rank that cannot bind
    // its GPU ends every rank with its error instead of leaving rank 0 in MPI_Bcast.
    run_collectively(w, [&] {
      maybe_inject_fault(FaultSite::kCommSetup, w.rank, 0);
      CUDA_CHECK(cudaSetDevice(device_));
      if (w.rank == 0) NCCL_CHECK(ncclGetUniqueId(&id));
    });
    std::string bytes(reinterpret_cast<const char*>(&id), sizeof(id));
    broadcast_bytes(w, bytes, /*root=*/0);
    std::memcpy(&id, bytes.data(), sizeof(id));
    watchdog_ = std::make_unique<Watchdog>(
        w, timeout, [this] { return poll(); }, [this] { abort_comm(); });
    {
      Watchdog::Scope watch(*watchdog_, "ncclCommInitRank");
      NCCL_CHECK(ncclCommInitRank(&comm_, w.size, id, w.rank));
    }
    ready_ = true;
  }

  ~NcclCommunicator() override {
    watchdog_.reset();  // stop polling before the communicator goes away
    if (comm_) {
      ncclCommFinalize(comm_);  // best effort in a destructor: the job is ending
      ncclCommDestroy(comm_);
    }
    for (auto& p : pending_) {
      cudaEventDestroy(p.start);
      cudaEventDestroy(p.done);
    }
    for (auto e : free_events_) cudaEventDestroy(e);
  }

  void allreduce_sum(torch::Tensor& t) override {
    check_tensor(t);
    const cudaStream_t stream = compute_stream(device_);
    const cudaEvent_t start = record(stream);
    if (maybe_inject_fault(FaultSite::kCollective, world_.rank, allreduces_++) == FaultAction::kStallCollective) {
      // The GPU reaches the all-reduce and stops there: the stream waits on a host function
      // that never returns, as behind a peer that stopped answering.
      CUDA_CHECK(cudaLaunchHostFunc(
          stream, [](void*) { stall_forever(); }, nullptr));
    }
    NCCL_CHECK(ncclAllReduce(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()), nccl_type(t), ncclSum, comm_,
                             stream));
    track(stream, start, "NCCL all-reduce");
  }

  void allreduce_sum_captured(torch::Tensor& t) override {
    check_tensor(t);
    NCCL_CHECK(ncclAllReduce(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()), nccl_type(t), ncclSum, comm_,
                             compute_stream(device_)));
  }

  void watch_begin() override { watched_start_ = record(compute_stream(device_)); }

  void watch_end(const char* what) override {
    if (watched_start_ == nullptr) return;
    track(compute_stream(device_), watched_start_, what);
    watched_start_ = nullptr;
  }

  void broadcast(torch::Tensor& t, int root) override {
    check_tensor(t);
    const cudaStream_t stream = compute_stream(device_);
    const cudaEvent_t start = record(stream);
    NCCL_CHECK(
        ncclBroadcast(t.data_ptr(), t.data_ptr(), static_cast<size_t>(t.numel()), nccl_type(t), root, comm_, stream));
    track(stream, start, "NCCL broadcast");
  }

  std::string name() const override { return "nccl"; }

 private:
  // One collective in flight: `start` completes when the GPU reaches it (the host may
  // enqueue many steps ahead), `done` when it has finished; its deadline counts from the
  // moment the watchdog first sees `start` complete.
  struct Pending {
    cudaEvent_t start, done;
    const char* what;
    bool started = false;
    std::chrono::steady_clock::time_point since;
  };

  void check_tensor(const torch::Tensor& t) const {
    if (!t.is_cuda() || !t.is_contiguous() || t.device().index() != device_) {
      throw std::invalid_argument(fmt::format("NCCL backend: needs a contiguous tensor on cuda:{}", device_));
    }
  }

  // Records an event on `stream` (from the pool of free ones).
  cudaEvent_t record(cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(mutex_);
    cudaEvent_t ev;
    if (free_events_.empty()) {
      CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    } else {
      ev = free_events_.back();
      free_events_.pop_back();
    }
    CUDA_CHECK(cudaEventRecord(ev, stream));
    return ev;
  }

  // After the collective: records its end, so the watchdog can tell when it completes.
  void track(cudaStream_t stream, cudaEvent_t start, const char* what) {
    const cudaEvent_t done = record(stream);
    std::lock_guard<std::mutex> lock(mutex_);
    pending_.push_back({start, done, what, false, {}});
  }

  // Runs on the watchdog thread: "" while healthy, else what went wrong.
  std::string poll() {
    if (!ready_) return "";
    // The watchdog thread's CUDA calls must go to this rank's GPU, not make a context on GPU 0.
    thread_local bool bound = false;
    if (!bound) {
      const cudaError_t rc = cudaSetDevice(device_);
      if (rc != cudaSuccess)
        return fmt::format("cudaSetDevice({}) on the watchdog thread: {}", device_, cudaGetErrorString(rc));
      bound = true;
    }
    ncclResult_t async = ncclSuccess;
    const ncclResult_t rc = ncclCommGetAsyncError(comm_, &async);
    if (rc != ncclSuccess) return fmt::format("ncclCommGetAsyncError failed: {}", ncclGetErrorString(rc));
    if (async != ncclSuccess && async != ncclInProgress) {
      return fmt::format("NCCL reported an asynchronous error: {} ({})", ncclGetErrorString(async),
                         ncclGetLastError(comm_));
    }
    std::lock_guard<std::mutex> lock(mutex_);
    while (!pending_.empty()) {
      Pending& p = pending_.front();
      const cudaError_t q = cudaEventQuery(p.done);
      if (q == cudaSuccess) {
        free_events_.push_back(p.start);
        free_events_.push_back(p.done);
        pending_.pop_front();
        continue;
      }
      if (q != cudaErrorNotReady) return fmt::format("CUDA error after {}: {}", p.what, cudaGetErrorString(q));
      if (!p.started) {
        const cudaError_t s = cudaEventQuery(p.start);
        if (s == cudaErrorNotReady) break;  // the GPU has not reached it yet: no deadline runs
        if (s != cudaSuccess) return fmt::format("CUDA error before {}: {}", p.what, cudaGetErrorString(s));
        p.started = true;
        p.since = std::chrono::steady_clock::now();
      }
      if (std::chrono::steady_clock::now() - p.since > watchdog_->timeout()) {
        return fmt::format("{} did not complete within {} s: a peer rank stopped answering or died (--comm-timeout)",
                           p.what, watchdog_->timeout().count());
      }
      break;
    }
    return "";
  }

  void abort_comm() {
    if (comm_) ncclCommAbort(comm_);  // the job is ending: its result does not matter
    comm_ = nullptr;
  }

  int device_;
  cudaEvent_t watched_start_ = nullptr;  // watch_begin's event, until watch_end
  int64_t allreduces_ = 0;
  ncclComm_t comm_ = nullptr;
  std::atomic<bool> ready_{false};
  std::mutex mutex_;
  std::deque<Pending> pending_;
  std::vector<cudaEvent_t> free_events_;
  std::unique_ptr<Watchdog> watchdog_;
};

}  // namespace

bool built_with_nccl() { return true; }

std::string nccl_version() {
  int code = 0;
  if (ncclGetVersion(&code) != ncclSuccess) return "unknown";
  // Since NCCL 2.9: code = major * 10000 + minor * 100 + patch.
  return fmt::format("{}.{}.{}", code / 10000, (code / 100) % 100, code % 100);
}

std::unique_ptr<Communicator> make_nccl_communicator(const World& w, torch::Device device,
                                                     std::chrono::seconds timeout) {
  return std::make_unique<NcclCommunicator>(w, device.index() < 0 ? 0 : device.index(), timeout);
}

}  // namespace vae

#else  // !VAE_WITH_NCCL

namespace vae {

bool built_with_nccl() { return false; }
std::string nccl_version() { return ""; }
std::unique_ptr<Communicator> make_nccl_communicator(const World&, torch::Device, std::chrono::seconds) {
  throw UsageError("--backend nccl: this vae_ddp was built without NCCL");
}

}  // namespace vae

#endif
