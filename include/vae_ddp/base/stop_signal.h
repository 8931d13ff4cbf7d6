// Preemption and time limits: SIGUSR1 (Slurm's --signal=B:USR1@T, forwarded by the batch
// script), SIGTERM and SIGINT ask training to stop at the next step boundary, checkpoint
// and exit 0. A second SIGINT ends the process at once.
#pragma once

#include <string>

namespace vae {

// Installs the handlers (idempotent).
void install_stop_handlers();
// True once one of the signals arrived (async-signal-safe flag).
bool stop_requested();
// The signal's name ("SIGUSR1", ...), or "" if none arrived.
const char* stop_signal_name();

// Under Slurm (SLURM_JOB_ID set) asks Slurm to requeue this job (`scontrol requeue`).
// Returns a one-line description of what happened, for the log.
std::string requeue_slurm_job();

}  // namespace vae
