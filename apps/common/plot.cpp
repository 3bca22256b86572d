#include "apps/common/plot.h"

#include <stb/stb_image_write.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "apps/common/font5x7.h"
#include "engine/error.h"

namespace eq {

namespace {
constexpr Rgb kAxisColor{60, 60, 60};
constexpr Rgb kGridColor{228, 228, 228};
constexpr Rgb kTextColor{20, 20, 20};
}  // namespace

Rgb series_color(int i) {
  // Matplotlib's "tab10": distinct hues that stay tellable apart on white.
  static const Rgb palette[10] = {{31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},  {148, 103, 189},
                                  {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};
  return palette[((i % 10) + 10) % 10];
}

// --- Canvas ------------------------------------------------------------------------------------------------------

Canvas::Canvas(int width, int height, Rgb background) : width_(width), height_(height) {
  if (width < 1 || height < 1 || width > 1 << 14 || height > 1 << 14)
    fail("Canvas: size ", width, "x", height, " is outside 1..16384 pixels per side");
  rgb_.resize(static_cast<size_t>(width) * height * 3);
  for (size_t p = 0; p < rgb_.size(); p += 3) {
    rgb_[p] = background.r;
    rgb_[p + 1] = background.g;
    rgb_[p + 2] = background.b;
  }
  clear_clip();
}

Rgb Canvas::pixel(int x, int y) const {
  if (x < 0 || y < 0 || x >= width_ || y >= height_)
    fail("Canvas::pixel: (", x, ", ", y, ") is outside the ", width_, "x", height_, " canvas");
  const size_t p = (static_cast<size_t>(y) * width_ + x) * 3;
  return {rgb_[p], rgb_[p + 1], rgb_[p + 2]};
}

void Canvas::set(int x, int y, Rgb c) {
  if (x < clip_x0_ || y < clip_y0_ || x >= clip_x1_ || y >= clip_y1_) return;
  const size_t p = (static_cast<size_t>(y) * width_ + x) * 3;
  rgb_[p] = c.r;
  rgb_[p + 1] = c.g;
  rgb_[p + 2] = c.b;
}

void Canvas::set_clip(int x0, int y0, int x1, int y1) {
  clip_x0_ = std::max(0, x0);
  clip_y0_ = std::max(0, y0);
  clip_x1_ = std::min(width_, x1);
  clip_y1_ = std::min(height_, y1);
}

void Canvas::clear_clip() { set_clip(0, 0, width_, height_); }

void Canvas::fill_rect(int x0, int y0, int x1, int y1, Rgb c) {
  for (int y = std::max(y0, clip_y0_); y < std::min(y1, clip_y1_); ++y)
    for (int x = std::max(x0, clip_x0_); x < std::min(x1, clip_x1_); ++x) set(x, y, c);
}

void Canvas::rect_outline(int x0, int y0, int x1, int y1, Rgb c) {
  fill_rect(x0, y0, x1, y0 + 1, c);
  fill_rect(x0, y1 - 1, x1, y1, c);
  fill_rect(x0, y0, x0 + 1, y1, c);
  fill_rect(x1 - 1, y0, x1, y1, c);
}

void Canvas::line(double x0, double y0, double x1, double y1, Rgb c, int thickness) {
  if (!std::isfinite(x0) || !std::isfinite(y0) || !std::isfinite(x1) || !std::isfinite(y1)) return;
  // Keep far-away endpoints (a log axis near 0, a huge outlier) from making the loop below enormous.
  const double limit = 4.0 * (width_ + height_);
  auto clampc = [&](double v) { return std::max(-limit, std::min(limit, v)); };
  x0 = clampc(x0), y0 = clampc(y0), x1 = clampc(x1), y1 = clampc(y1);
  const int steps = static_cast<int>(std::ceil(std::max(std::fabs(x1 - x0), std::fabs(y1 - y0))));
  const int before = (thickness - 1) / 2;
  for (int i = 0; i <= steps; ++i) {
    const double t = steps ? static_cast<double>(i) / steps : 0.0;
    const int x = static_cast<int>(std::lround(x0 + t * (x1 - x0))) - before;
    const int y = static_cast<int>(std::lround(y0 + t * (y1 - y0))) - before;
    fill_rect(x, y, x + thickness, y + thickness, c);
  }
}

int Canvas::text_width(const std::string& s, int scale) {
  return s.empty() ? 0 : (static_cast<int>(s.size()) * font5x7::kAdvance - 1) * scale;
}

int Canvas::text_height(int scale) { return font5x7::kGlyphHeight * scale; }

void Canvas::text(int x, int y, const std::string& s, Rgb c, int scale) {
  for (size_t i = 0; i < s.size(); ++i)
    for (int row = 0; row < font5x7::kGlyphHeight; ++row)
      for (int col = 0; col < font5x7::kGlyphWidth; ++col)
        if (font5x7::ink(s[i], col, row)) {
          const int px = x + (static_cast<int>(i) * font5x7::kAdvance + col) * scale, py = y + row * scale;
          fill_rect(px, py, px + scale, py + scale, c);
        }
}

void Canvas::text_vertical(int x, int y, const std::string& s, Rgb c, int scale) {
  // Horizontal text position (u, v) lands at (v, width - 1 - u): a quarter turn counter-clockwise.
  const int w = text_width(s, 1);
  for (size_t i = 0; i < s.size(); ++i)
    for (int row = 0; row < font5x7::kGlyphHeight; ++row)
      for (int col = 0; col < font5x7::kGlyphWidth; ++col)
        if (font5x7::ink(s[i], col, row)) {
          const int u = static_cast<int>(i) * font5x7::kAdvance + col;
          const int px = x + row * scale, py = y + (w - 1 - u) * scale;
          fill_rect(px, py, px + scale, py + scale, c);
        }
}

Tensor Canvas::to_tensor() const {
  Tensor t({3, height_, width_});
  const int64_t plane = static_cast<int64_t>(width_) * height_;
  for (int64_t p = 0; p < plane; ++p)
    for (int k = 0; k < 3; ++k) t.data()[k * plane + p] = rgb_[p * 3 + k] * (1.0f / 255.0f);
  return t;
}

void Canvas::save_png(const std::string& path) const {
  if (!stbi_write_png(path.c_str(), width_, height_, 3, rgb_.data(), width_ * 3))
    fail("save_png: ", path, ": could not write the file (missing folder or no permission?)");
}

// --- axes --------------------------------------------------------------------------------------------------------

double PlotArea::to_pixel_x(double x) const {
  return left + (x - x_min) / (x_max - x_min) * (right - left);
}

double PlotArea::to_pixel_y(double y) const {
  const double v = log_y ? std::log10(y) : y;
  const double lo = log_y ? std::log10(y_min) : y_min, hi = log_y ? std::log10(y_max) : y_max;
  return bottom - (v - lo) / (hi - lo) * (bottom - top);
}

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!std::isfinite(lo) || !std::isfinite(hi) || hi <= lo || target < 2) return {};
  const double raw = (hi - lo) / (target - 1);
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  const double fraction = raw / magnitude;
  const double step = (fraction < 1.5 ? 1 : fraction < 3 ? 2 : fraction < 7 ? 5 : 10) * magnitude;
  std::vector<double> ticks;
  for (double k = std::ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k += 1) {
    const double v = k * step;
    ticks.push_back(std::fabs(v) < step * 1e-9 ? 0.0 : v);  // no "-0" or 1e-17 at zero
  }
  return ticks;
}

namespace {

// Labels for evenly spaced ticks: just enough decimals to tell neighbours apart.
std::string tick_label(double v, double step) {
  char buf[32];
  const double a = std::fabs(v);
  if (a != 0 && (a >= 1e6 || a < 1e-4)) {
    std::snprintf(buf, sizeof buf, "%.2g", v);
  } else {
    const int decimals = step > 0 ? std::max(0, std::min(6, static_cast<int>(std::ceil(-std::log10(step) - 1e-9))))
                                  : 2;
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  }
  return buf;
}

std::string log_tick_label(double v) {
  char buf[32];
  const double e = std::log10(v);
  if (e >= -3 && e <= 5)
    std::snprintf(buf, sizeof buf, "%g", v);
  else
    std::snprintf(buf, sizeof buf, "%.0e", v);
  return buf;
}

struct Range {
  double lo = std::numeric_limits<double>::infinity(), hi = -std::numeric_limits<double>::infinity();
  void add(double v) {
    if (!std::isfinite(v)) return;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  bool empty() const { return lo > hi; }
};

// Widens a degenerate or empty range so an axis can be drawn, then pads it by `pad` of its width on both sides.
void finish_range(Range& r, double pad) {
  if (r.empty()) r.lo = 0, r.hi = 1;
  if (r.hi == r.lo) {
    const double d = std::max(std::fabs(r.lo) * 0.1, 0.5);
    r.lo -= d, r.hi += d;
  }
  const double w = r.hi - r.lo;
  r.lo -= pad * w, r.hi += pad * w;
}

struct Ticks {
  std::vector<double> values;
  std::vector<std::string> labels;
};

Ticks linear_ticks(double lo, double hi, int target) {
  Ticks t;
  t.values = nice_ticks(lo, hi, target);
  const double step = t.values.size() > 1 ? t.values[1] - t.values[0] : 0;
  for (double v : t.values) t.labels.push_back(tick_label(v, step));
  return t;
}

// Powers of ten inside [lo, hi]; with fewer than three of them, also 2x and 5x, and failing that linear ticks.
Ticks log_ticks(double lo, double hi) {
  Ticks t;
  const int e0 = static_cast<int>(std::floor(std::log10(lo))), e1 = static_cast<int>(std::ceil(std::log10(hi)));
  const int every = std::max(1, (e1 - e0) / 8);
  for (const bool with_2_and_5 : {false, true}) {
    t.values.clear();
    for (int e = e0; e <= e1; ++e) {
      if (!with_2_and_5 && (e - e0) % every != 0) continue;
      for (double m : with_2_and_5 ? std::vector<double>{1, 2, 5} : std::vector<double>{1}) {
        const double v = m * std::pow(10.0, e);
        if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) t.values.push_back(v);
      }
    }
    if (t.values.size() >= 3) break;
  }
  if (t.values.size() < 2) return linear_ticks(lo, hi, 5);
  for (double v : t.values) t.labels.push_back(log_tick_label(v));
  return t;
}

int max_label_width(const std::vector<std::string>& labels, int scale) {
  int w = 0;
  for (const std::string& s : labels) w = std::max(w, Canvas::text_width(s, scale));
  return w;
}

// Fits a string into `width` pixels, ending in ".." when it had to be cut.
std::string fit_text(const std::string& s, int width, int scale) {
  if (Canvas::text_width(s, scale) <= width) return s;
  const int chars = (width / scale + 1) / font5x7::kAdvance;
  if (chars <= 2) return s.substr(0, std::max(0, chars));
  return s.substr(0, chars - 2) + "..";
}

// The frame shared by line and bar charts: title, axis labels, y ticks with grid lines, and the plot rectangle.
// x ticks are drawn by the caller (numbers for line charts, category names for bar charts).
struct Frame {
  int x, y, width, height;  // the chart's rectangle on the canvas
  int scale;
  std::string title, x_label, y_label;
  int legend_width = 0;  // room to keep right of the axes
};

PlotArea layout_and_draw_frame(Canvas& c, const Frame& f, double y_lo, double y_hi, bool log_y,
                               const Ticks& y_ticks) {
  const int s = f.scale, big = s + 1;
  const int title_h = f.title.empty() ? 0 : Canvas::text_height(big) + 10;
  const int y_label_w = f.y_label.empty() ? 0 : Canvas::text_height(s) + 8;
  const int tick_w = max_label_width(y_ticks.labels, s);
  PlotArea a;
  a.left = f.x + 8 + y_label_w + tick_w + 6;
  a.top = f.y + 8 + title_h;
  a.right = f.x + f.width - 1 - std::max(16, f.legend_width);
  a.bottom = f.y + f.height - 1 - (6 + Canvas::text_height(s) + (f.x_label.empty() ? 0 : 8 + Canvas::text_height(s)) + 8);
  if (a.right - a.left < 40 || a.bottom - a.top < 30)
    fail("plot: a ", f.width, "x", f.height, " chart leaves no room for its axes (make it larger)");
  a.y_min = y_lo, a.y_max = y_hi, a.log_y = log_y;

  if (!f.title.empty())
    c.text(f.x + (f.width - Canvas::text_width(f.title, big)) / 2, f.y + 8, fit_text(f.title, f.width - 8, big),
           kTextColor, big);
  if (!f.y_label.empty()) {
    const int h = Canvas::text_width(f.y_label, s);
    c.text_vertical(f.x + 6, (a.top + a.bottom - h) / 2, f.y_label, kTextColor, s);
  }
  if (!f.x_label.empty())
    c.text((a.left + a.right - Canvas::text_width(f.x_label, s)) / 2, f.y + f.height - 8 - Canvas::text_height(s),
           f.x_label, kTextColor, s);
  for (size_t i = 0; i < y_ticks.values.size(); ++i) {
    const int py = static_cast<int>(std::lround(a.to_pixel_y(y_ticks.values[i])));
    if (py < a.top || py > a.bottom) continue;
    c.fill_rect(a.left + 1, py, a.right, py + 1, kGridColor);
    c.fill_rect(a.left - 4, py, a.left, py + 1, kAxisColor);
    c.text(a.left - 6 - Canvas::text_width(y_ticks.labels[i], s), py - Canvas::text_height(s) / 2,
           y_ticks.labels[i], kTextColor, s);
  }
  return a;
}

}  // namespace

// --- line chart --------------------------------------------------------------------------------------------------

LineChart::LineChart(std::string t, std::string xl, std::string yl)
    : title(std::move(t)), x_label(std::move(xl)), y_label(std::move(yl)) {}

LineChart& LineChart::add_series(std::string name, std::vector<double> x, std::vector<double> y) {
  if (!x.empty() && x.size() != y.size())
    fail("LineChart::add_series: series '", name, "' has ", x.size(), " x values but ", y.size(), " y values");
  series.push_back({std::move(name), std::move(x), std::move(y)});
  return *this;
}

LineChart& LineChart::add_series(std::string name, std::vector<double> y) {
  return add_series(std::move(name), {}, std::move(y));
}

LineChart& LineChart::set_log_y(bool on) {
  log_y = on;
  return *this;
}

PlotArea LineChart::draw(Canvas& c, int x, int y, int width, int height) const {
  const int s = std::max(1, text_scale);
  auto x_at = [](const Series& sr, size_t i) { return sr.x.empty() ? static_cast<double>(i) : sr.x[i]; };
  auto usable = [&](double v) { return std::isfinite(v) && (!log_y || v > 0); };

  Range xr, yr;
  for (const Series& sr : series)
    for (size_t i = 0; i < sr.y.size(); ++i)
      if (usable(sr.y[i]) && std::isfinite(x_at(sr, i))) {
        xr.add(x_at(sr, i));
        yr.add(log_y ? std::log10(sr.y[i]) : sr.y[i]);
      }
  finish_range(xr, 0.0);
  finish_range(yr, 0.05);  // a little air above and below the curves
  const double y_lo = log_y ? std::pow(10.0, yr.lo) : yr.lo, y_hi = log_y ? std::pow(10.0, yr.hi) : yr.hi;
  const Ticks y_ticks = log_y ? log_ticks(y_lo, y_hi) : linear_ticks(y_lo, y_hi, std::max(3, height / 70));

  Frame f{x, y, width, height, s, title, x_label, y_label, 0};
  bool any_name = false;
  int name_w = 0;
  for (const Series& sr : series) {
    any_name |= !sr.name.empty();
    name_w = std::max(name_w, Canvas::text_width(sr.name, s));
  }
  if (any_name) f.legend_width = std::min(width / 3, 12 + 18 + 6 + name_w + 8);
  PlotArea a = layout_and_draw_frame(c, f, y_lo, y_hi, log_y, y_ticks);
  a.x_min = xr.lo, a.x_max = xr.hi;

  const Ticks x_ticks = linear_ticks(a.x_min, a.x_max, std::max(3, (a.right - a.left) / 70));
  for (size_t i = 0; i < x_ticks.values.size(); ++i) {
    const int px = static_cast<int>(std::lround(a.to_pixel_x(x_ticks.values[i])));
    c.fill_rect(px, a.top, px + 1, a.bottom, kGridColor);
    c.fill_rect(px, a.bottom + 1, px + 1, a.bottom + 5, kAxisColor);
    c.text(px - Canvas::text_width(x_ticks.labels[i], s) / 2, a.bottom + 7, x_ticks.labels[i], kTextColor, s);
  }

  c.set_clip(a.left, a.top, a.right + 1, a.bottom + 1);
  for (size_t k = 0; k < series.size(); ++k) {
    const Series& sr = series[k];
    const Rgb color = series_color(static_cast<int>(k));
    const bool markers = sr.y.size() <= 40;  // few points (epochs): show where they are
    bool have_prev = false;
    double px0 = 0, py0 = 0;
    for (size_t i = 0; i < sr.y.size(); ++i) {
      if (!usable(sr.y[i]) || !std::isfinite(x_at(sr, i))) {
        have_prev = false;
        continue;
      }
      const double px = a.to_pixel_x(x_at(sr, i)), py = a.to_pixel_y(sr.y[i]);
      if (have_prev) c.line(px0, py0, px, py, color, 2);
      if (markers) {
        const int mx = static_cast<int>(std::lround(px)), my = static_cast<int>(std::lround(py));
        c.fill_rect(mx - 2, my - 2, mx + 3, my + 3, color);
      }
      px0 = px, py0 = py, have_prev = true;
    }
  }
  c.clear_clip();
  c.rect_outline(a.left, a.top, a.right + 1, a.bottom + 1, kAxisColor);

  if (any_name) {
    int ly = a.top + 4;
    for (size_t k = 0; k < series.size(); ++k) {
      if (series[k].name.empty()) continue;
      const int mid = ly + Canvas::text_height(s) / 2;
      c.fill_rect(a.right + 12, mid - 1, a.right + 30, mid + 1, series_color(static_cast<int>(k)));
      c.text(a.right + 36, ly, fit_text(series[k].name, x + width - (a.right + 36) - 2, s), kTextColor, s);
      ly += font5x7::kLineHeight * s + 6;
    }
  }
  return a;
}

PlotArea LineChart::save_png(const std::string& path, int width, int height) const {
  Canvas c(width, height);
  const PlotArea a = draw(c, 0, 0, width, height);
  c.save_png(path);
  return a;
}

void save_charts_png(const std::string& path, const std::vector<LineChart>& charts, int chart_width,
                     int chart_height) {
  if (charts.empty()) fail("save_charts_png: ", path, ": no charts given");
  Canvas c(chart_width * static_cast<int>(charts.size()), chart_height);
  for (size_t i = 0; i < charts.size(); ++i)
    charts[i].draw(c, static_cast<int>(i) * chart_width, 0, chart_width, chart_height);
  c.save_png(path);
}

// --- bar chart ---------------------------------------------------------------------------------------------------

BarChart::BarChart(std::string t, std::string xl, std::string yl)
    : title(std::move(t)), x_label(std::move(xl)), y_label(std::move(yl)) {}

BarChart& BarChart::add_bar(std::string label, double value) {
  labels.push_back(std::move(label));
  values.push_back(value);
  return *this;
}

PlotArea BarChart::draw(Canvas& c, int x, int y, int width, int height) const {
  if (values.empty()) fail("BarChart: '", title, "' has no bars");
  const int s = std::max(1, text_scale);
  Range r;
  r.add(0.0);
  for (double v : values) r.add(v);
  finish_range(r, 0.0);
  // Air only on the side away from zero, for the value labels; bars keep standing on the axis.
  const double w = r.hi - r.lo;
  if (r.hi > 0) r.hi += 0.08 * w;
  if (r.lo < 0) r.lo -= 0.08 * w;
  const Ticks y_ticks = linear_ticks(r.lo, r.hi, std::max(3, height / 70));
  PlotArea a = layout_and_draw_frame(c, Frame{x, y, width, height, s, title, x_label, y_label, 0}, r.lo, r.hi,
                                     false, y_ticks);
  const int n = static_cast<int>(values.size());
  a.x_min = -0.5, a.x_max = n - 0.5;
  const double slot = static_cast<double>(a.right - a.left) / n;
  const int zero = static_cast<int>(std::lround(a.to_pixel_y(0.0)));
  for (int i = 0; i < n; ++i) {
    const double center = a.to_pixel_x(i);
    const int x0 = static_cast<int>(std::lround(center - 0.35 * slot)), x1 = static_cast<int>(std::lround(center + 0.35 * slot));
    if (std::isfinite(values[i])) {
      const int top = static_cast<int>(std::lround(a.to_pixel_y(values[i])));
      c.fill_rect(std::min(x0, x1 - 1), std::min(top, zero), std::max(x1, x0 + 1), std::max(top, zero) + 1,
                  series_color(0));
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.3g", values[i]);
      const std::string value = fit_text(buf, static_cast<int>(slot), s);
      const int ty = values[i] >= 0 ? top - 3 - Canvas::text_height(s) : top + 3;
      c.text(static_cast<int>(center) - Canvas::text_width(value, s) / 2, ty, value, kTextColor, s);
    }
    const std::string label = i < static_cast<int>(labels.size()) ? fit_text(labels[i], static_cast<int>(slot) - 2, s) : "";
    c.text(static_cast<int>(center) - Canvas::text_width(label, s) / 2, a.bottom + 7, label, kTextColor, s);
  }
  c.fill_rect(a.left, zero, a.right + 1, zero + 1, kAxisColor);
  c.rect_outline(a.left, a.top, a.right + 1, a.bottom + 1, kAxisColor);
  return a;
}

PlotArea BarChart::save_png(const std::string& path, int width, int height) const {
  Canvas c(width, height);
  const PlotArea a = draw(c, 0, 0, width, height);
  c.save_png(path);
  return a;
}

// --- image grid --------------------------------------------------------------------------------------------------

Canvas image_grid(const Tensor& images, const GridOptions& o) {
  const Shape& sh = images.shape();
  if (sh.size() != 3 && sh.size() != 4)
    fail("image_grid: expected images [N, C, H, W] or [N, H, W] but got shape ", sh);
  const int64_t n = sh[0], ch = sh.size() == 4 ? sh[1] : 1, h = sh[sh.size() - 2], w = sh[sh.size() - 1];
  if (ch != 1 && ch != 3)
    fail("image_grid: images need 1 (grey) or 3 (RGB) channels but shape ", sh, " has ", ch,
         " (show feature maps as [N*C, 1, H, W])");
  if (n < 1 || h < 1 || w < 1) fail("image_grid: no pixels to show in shape ", sh);
  if (!o.captions.empty() && static_cast<int64_t>(o.captions.size()) != n)
    fail("image_grid: ", o.captions.size(), " captions for ", n, " images");
  if (o.scale < 1 || o.padding < 0) fail("image_grid: scale must be >= 1 and padding >= 0");
  const int cols = static_cast<int>(o.columns > 0 ? std::min<int64_t>(o.columns, n)
                                                  : std::ceil(std::sqrt(static_cast<double>(n))));
  const int rows = static_cast<int>((n + cols - 1) / cols);
  const int tile_w = static_cast<int>(w) * o.scale, tile_h = static_cast<int>(h) * o.scale;
  const int caption_h = o.captions.empty() ? 0 : font5x7::kLineHeight + 3;
  const int title_h = o.title.empty() ? 0 : font5x7::kLineHeight * 2 + 6;
  const int pad = o.padding;
  const int width = std::max(pad + cols * (tile_w + pad), o.title.empty() ? 1 : Canvas::text_width(o.title, 2) + 8);
  Canvas c(width, title_h + pad + rows * (tile_h + caption_h + pad), Rgb{245, 245, 245});
  if (!o.title.empty()) c.text(4, 5, o.title, kTextColor, 2);

  const int64_t plane = h * w;
  for (int64_t i = 0; i < n; ++i) {
    const float* img = images.data() + i * ch * plane;
    float lo = 0, hi = 1;
    if (o.normalize_each) {
      lo = std::numeric_limits<float>::infinity(), hi = -lo;
      for (int64_t k = 0; k < ch * plane; ++k)
        if (std::isfinite(img[k])) lo = std::min(lo, img[k]), hi = std::max(hi, img[k]);
      if (!(hi > lo)) hi = lo + 1;  // a flat (or all non-finite) tile shows as black
    }
    auto byte = [&](float v) {
      const float t = std::isfinite(v) ? (v - lo) / (hi - lo) : 0.0f;
      return static_cast<uint8_t>(std::lround(std::min(1.0f, std::max(0.0f, t)) * 255.0f));
    };
    const int x0 = pad + static_cast<int>(i % cols) * (tile_w + pad);
    const int y0 = title_h + pad + static_cast<int>(i / cols) * (tile_h + caption_h + pad);
    for (int64_t yy = 0; yy < h; ++yy)
      for (int64_t xx = 0; xx < w; ++xx) {
        const int64_t p = yy * w + xx;
        const Rgb color = ch == 1 ? Rgb{byte(img[p]), byte(img[p]), byte(img[p])}
                                  : Rgb{byte(img[p]), byte(img[plane + p]), byte(img[2 * plane + p])};
        const int px = x0 + static_cast<int>(xx) * o.scale, py = y0 + static_cast<int>(yy) * o.scale;
        c.fill_rect(px, py, px + o.scale, py + o.scale, color);
      }
    if (!o.captions.empty()) {
      const std::string cap = fit_text(o.captions[i], tile_w + pad, 1);
      c.text(x0 + (tile_w - Canvas::text_width(cap, 1)) / 2, y0 + tile_h + 2, cap, kTextColor, 1);
    }
  }
  return c;
}

void write_image_grid(const std::string& path, const Tensor& images, const GridOptions& options) {
  image_grid(images, options).save_png(path);
}

}  // namespace eq
