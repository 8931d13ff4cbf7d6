// MPI backend: MPI_Allreduce in place on CPU tensors; CUDA (several ranks sharing a GPU)
// and non-contiguous tensors go through host staging (host_staging.h). Every call is
// checked and watched.
#include "vae_ddp/parallel/comm.h"

#include <limits>

#include <fmt/format.h>

#include "vae_ddp/base/errors.h"
#include "vae_ddp/base/fault_injection.h"
#include "vae_ddp/parallel/host_staging.h"
#include "vae_ddp/parallel/watchdog.h"

#ifdef VAE_WITH_MPI
#include "vae_ddp/parallel/mpi_check.h"

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
    check_size(t);
    torch::Tensor host = staging_.to_host(t);
    {
      Watchdog::Scope watch(watchdog_, "MPI all-reduce");
      if (maybe_inject_fault(FaultSite::kCollective, world_.rank, allreduces_++) == FaultAction::kStallCollective) {
        stall_forever();  // a rank that stops answering in the call
      }
      MPI_CHECK_WITH(watchdog_.fail, MPI_Allreduce(MPI_IN_PLACE, host.data_ptr(), static_cast<int>(host.numel()),
                                                   mpi_type(host), MPI_SUM, MPI_COMM_WORLD));
    }
    HostStaging::from_host(t, host);
  }

  void broadcast(torch::Tensor& t, int root) override {
    check_size(t);
    torch::Tensor host = staging_.to_host(t);
    {
      Watchdog::Scope watch(watchdog_, "MPI broadcast");
      MPI_CHECK_WITH(watchdog_.fail,
                     MPI_Bcast(host.data_ptr(), static_cast<int>(host.numel()), mpi_type(host), root, MPI_COMM_WORLD));
    }
    HostStaging::from_host(t, host);
  }

  std::string name() const override { return "mpi"; }

 private:
  static void check_size(const torch::Tensor& t) {
    if (t.numel() > std::numeric_limits<int>::max()) {
      throw std::invalid_argument("MPI backend: a collective takes < 2^31 elements");
    }
  }
  HostStaging staging_;
  int64_t allreduces_ = 0;
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
