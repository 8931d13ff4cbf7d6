#include "vae_ddp/train/kl_schedule.h"

#include <algorithm>
#include <cmath>

namespace vae {

KLSchedule::KLSchedule(const Config& c, int64_t steps_per_epoch)
    : kind_(c.kl_schedule),
      beta_(c.beta),
      warmup_epochs_(c.kl_warmup_epochs),
      ramp_(c.kl_ramp),
      cycles_(c.kl_cycles),
      steps_per_epoch_(steps_per_epoch),
      total_steps_(c.epochs * steps_per_epoch) {}

double KLSchedule::at(int64_t global_step) const {
  if (kind_ == KLScheduleKind::kLinear) {
    if (warmup_epochs_ <= 0) return beta_;
    const double t = static_cast<double>(global_step) / static_cast<double>(steps_per_epoch_);
    return beta_ * std::min(1.0, t / warmup_epochs_);
  }
  if (kind_ == KLScheduleKind::kCyclical) {
    const double period = static_cast<double>(total_steps_) / static_cast<double>(cycles_);
    const double tau = std::fmod(static_cast<double>(global_step), period) / period;  // [0, 1)
    return beta_ * std::min(1.0, tau / ramp_);
  }
  return beta_;
}

}  // namespace vae
