#include "vae_ddp/parallel/world.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#ifdef VAE_WITH_MPI
#include "vae_ddp/parallel/mpi_check.h"
#endif

#include "vae_ddp/base/errors.h"

namespace vae {

namespace {

const char* env(const char* name) { return std::getenv(name); }

std::string host_name() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof(buf) - 1) != 0) return "unknown-host";
  return buf;
}

}  // namespace

std::string describe_nodes(const World& w) {
  const auto& n = w.nodes;
  if (n.size() <= 1) return n.empty() ? w.host : n.front();
  std::string shown =
      n.size() <= 4 ? fmt::format("{}", fmt::join(n, ", ")) : fmt::format("{}, {}, ..., {}", n[0], n[1], n.back());
  return fmt::format("{} nodes ({})", n.size(), shown);
}

bool started_by_launcher() {
  return env("OMPI_COMM_WORLD_SIZE") || env("PMIX_RANK") || env("PMI_RANK") || env("PMI_SIZE");
}

int launcher_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK"}) {
    if (const char* v = env(name)) return std::atoi(v);
  }
  return 0;
}

#ifdef VAE_WITH_MPI

std::string mpi_error_message(const char* call, int rc, const char* file, int line) {
  char text[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  MPI_Error_string(rc, text, &len);
  return fmt::format("{} failed at {}:{}: {}", call, file, line, text);
}

void mpi_failure(const std::string& message) {
  int rank = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  print_error(fmt::format("MPI failure: {} (host {}, rank {})", message, host_name(), rank), /*rank=*/0);
  MPI_Abort(MPI_COMM_WORLD, kExitRuntime);
  std::_Exit(kExitRuntime);
}

bool built_with_mpi() { return true; }

std::string mpi_library_version() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING] = {0};
  int len = 0;
  if (MPI_Get_library_version(text, &len) != MPI_SUCCESS) return "unknown";
  std::string line(text, static_cast<size_t>(std::max(0, len)));
  return line.substr(0, line.find_first_of("\r\n"));
}

WorldSession::WorldSession() {
  world_.host = host_name();
  world_.nodes = {world_.host};
  if (!started_by_launcher()) return;
  int provided = 0;
  MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided));
  mpi_started_ = true;
  // Errors come back as codes, so MPI_CHECK can report them with their place.
  MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_.rank));
  MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world_.size));
  MPI_Comm node;
  MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world_.rank, MPI_INFO_NULL, &node));
  MPI_CHECK(MPI_Comm_rank(node, &world_.local_rank));
  MPI_CHECK(MPI_Comm_size(node, &world_.local_size));
  MPI_CHECK(MPI_Comm_free(&node));
  // Every rank's host name, to name the nodes once: fixed-size slots, gathered at start only.
  constexpr int kSlot = 256;
  std::vector<char> names(static_cast<size_t>(world_.size) * kSlot, '\0');
  std::string mine = world_.host.substr(0, kSlot - 1);
  mine.resize(kSlot, '\0');
  MPI_CHECK(MPI_Allgather(mine.data(), kSlot, MPI_CHAR, names.data(), kSlot, MPI_CHAR, MPI_COMM_WORLD));
  world_.nodes.clear();
  for (int r = 0; r < world_.size; ++r) {
    std::string name(names.data() + static_cast<size_t>(r) * kSlot);
    if (std::find(world_.nodes.begin(), world_.nodes.end(), name) == world_.nodes.end()) world_.nodes.push_back(name);
  }
  world_.launched = true;
}

WorldSession::~WorldSession() {
  if (mpi_started_) MPI_Finalize();
}

void broadcast_bytes(const World& w, std::string& bytes, int root) {
  if (w.size == 1) return;
  uint64_t n = bytes.size();
  MPI_CHECK(MPI_Bcast(&n, 1, MPI_UINT64_T, root, MPI_COMM_WORLD));
  bytes.resize(n);
  // MPI counts are int: send in chunks of at most 1 GiB.
  constexpr uint64_t kChunk = uint64_t{1} << 30;
  for (uint64_t off = 0; off < n; off += kChunk) {
    const int len = static_cast<int>(std::min(kChunk, n - off));
    MPI_CHECK(MPI_Bcast(bytes.data() + off, len, MPI_BYTE, root, MPI_COMM_WORLD));
  }
}

std::pair<int64_t, int64_t> allreduce_min_max(const World& w, int64_t value) {
  if (w.size == 1) return {value, value};
  int64_t in[2] = {-value, value}, out[2] = {0, 0};
  MPI_CHECK(MPI_Allreduce(in, out, 2, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD));
  return {-out[0], out[1]};
}

void barrier(const World& w) {
  if (w.size > 1) MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
}

void abort_job(const World& w, int code) {
  std::fflush(stdout);
  std::fflush(stderr);
  if (w.launched) MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

namespace {

// (exit code, rank) of the lowest failing rank, or (0, -1) when every rank succeeded.
std::pair<int, int> agree_on_failure(const World& w, int local_code) {
  if (w.size == 1) return {local_code, local_code ? w.rank : -1};
  const int mine = local_code ? w.rank : std::numeric_limits<int>::max();
  int lowest = 0;
  MPI_CHECK(MPI_Allreduce(&mine, &lowest, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD));
  if (lowest == std::numeric_limits<int>::max()) return {0, -1};
  int code = local_code;
  MPI_CHECK(MPI_Bcast(&code, 1, MPI_INT, lowest, MPI_COMM_WORLD));
  return {code, lowest};
}

}  // namespace

#else  // !VAE_WITH_MPI: one process, every collective is the identity.

bool built_with_mpi() { return false; }
std::string mpi_library_version() { return ""; }

WorldSession::WorldSession() {
  world_.host = host_name();
  world_.nodes = {world_.host};
  if (started_by_launcher()) {
    throw UsageError(
        "started by an MPI launcher, but this vae_ddp was built with VAE_WITH_MPI=OFF; "
        "rebuild with MPI or run it without mpirun");
  }
}
WorldSession::~WorldSession() = default;

void broadcast_bytes(const World&, std::string&, int) {}
std::pair<int64_t, int64_t> allreduce_min_max(const World&, int64_t value) { return {value, value}; }
void barrier(const World&) {}
void abort_job(const World&, int code) {
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(code);
}

namespace {
std::pair<int, int> agree_on_failure(const World& w, int local_code) { return {local_code, local_code ? w.rank : -1}; }
}  // namespace

#endif

void run_collectively(const World& w, const std::function<void()>& step) {
  int code = 0;
  std::string line;
  try {
    step();
  } catch (const std::exception& e) {
    code = exit_code_for(e);
    line = error_line(e);
  }
  const auto [agreed, failing_rank] = agree_on_failure(w, code);
  if (agreed == 0) return;
  if (w.rank == failing_rank) print_error(line, w.size > 1 ? w.rank : 0);
  throw CollectiveFailure{agreed};
}

}  // namespace vae
