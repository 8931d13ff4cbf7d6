// Simple charts drawn with cairo (Debian's libcairo2) and written as PNG: line plots with
// axes, ticks, labels and legends, and a scatter coloured by class. What the loss curves
// and the latent map need, nothing more.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vae {

struct Series {
  std::string name;          // legend entry
  std::vector<double> x, y;  // same length
};

struct Panel {
  std::string title, xlabel, ylabel;
  std::vector<Series> series;
};

// False when this vae_ddp was built without cairo (VAE_WITH_PLOTS=OFF, or libcairo2-dev
// absent): the two writers below then throw UsageError naming the missing library.
bool plots_available();

// Panels side by side in one PNG of `panel_width` x `height` pixels per panel; each
// panel gets its own axes (ranges from its data, "nice" 1-2-5 ticks) and legend.
// Written atomically; throws std::runtime_error naming the path on failure.
void write_line_plot(const std::string& path, const std::vector<Panel>& panels, int panel_width = 520,
                     int height = 400);

struct Scatter {
  std::string title, xlabel, ylabel;
  std::vector<double> x, y;
  std::vector<int64_t> group;            // index into group_names, one per point
  std::vector<std::string> group_names;  // legend: one colour per group (up to 10)
};

// One point per (x, y), coloured by group, with a legend of the groups.
void write_scatter_plot(const std::string& path, const Scatter& s, int width = 720, int height = 640);

// "Nice" tick positions covering [lo, hi] (about `target` of them, steps 1, 2 or 5 x 10^k).
std::vector<double> nice_ticks(double lo, double hi, int target = 6);

}  // namespace vae
