// Faults the test suite injects to prove the job never hangs. Read from the environment
// variable VAE_DDP_TEST_FAULT = "KIND:RANK:STEP", unset in normal use:
//   throw  - rank RANK throws a runtime error when it reaches global step STEP;
//   stall  - rank RANK stops answering (sleeps forever) at global step STEP.
#pragma once

#include <cstdint>

namespace vae {

// Does nothing unless VAE_DDP_TEST_FAULT names this rank and step. Throws UsageError
// naming the variable when it is malformed.
void maybe_inject_fault(int rank, int64_t global_step);

}  // namespace vae
