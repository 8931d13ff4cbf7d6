#include "vae_ddp/viz/plots.h"

#ifdef VAE_WITH_PLOTS
#include <cairo.h>
#endif

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <stdexcept>

#include <fmt/format.h>

#include "vae_ddp/base/errors.h"
#include "vae_ddp/io/files.h"

namespace vae {

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!(hi > lo)) return {lo};
  const double raw = (hi - lo) / std::max(1, target - 1);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    step = m * mag;
    if (step >= raw) break;
  }
  std::vector<double> ticks;
  const double first = std::floor(lo / step + 1e-9);
  for (int k = 0; k < 100; ++k) {  // from the last tick <= lo to the first tick >= hi
    const double t = (first + k) * step;
    ticks.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);
    if (t >= hi - step * 1e-9) break;
  }
  return ticks;
}

#ifdef VAE_WITH_PLOTS

bool plots_available() { return true; }

namespace {

struct Rgb {
  double r, g, b;
};

// Matplotlib's "tab10" colours: distinguishable, and familiar to the seeds' users.
constexpr Rgb kPalette[] = {{0.122, 0.467, 0.706}, {1.000, 0.498, 0.055}, {0.173, 0.627, 0.173}, {0.839, 0.153, 0.157},
                            {0.580, 0.404, 0.741}, {0.549, 0.337, 0.294}, {0.890, 0.467, 0.761}, {0.498, 0.498, 0.498},
                            {0.737, 0.741, 0.133}, {0.090, 0.745, 0.812}};
constexpr int kPaletteSize = sizeof(kPalette) / sizeof(kPalette[0]);

constexpr double kLeft = 70, kRight = 20, kTop = 36, kBottom = 52;  // margins around the plot area

using Surface = std::unique_ptr<cairo_surface_t, decltype(&cairo_surface_destroy)>;
using Context = std::unique_ptr<cairo_t, decltype(&cairo_destroy)>;

struct Canvas {
  Surface surface;
  Context cr;
  Canvas(int w, int h)
      : surface(cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h), cairo_surface_destroy),
        cr(cairo_create(surface.get()), cairo_destroy) {
    cairo_set_source_rgb(cr.get(), 1, 1, 1);
    cairo_paint(cr.get());
    cairo_select_font_face(cr.get(), "DejaVu Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  }
  // Encodes as PNG through cairo and writes atomically.
  void save(const std::string& path) {
    std::string bytes;
    const auto status = cairo_surface_write_to_png_stream(
        surface.get(),
        [](void* closure, const unsigned char* data, unsigned int n) {
          static_cast<std::string*>(closure)->append(reinterpret_cast<const char*>(data), n);
          return CAIRO_STATUS_SUCCESS;
        },
        &bytes);
    if (status != CAIRO_STATUS_SUCCESS) {
      throw std::runtime_error(
          fmt::format("{}: cairo cannot encode the plot: {}", path, cairo_status_to_string(status)));
    }
    write_file_atomic(path, bytes);
  }
};

// Text with its reference point placed by (ax, ay) in [0, 1]: 0 = left/top, 1 = right/bottom.
void text(cairo_t* cr, const std::string& s, double x, double y, double size, double ax = 0, double ay = 0,
          bool vertical = false) {
  cairo_set_font_size(cr, size);
  cairo_text_extents_t e;
  cairo_text_extents(cr, s.c_str(), &e);
  cairo_save(cr);
  cairo_translate(cr, x, y);
  if (vertical) cairo_rotate(cr, -M_PI / 2);
  cairo_move_to(cr, -e.x_bearing - ax * e.width, -e.y_bearing - ay * e.height);
  cairo_show_text(cr, s.c_str());
  cairo_restore(cr);
}

std::string tick_label(double v, double step) {
  if (std::abs(v) < step * 1e-6) return "0";
  const int decimals = std::max(0, static_cast<int>(std::ceil(-std::log10(step) - 1e-9)));
  if (std::abs(v) >= 1e5 || std::abs(v) < 1e-3) return fmt::format("{:.2g}", v);
  return fmt::format("{:.{}f}", v, decimals);
}

struct Range {
  double lo = std::numeric_limits<double>::infinity(), hi = -std::numeric_limits<double>::infinity();
  void add(double v) {
    if (!std::isfinite(v)) return;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  void finish() {
    if (!std::isfinite(lo)) lo = 0, hi = 1;
    if (hi - lo < 1e-12) lo -= 0.5, hi += 0.5;
  }
};

// Axes, ticks and labels over the rectangle (x0, y0, w, h); returns the data -> pixel maps.
struct Axes {
  double x0, y0, w, h;
  Range xr, yr;
  double px(double x) const { return x0 + (x - xr.lo) / (xr.hi - xr.lo) * w; }
  double py(double y) const { return y0 + h - (y - yr.lo) / (yr.hi - yr.lo) * h; }

  void draw(cairo_t* cr, const std::string& title, const std::string& xlabel, const std::string& ylabel) {
    const auto xt = nice_ticks(xr.lo, xr.hi), yt = nice_ticks(yr.lo, yr.hi);
    xr.lo = std::min(xr.lo, xt.front()), xr.hi = std::max(xr.hi, xt.back());
    yr.lo = std::min(yr.lo, yt.front()), yr.hi = std::max(yr.hi, yt.back());
    cairo_set_line_width(cr, 1);
    for (double t : yt) {  // light grid, then tick labels
      cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
      cairo_move_to(cr, x0, py(t));
      cairo_line_to(cr, x0 + w, py(t));
      cairo_stroke(cr);
      cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
      text(cr, tick_label(t, yt.size() > 1 ? yt[1] - yt[0] : 1), x0 - 6, py(t), 11, 1, 0.5);
    }
    for (double t : xt) {
      cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
      cairo_move_to(cr, px(t), y0);
      cairo_line_to(cr, px(t), y0 + h);
      cairo_stroke(cr);
      cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
      text(cr, tick_label(t, xt.size() > 1 ? xt[1] - xt[0] : 1), px(t), y0 + h + 6, 11, 0.5, 0);
    }
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_rectangle(cr, x0, y0, w, h);
    cairo_stroke(cr);
    text(cr, title, x0 + w / 2, y0 - 10, 14, 0.5, 1);
    text(cr, xlabel, x0 + w / 2, y0 + h + 26, 12, 0.5, 0);
    text(cr, ylabel, x0 - 52, y0 + h / 2, 12, 0.5, 0, /*vertical=*/true);
  }
};

void legend(cairo_t* cr, const std::vector<std::string>& names, double right, double top, bool points) {
  if (names.empty()) return;
  cairo_set_font_size(cr, 11);
  double width = 0;
  for (const auto& n : names) {
    cairo_text_extents_t e;
    cairo_text_extents(cr, n.c_str(), &e);
    width = std::max(width, e.x_advance);
  }
  const double row = 16, box_w = width + 36, box_h = row * static_cast<double>(names.size()) + 8;
  const double x = right - box_w - 8, y = top + 8;
  cairo_set_source_rgba(cr, 1, 1, 1, 0.85);
  cairo_rectangle(cr, x, y, box_w, box_h);
  cairo_fill_preserve(cr);
  cairo_set_source_rgb(cr, 0.6, 0.6, 0.6);
  cairo_set_line_width(cr, 1);
  cairo_stroke(cr);
  for (size_t i = 0; i < names.size(); ++i) {
    const Rgb c = kPalette[i % kPaletteSize];
    const double cy = y + 4 + row * (static_cast<double>(i) + 0.5);
    cairo_set_source_rgb(cr, c.r, c.g, c.b);
    if (points) {
      cairo_arc(cr, x + 14, cy, 4, 0, 2 * M_PI);
      cairo_fill(cr);
    } else {
      cairo_set_line_width(cr, 2);
      cairo_move_to(cr, x + 6, cy);
      cairo_line_to(cr, x + 24, cy);
      cairo_stroke(cr);
    }
    cairo_set_source_rgb(cr, 0, 0, 0);
    text(cr, names[i], x + 30, cy, 11, 0, 0.5);
  }
}

// One series as a line in colour `c`; a non-finite value lifts the pen, and a series of
// one point is a dot.
void draw_series(cairo_t* cr, const Axes& ax, const Series& s, Rgb c) {
  cairo_set_source_rgb(cr, c.r, c.g, c.b);
  cairo_set_line_width(cr, 2);
  bool pen = false;
  for (size_t k = 0; k < std::min(s.x.size(), s.y.size()); ++k) {
    if (!std::isfinite(s.y[k])) {
      pen = false;
      continue;
    }
    if (pen) {
      cairo_line_to(cr, ax.px(s.x[k]), ax.py(s.y[k]));
    } else {
      cairo_move_to(cr, ax.px(s.x[k]), ax.py(s.y[k]));
      pen = true;
    }
  }
  cairo_stroke(cr);
  if (s.x.size() == 1) {  // a single epoch: a dot, since a line needs two points
    cairo_arc(cr, ax.px(s.x[0]), ax.py(s.y[0]), 3, 0, 2 * M_PI);
    cairo_fill(cr);
  }
}

}  // namespace

void write_line_plot(const std::string& path, const std::vector<Panel>& panels, int panel_width, int height) {
  Canvas canvas(panel_width * static_cast<int>(std::max<size_t>(1, panels.size())), height);
  cairo_t* cr = canvas.cr.get();
  for (size_t p = 0; p < panels.size(); ++p) {
    const Panel& panel = panels[p];
    Axes ax{static_cast<double>(p) * panel_width + kLeft,
            kTop,
            panel_width - kLeft - kRight,
            height - kTop - kBottom,
            {},
            {}};
    for (const auto& s : panel.series) {
      for (double v : s.x) ax.xr.add(v);
      for (double v : s.y) ax.yr.add(v);
    }
    ax.xr.finish();
    ax.yr.finish();
    ax.draw(cr, panel.title, panel.xlabel, panel.ylabel);
    std::vector<std::string> names;
    for (size_t i = 0; i < panel.series.size(); ++i) {
      draw_series(cr, ax, panel.series[i], kPalette[i % kPaletteSize]);
      names.push_back(panel.series[i].name);
    }
    legend(cr, names, ax.x0 + ax.w, ax.y0, /*points=*/false);
  }
  canvas.save(path);
}

void write_scatter_plot(const std::string& path, const Scatter& s, int width, int height) {
  Canvas canvas(width, height);
  cairo_t* cr = canvas.cr.get();
  const double legend_w = 110;
  Axes ax{kLeft, kTop, width - kLeft - kRight - legend_w, height - kTop - kBottom, {}, {}};
  for (double v : s.x) ax.xr.add(v);
  for (double v : s.y) ax.yr.add(v);
  ax.xr.finish();
  ax.yr.finish();
  ax.draw(cr, s.title, s.xlabel, s.ylabel);
  cairo_save(cr);
  cairo_rectangle(cr, ax.x0, ax.y0, ax.w, ax.h);
  cairo_clip(cr);
  for (size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i) {
    const int64_t g = i < s.group.size() ? s.group[i] : 0;
    const Rgb c = kPalette[static_cast<size_t>(g) % kPaletteSize];
    cairo_set_source_rgba(cr, c.r, c.g, c.b, 0.6);
    cairo_arc(cr, ax.px(s.x[i]), ax.py(s.y[i]), 2.2, 0, 2 * M_PI);
    cairo_fill(cr);
  }
  cairo_restore(cr);
  legend(cr, s.group_names, width - 4, kTop, /*points=*/true);
  canvas.save(path);
}

#else  // !VAE_WITH_PLOTS

bool plots_available() { return false; }

namespace {
[[noreturn]] void no_cairo(const std::string& path) {
  throw UsageError(fmt::format("{}: this vae_ddp was built without cairo (libcairo2-dev), which draws plots", path));
}
}  // namespace

void write_line_plot(const std::string& path, const std::vector<Panel>&, int, int) { no_cairo(path); }
void write_scatter_plot(const std::string& path, const Scatter&, int, int) { no_cairo(path); }

#endif  // VAE_WITH_PLOTS

}  // namespace vae
