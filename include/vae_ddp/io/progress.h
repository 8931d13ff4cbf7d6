// The live progress bar rank 0 draws on a terminal: one line per epoch, redrawn in place
// (at most 10 times a second) with images/s, the running loss and the ETA. When stdout is
// not a terminal (logs, Slurm) there is no bar and the trainer prints plain lines every
// --log-every steps instead.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace vae {

// A duration as a clock shows it: "0:07", "12:34", "1:02:03".
std::string clock_text(double seconds);

// The bar's text for `done` of `total` images after `seconds` (no terminal codes):
//   "epoch 3/10 [##########----------]  50%  30000/60000  41234 img/s  loss 104.21  ETA 0:01"
std::string render_progress(int64_t epoch, int64_t epochs, int64_t done, int64_t total, double seconds, double loss,
                            int width = 24);

class ProgressBar {
 public:
  // Active only when `enabled` (rank 0 and stdout is a terminal: stdout_is_terminal()).
  ProgressBar(bool enabled, int64_t epoch, int64_t epochs, int64_t total_images);
  // True when it is time to redraw: the caller then computes the loss and calls draw().
  bool due() const;
  void draw(int64_t done_images, double loss);
  // Clears the bar's line, so the epoch's summary line takes its place.
  void finish();
  bool enabled() const { return enabled_; }

 private:
  bool enabled_;
  int64_t epoch_, epochs_, total_;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

// Whether rank 0's output reaches a terminal: stdout is one and, under an MPI launcher, the
// launcher's stdout is one too (`mpirun ... > log` gets plain lines).
bool stdout_is_terminal();
// "/dev/pts/3", "/dev/tty1", "/dev/console": what a terminal's path looks like.
bool names_a_terminal(const std::string& path);

}  // namespace vae
