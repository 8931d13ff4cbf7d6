// The one check of every MPI call (include only where VAE_WITH_MPI): MPI_CHECK(call) ends
// the job with one line naming the call, file:line, host and rank, and MPI's own text.
// MPI_CHECK_WITH(handler, call) hands that message to `handler` instead (a communicator's
// watchdog, which also owns the job's ending there).
#pragma once

#include <mpi.h>

#include <string>

namespace vae {

// "MPI_Bcast(...) failed at src/parallel/comm_mpi.cpp:40: <MPI's error string>"
std::string mpi_error_message(const char* call, int rc, const char* file, int line);
// Prints `message` with this process's host and rank, then MPI_Abort.
[[noreturn]] void mpi_failure(const std::string& message);

}  // namespace vae

#define MPI_CHECK_WITH(handler, call)                                                                  \
  do {                                                                                                 \
    const int mpi_rc_ = (call);                                                                        \
    if (mpi_rc_ != MPI_SUCCESS) handler(::vae::mpi_error_message(#call, mpi_rc_, __FILE__, __LINE__)); \
  } while (0)
#define MPI_CHECK(call) MPI_CHECK_WITH(::vae::mpi_failure, call)
