// The process group: which rank this process is, how many there are, how many share
// its node, and the host-side control collectives (MPI) that tie startup, agreement
// checks and aborts together. Without a launcher, or in a build without MPI, the world
// is one process and every collective here is the identity.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace vae {

struct World {
  int rank = 0;
  int size = 1;
  int local_rank = 0;              // rank among the processes on this node (MPI shared-memory split)
  int local_size = 1;              // processes on this node
  bool launched = false;           // started by an MPI launcher (mpirun, srun --mpi=pmix)
  std::string host;                // this node's name, for error messages
  std::vector<std::string> nodes;  // every node's name, once, in the order of their lowest rank
};

// Where the ranks run, for the start-up line: "vm", "2 nodes (vn1, vn2)",
// "16 nodes (gpu001, gpu002, ..., gpu016)".
std::string describe_nodes(const World& w);

// True when the environment shows an MPI launcher (Open MPI, PMIx, PMI). Needs no MPI.
bool started_by_launcher();
// This process's rank as the launcher announced it, or 0: lets rank 0 alone report
// errors found before MPI starts.
int launcher_rank();
// True when this binary was built with MPI (VAE_WITH_MPI).
bool built_with_mpi();
// The MPI library's own first line (MPI_Get_library_version, callable before MPI starts),
// e.g. "Open MPI v4.1.4, ..."; "" in a build without MPI.
std::string mpi_library_version();

// Starts MPI (MPI_THREAD_MULTIPLE, so the watchdog may abort the job from its thread)
// when started by a launcher, and finalizes it on destruction. Throws UsageError when
// started by a launcher in a build without MPI.
class WorldSession {
 public:
  WorldSession();
  ~WorldSession();
  WorldSession(const WorldSession&) = delete;
  WorldSession& operator=(const WorldSession&) = delete;
  const World& world() const { return world_; }

 private:
  World world_;
  bool mpi_started_ = false;
};

// --- host-side collectives over every rank (MPI_COMM_WORLD); identity for one process ---

// Rank `root`'s bytes end up in `bytes` on every rank.
void broadcast_bytes(const World& w, std::string& bytes, int root = 0);
// Minimum and maximum of `value` over all ranks.
std::pair<int64_t, int64_t> allreduce_min_max(const World& w, int64_t value);
void barrier(const World& w);

// Ends every rank of the job now with `code` (MPI_Abort), or the process alone when the
// world is one process. Safe to call from any thread.
[[noreturn]] void abort_job(const World& w, int code);

// Thrown on every rank when a collective step failed somewhere: the failing rank with
// the lowest number has already printed the one error line. Carries the exit code.
struct CollectiveFailure {
  int code;
};

// Runs `step` on every rank, then agrees on the outcome: if it threw on any rank, the
// lowest failing rank prints its error ("vae_ddp: error: ...") and every rank throws
// CollectiveFailure with that rank's exit code (2 for UsageError, 1 otherwise). So a
// setup error that hits one rank or all of them ends the job with one line, no hang.
void run_collectively(const World& w, const std::function<void()>& step);

}  // namespace vae
