// equilab — PNG charts without a plotting library: line charts, bar charts and image grids.
//
// Everything is drawn into an RGB Canvas (lines, rectangles, 5x7 bitmap text from font5x7.h) and written with
// stb_image_write. Charts' draw/save_png return the PlotArea they used — the pixel rectangle of the axes and the
// data range it shows — so a caller (or a test) can map data coordinates to pixels.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/tensor.h"

namespace eq {

struct Rgb {
  uint8_t r = 0, g = 0, b = 0;
  bool operator==(const Rgb& o) const { return r == o.r && g == o.g && b == o.b; }
  bool operator!=(const Rgb& o) const { return !(*this == o); }
};

constexpr Rgb kWhite{255, 255, 255};
constexpr Rgb kBlack{0, 0, 0};

// The colour of series i in charts (a 10-colour qualitative palette, then repeating).
Rgb series_color(int i);

class Canvas {
 public:
  Canvas(int width, int height, Rgb background = kWhite);
  int width() const { return width_; }
  int height() const { return height_; }
  Rgb pixel(int x, int y) const;  // throws when outside

  // Drawing ignores whatever falls outside the canvas (or outside the clip rectangle, when one is set).
  void set(int x, int y, Rgb c);
  void fill_rect(int x0, int y0, int x1, int y1, Rgb c);  // pixels x0 <= x < x1, y0 <= y < y1
  void rect_outline(int x0, int y0, int x1, int y1, Rgb c);
  void line(double x0, double y0, double x1, double y1, Rgb c, int thickness = 1);
  // Text with its top-left corner at (x, y); every font pixel becomes a scale x scale block.
  void text(int x, int y, const std::string& s, Rgb c, int scale = 1);
  // Text turned 90 degrees counter-clockwise (reads bottom to top), its bounding box's top-left at (x, y).
  void text_vertical(int x, int y, const std::string& s, Rgb c, int scale = 1);
  static int text_width(const std::string& s, int scale = 1);
  static int text_height(int scale = 1);

  void set_clip(int x0, int y0, int x1, int y1);  // restrict drawing to x0 <= x < x1, y0 <= y < y1
  void clear_clip();

  // [3, H, W] in [0, 1], and as a PNG file (errors name the file).
  Tensor to_tensor() const;
  void save_png(const std::string& path) const;

 private:
  int width_, height_;
  int clip_x0_, clip_y0_, clip_x1_, clip_y1_;
  std::vector<uint8_t> rgb_;  // interleaved, row-major
};

// A curve: y[i] at x[i]; an empty x means 0, 1, 2, ... Non-finite values (and, on a log axis, values <= 0)
// leave a gap in the line.
struct Series {
  std::string name;
  std::vector<double> x, y;
};

// The axes rectangle in pixels (left <= x <= right, top <= y <= bottom) and the data range it spans.
struct PlotArea {
  int left = 0, top = 0, right = 0, bottom = 0;
  double x_min = 0, x_max = 1, y_min = 0, y_max = 1;
  bool log_y = false;
  double to_pixel_x(double x) const;
  double to_pixel_y(double y) const;
};

// A line chart: named series, axes with tick labels, title, axis labels, a legend right of the axes when any
// series has a name, optionally a log-scaled y axis.
//
//   LineChart chart("loss", "epoch", "cross-entropy");
//   chart.add_series("train", epochs, train_loss).add_series("test", epochs, test_loss);
//   chart.save_png("out/loss.png");
struct LineChart {
  std::string title, x_label, y_label;
  std::vector<Series> series;
  bool log_y = false;
  int text_scale = 1;  // tick labels and legend; the title is drawn one size larger

  explicit LineChart(std::string title = "", std::string x_label = "", std::string y_label = "");
  LineChart& add_series(std::string name, std::vector<double> x, std::vector<double> y);
  LineChart& add_series(std::string name, std::vector<double> y);  // at x = 0, 1, 2, ...
  LineChart& set_log_y(bool on = true);

  // Draws into the rectangle [x, x + width) x [y, y + height) of the canvas.
  PlotArea draw(Canvas& canvas, int x, int y, int width, int height) const;
  PlotArea save_png(const std::string& path, int width = 800, int height = 500) const;
};

// Several charts side by side in one PNG, each chart_width x chart_height.
void save_charts_png(const std::string& path, const std::vector<LineChart>& charts, int chart_width = 640,
                     int chart_height = 420);

// One bar per value with its label underneath and its value on top; the y axis always includes 0.
struct BarChart {
  std::string title, x_label, y_label;
  std::vector<std::string> labels;
  std::vector<double> values;
  int text_scale = 1;

  explicit BarChart(std::string title = "", std::string x_label = "", std::string y_label = "");
  BarChart& add_bar(std::string label, double value);
  PlotArea draw(Canvas& canvas, int x, int y, int width, int height) const;
  PlotArea save_png(const std::string& path, int width = 800, int height = 500) const;
};

struct GridOptions {
  int columns = 0;                    // 0: about square
  int scale = 1;                      // each image pixel becomes scale x scale (nearest neighbour)
  int padding = 4;                    // pixels between tiles and around the grid
  std::vector<std::string> captions;  // empty, or one per image (drawn under the tile, cut to fit)
  bool normalize_each = false;        // stretch each tile's min..max to 0..1 (feature maps); else clamp [0, 1]
  std::string title;
};

// Tiles images [N, C, H, W] (C = 1 grey or 3 RGB; [N, H, W] is taken as grey) into one picture.
Canvas image_grid(const Tensor& images, const GridOptions& options = {});
void write_image_grid(const std::string& path, const Tensor& images, const GridOptions& options = {});

// Tick positions for a linear axis covering [lo, hi] with about `target` ticks at 1, 2 or 5 times a power of ten.
std::vector<double> nice_ticks(double lo, double hi, int target = 6);

}  // namespace eq
