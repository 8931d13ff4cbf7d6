// KL weight (beta) as a function of training progress.
#pragma once

#include <cstdint>
#include <string>

#include "vae_ddp/base/config.h"

namespace vae {

class KLSchedule {
 public:
  // steps_per_epoch > 0. Reads beta, kl_schedule, kl_warmup_epochs, kl_cycles, kl_ramp, epochs.
  KLSchedule(const Config& c, int64_t steps_per_epoch);

  // beta for the optimizer step with 0-based index `global_step` (the schedule's position).
  //   constant:  beta
  //   linear:    beta * min(1, t / warmup), t = global_step / steps_per_epoch (epochs)
  //   cyclical:  Fu et al. 2019: the run is split into kl_cycles cycles; within a cycle at
  //              fraction tau, beta * min(1, tau / kl_ramp).
  double at(int64_t global_step) const;

 private:
  KLScheduleKind kind_;
  double beta_, warmup_epochs_, ramp_;
  int64_t cycles_, steps_per_epoch_, total_steps_;
};

}  // namespace vae
