#include "vae_ddp/base/stop_signal.h"

#include <sys/wait.h>

#include <atomic>
#include <csignal>
#include <cstdlib>

#include <fmt/format.h>

namespace vae {

namespace {

std::atomic<int> g_signal{0};

extern "C" void on_stop_signal(int sig) {
  g_signal.store(sig);
  if (sig == SIGINT) std::signal(SIGINT, SIG_DFL);  // a second Ctrl-C ends the process
}

}  // namespace

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // MPI and file I/O keep going; the flag is read between steps
  for (int sig : {SIGUSR1, SIGTERM, SIGINT}) sigaction(sig, &sa, nullptr);
}

bool stop_requested() { return g_signal.load() != 0; }

const char* stop_signal_name() {
  switch (g_signal.load()) {
    case SIGUSR1: return "SIGUSR1";
    case SIGTERM: return "SIGTERM";
    case SIGINT: return "SIGINT";
    default: return "";
  }
}

std::string requeue_slurm_job() {
  const char* job = std::getenv("SLURM_JOB_ID");
  if (!job || !*job) return "not under Slurm: not requeued";
  const std::string cmd = fmt::format("scontrol requeue {} 2>&1", job);
  const int status = std::system(cmd.c_str());
  if (status == 0) return fmt::format("requeued Slurm job {}", job);
  return fmt::format("`scontrol requeue {}` failed (exit {}): the job was not requeued", job,
                     WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

}  // namespace vae
