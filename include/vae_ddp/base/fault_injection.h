// Faults the test suite injects to prove that the job never hangs and never loses work.
// Read from the environment variable VAE_DDP_TEST_FAULT = "KIND:RANK:AT", unset in
// normal use. At a training step (AT = global step):
//   throw    - rank RANK throws a runtime error;
//   stall    - rank RANK stops answering (sleeps forever);
//   nan      - rank RANK's batch becomes NaN (a diverging run);
//   signal   - rank RANK sends itself SIGUSR1 (a preemption notice);
//   overflow - rank RANK's gradients get an inf (an fp16 overflow: the loss scaler skips
//              the step on every rank).
// Inside a collective (AT = the communicator's all-reduce count, from 0):
//   collstall - rank RANK stops answering inside its all-reduce (MPI: the calling thread
//               sleeps in the watched call; NCCL: the GPU stream waits forever), so that
//               the communicator's own watchdog, and every peer's, must end the job.
// While the communicator is set up (AT = 0):
//   commsetup - rank RANK's set-up throws (a GPU it cannot bind, an NCCL that fails).
// While rank 0 writes a checkpoint (AT = epoch):
//   slowsave - rank RANK sleeps 30 s after writing the temporary file, before the rename,
//              so a test can kill it there.
#pragma once

#include <cstdint>

namespace vae {

enum class FaultSite { kStep, kSave, kCommSetup, kCollective };

// What the caller must do itself (the other kinds act here).
enum class FaultAction { kNone, kPoisonBatch, kOverflowGradients, kStallCollective };

// Does nothing unless VAE_DDP_TEST_FAULT names this site, rank and position. Throws
// UsageError naming the variable when it is malformed.
FaultAction maybe_inject_fault(FaultSite site, int rank, int64_t at);

// What a stalled rank does: sleeps, never to return (the `stall` and `collstall` kinds).
[[noreturn]] void stall_forever();

}  // namespace vae
