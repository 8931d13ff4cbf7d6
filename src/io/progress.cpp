#include "vae_ddp/io/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>

namespace vae {

namespace {

constexpr auto kRedrawEvery = std::chrono::milliseconds(100);

}  // namespace

std::string clock_text(double seconds) {
  const auto s = static_cast<int64_t>(std::max(0.0, std::round(seconds)));
  if (s >= 3600) return fmt::format("{}:{:02d}:{:02d}", s / 3600, (s / 60) % 60, s % 60);
  return fmt::format("{}:{:02d}", s / 60, s % 60);
}

std::string render_progress(int64_t epoch, int64_t epochs, int64_t done, int64_t total, double seconds, double loss,
                            int width) {
  const double frac = total > 0 ? std::clamp(static_cast<double>(done) / static_cast<double>(total), 0.0, 1.0) : 1.0;
  const int filled = static_cast<int>(std::floor(frac * width));
  const double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0.0;
  const std::string eta = rate > 0 ? clock_text(static_cast<double>(total - done) / rate) : "?";
  return fmt::format("epoch {}/{} [{}{}] {:3.0f}%  {}/{}  {:.0f} img/s  loss {:.2f}  ETA {}", epoch, epochs,
                     std::string(static_cast<size_t>(filled), '#'),
                     std::string(static_cast<size_t>(width - filled), '-'), 100 * frac, done, total, rate, loss, eta);
}

bool names_a_terminal(const std::string& path) {
  return path.rfind("/dev/pts/", 0) == 0 || path.rfind("/dev/tty", 0) == 0 || path == "/dev/console";
}

bool stdout_is_terminal() {
  if (isatty(STDOUT_FILENO) != 1) return false;
  // Open MPI hands the ranks it starts a pseudo-terminal whatever mpirun's own stdout is, so
  // under a launcher the terminal that counts is the launcher's (this rank's parent: mpirun
  // starts the ranks of its own node itself). Where it cannot be read: not a terminal.
  if (!std::getenv("OMPI_COMM_WORLD_SIZE") && !std::getenv("PMIX_RANK")) return true;
  char target[256] = {0};
  const std::string fd = fmt::format("/proc/{}/fd/1", static_cast<long>(getppid()));
  const ssize_t n = readlink(fd.c_str(), target, sizeof(target) - 1);
  return n > 0 && names_a_terminal(std::string(target, static_cast<size_t>(n)));
}

ProgressBar::ProgressBar(bool enabled, int64_t epoch, int64_t epochs, int64_t total_images)
    : enabled_(enabled),
      epoch_(epoch),
      epochs_(epochs),
      total_(total_images),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_ - kRedrawEvery) {}

bool ProgressBar::due() const { return enabled_ && std::chrono::steady_clock::now() - last_draw_ >= kRedrawEvery; }

void ProgressBar::draw(int64_t done_images, double loss) {
  if (!enabled_) return;
  last_draw_ = std::chrono::steady_clock::now();
  const double seconds = std::chrono::duration<double>(last_draw_ - start_).count();
  std::fputs(("\r\033[K" + render_progress(epoch_, epochs_, done_images, total_, seconds, loss)).c_str(), stdout);
  std::fflush(stdout);
}

void ProgressBar::finish() {
  if (!enabled_) return;
  std::fputs("\r\033[K", stdout);
  std::fflush(stdout);
}

}  // namespace vae
