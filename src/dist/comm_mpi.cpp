// MPI backend: CPU tensors, MPI_Allreduce in place. Every call is checked and watched.
#include "vae_ddp/dist/comm.h"

#include <fmt/format.h>

#include "vae_ddp/base/errors.h"
#include "vae_ddp/base/fault_injection.h"
#include "vae_ddp/dist/watchdog.h"

#ifdef VAE_WITH_MPI
#include "vae_ddp/dist/mpi_check.h"

namespace vae {

namespace {

MPI_Datatype mpi_type(const torch::Tensor& t) { return dtype_code(t, "MPI", MPI_FLOAT, MPI_DOUBLE, MPI_INT64_T); }

class MpiCommunicator : public Communicator {
 public:
  // Collective: a rank whose set-up fails ends every rank with its error (no hang).
  MpiCommunicator(const World& w, std::chrono::seconds timeout) : Communicator(w), watchdog_(w, timeout) {
    run_collectively(w, [&] { maybe_inject_fault(FaultSite::kCommSetup, w.rank, 0); });
  }

  void allreduce_sum(torch::Tensor& t) override {
    require_cpu_contiguous(t, "all-reduce");
    Watchdog::Scope watch(watchdog_, "MPI all-reduce");
    MPI_CHECK_WITH(watchdog_.fail, MPI_Allreduce(MPI_IN_PLACE, t.data_ptr(), static_cast<int>(t.numel()), mpi_type(t),
                                                 MPI_SUM, MPI_COMM_WORLD));
  }

  void broadcast(torch::Tensor& t, int root) override {
    require_cpu_contiguous(t, "broadcast");
    Watchdog::Scope watch(watchdog_, "MPI broadcast");
    MPI_CHECK_WITH(watchdog_.fail,
                   MPI_Bcast(t.data_ptr(), static_cast<int>(t.numel()), mpi_type(t), root, MPI_COMM_WORLD));
  }

  std::string name() const override { return "mpi"; }

 private:
  static void require_cpu_contiguous(const torch::Tensor& t, const char* what) {
    if (!t.device().is_cpu() || !t.is_contiguous() || t.numel() > std::numeric_limits<int>::max()) {
      throw std::invalid_argument(
          fmt::format("MPI backend {}: needs a contiguous CPU tensor of < 2^31 elements", what));
    }
  }
  Watchdog watchdog_;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(const World& w, std::chrono::seconds timeout) {
  return std::make_unique<MpiCommunicator>(w, timeout);
}

}  // namespace vae

#else  // !VAE_WITH_MPI

namespace vae {
std::unique_ptr<Communicator> make_mpi_communicator(const World& w, std::chrono::seconds) {
  return make_local_communicator(w);  // a build without MPI is always one process
}
}  // namespace vae

#endif
