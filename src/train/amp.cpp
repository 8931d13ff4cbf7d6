#include "vae_ddp/train/amp.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

namespace vae {

namespace {

// libtorch 2.4 replaced the per-device autocast functions with ones taking the device type.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
bool autocast_enabled(torch::DeviceType t) { return at::autocast::is_autocast_enabled(t); }
void set_autocast_enabled(torch::DeviceType t, bool on) { at::autocast::set_autocast_enabled(t, on); }
torch::ScalarType autocast_dtype(torch::DeviceType t) { return at::autocast::get_autocast_dtype(t); }
void set_autocast_dtype(torch::DeviceType t, torch::ScalarType d) { at::autocast::set_autocast_dtype(t, d); }
#else
bool autocast_enabled(torch::DeviceType t) {
  return t == torch::kCUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
}
void set_autocast_enabled(torch::DeviceType t, bool on) {
  if (t == torch::kCUDA) {
    at::autocast::set_enabled(on);
  } else {
    at::autocast::set_cpu_enabled(on);
  }
}
torch::ScalarType autocast_dtype(torch::DeviceType t) {
  return t == torch::kCUDA ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
}
void set_autocast_dtype(torch::DeviceType t, torch::ScalarType d) {
  if (t == torch::kCUDA) {
    at::autocast::set_autocast_gpu_dtype(d);
  } else {
    at::autocast::set_autocast_cpu_dtype(d);
  }
}
#endif

}  // namespace

AutocastGuard::AutocastGuard(torch::Device device, Precision precision) : type_(device.type()) {
  if (precision == Precision::kFP32) return;
  active_ = true;
  prev_enabled_ = autocast_enabled(type_);
  prev_dtype_ = autocast_dtype(type_);
  set_autocast_enabled(type_, true);
  set_autocast_dtype(type_, precision == Precision::kBF16 ? torch::kBFloat16 : torch::kHalf);
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  set_autocast_enabled(type_, prev_enabled_);
  set_autocast_dtype(type_, prev_dtype_);
}

LossScaler::LossScaler(bool enabled, torch::Device device, ScalerState state, double growth_factor,
                       double backoff_factor, int64_t growth_interval)
    : enabled_(enabled),
      scale_(torch::full({1}, state.scale, torch::dtype(torch::kFloat32).device(device))),
      growth_tracker_(torch::full({1}, state.growth_tracker, torch::dtype(torch::kInt32).device(device))),
      growth_factor_(growth_factor),
      backoff_factor_(backoff_factor),
      growth_interval_(growth_interval) {}

torch::Tensor LossScaler::scale(const torch::Tensor& loss) const { return enabled_ ? loss * scale_ : loss; }

torch::Tensor LossScaler::unscale_and_update(torch::Tensor& grads) {
  if (!enabled_) return {};
  // One scan of the summed gradient: a rank's inf or NaN survives the sum (inf + finite is
  // inf, inf - inf and NaN + x are NaN), and so does a sum of finite values that overflowed.
  auto found = torch::isfinite(grads).all().logical_not();  // 0-dim bool, on the device
  grads.mul_(scale_.reciprocal());
  // The composite form of ATen's _amp_update_scale_, whose CPU kernel libtorch 1.13 lacks.
  auto grown = growth_tracker_ + 1;
  auto grow = grown >= growth_interval_;
  scale_ = torch::where(found, scale_ * backoff_factor_, torch::where(grow, scale_ * growth_factor_, scale_));
  growth_tracker_ = torch::where(found.logical_or(grow), torch::zeros_like(grown), grown);
  return found.to(torch::kFloat32);
}

void LossScaler::unscale_and_update_in_place(const torch::Tensor& grads, torch::Tensor& found,
                                             torch::Tensor& inv_scale) {
  if (!enabled_) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  found.zero_();
  at::reciprocal_out(inv_scale, scale_);
  at::_amp_foreach_non_finite_check_and_unscale_({grads}, found, inv_scale);
  at::_amp_update_scale_(scale_, growth_tracker_, found, growth_factor_, backoff_factor_, growth_interval_);
#else
  (void)grads;
  (void)found;
  (void)inv_scale;
  TORCH_CHECK(false, "LossScaler::unscale_and_update_in_place: needs libtorch 2.4 or later");
#endif
}

void LossScaler::load_state(const ScalerState& state) {
  scale_.fill_(state.scale);
  growth_tracker_.fill_(state.growth_tracker);
}

ScalerState LossScaler::state() const {
  return {scale_.item<double>(), static_cast<int64_t>(growth_tracker_.item<int>())};
}

}  // namespace vae
