// PNG charts: sizes, curves drawn where the axes say, log axes, bars, image grids, the bitmap font, tick choice.
#include <doctest/doctest.h>

#include <cmath>

#include "apps/common/font5x7.h"
#include "apps/common/plot.h"
#include "engine/image_io.h"
#include "tests/temp_dir.h"
#include "tests/test_helpers.h"

using namespace eq;
using eq::testing::TempDir;

namespace {

// The colour at (x, y) of a [3, H, W] tensor loaded from a PNG.
Rgb rgb_at(const Tensor& img, int x, int y) {
  auto byte = [&](int c) { return static_cast<uint8_t>(std::lround(img.at({c, y, x}) * 255)); };
  return {byte(0), byte(1), byte(2)};
}

// How many pixels of row y, between columns x0 and x1, have colour c.
int count_in_row(const Tensor& img, int y, int x0, int x1, Rgb c) {
  int n = 0;
  for (int x = x0; x <= x1; ++x) n += rgb_at(img, x, y) == c;
  return n;
}

}  // namespace

TEST_CASE("plot: a line chart PNG has the requested size and the curves where the axes put them") {
  TempDir dir("plot_line");
  LineChart chart("three levels", "x", "y");
  std::vector<double> x, zero, one, two;
  for (int i = 0; i <= 10; ++i) x.push_back(i), zero.push_back(0), one.push_back(1), two.push_back(2);
  chart.add_series("zero", x, zero).add_series("one", x, one).add_series("two", x, two);
  const std::string path = dir.file("line.png");
  const PlotArea a = chart.save_png(path, 500, 320);
  Tensor img = load_image(path, 3);
  REQUIRE(img.shape() == Shape{3, 320, 500});
  CHECK(a.left > 0);
  CHECK(a.right < 499);
  CHECK(a.y_min < 0);  // 5% air below the lowest curve
  CHECK(a.y_max > 2);
  // The data range maps exactly onto the axes rectangle.
  CHECK(a.to_pixel_x(a.x_min) == a.left);
  CHECK(a.to_pixel_x(a.x_max) == a.right);
  CHECK(a.to_pixel_y(a.y_min) == a.bottom);
  CHECK(a.to_pixel_y(a.y_max) == a.top);
  CHECK(a.x_min == 0);
  CHECK(a.x_max == 10);

  int non_white = 0;
  for (int y = 0; y < 320; ++y) non_white += 500 - count_in_row(img, y, 0, 499, kWhite);
  CHECK(non_white > 2000);

  // The y = 1 series is a horizontal line in its own colour across the plot, in the row the axes map 1 to.
  const int row = static_cast<int>(std::lround(a.to_pixel_y(1.0)));
  const int span = a.right - a.left - 20;
  CHECK(count_in_row(img, row, a.left + 10, a.right - 10, series_color(1)) > span * 9 / 10);
  CHECK(count_in_row(img, row - 10, a.left + 10, a.right - 10, series_color(1)) == 0);
  // y = 2 sits above y = 1 (image rows grow downwards), y = 0 below.
  CHECK(count_in_row(img, static_cast<int>(std::lround(a.to_pixel_y(2.0))), a.left + 10, a.right - 10,
                     series_color(2)) > span * 9 / 10);
  CHECK(a.to_pixel_y(2.0) < a.to_pixel_y(1.0));
  CHECK(a.to_pixel_y(0.0) > a.to_pixel_y(1.0));
  // A wrong row would fail: the row half-way between the levels holds none of the three colours.
  const int between = static_cast<int>(std::lround(a.to_pixel_y(1.5)));
  for (int k = 0; k < 3; ++k) CHECK(count_in_row(img, between, a.left + 10, a.right - 10, series_color(k)) == 0);
}

TEST_CASE("plot: log-y places decades evenly and skips values <= 0") {
  Canvas c(400, 300);
  LineChart chart;
  chart.add_series("", {1, 10, 100, 1000, 0, -5}).set_log_y();
  const PlotArea a = chart.draw(c, 0, 0, 400, 300);
  CHECK(a.log_y);
  const double d1 = a.to_pixel_y(1) - a.to_pixel_y(10), d2 = a.to_pixel_y(10) - a.to_pixel_y(100);
  CHECK(d1 == doctest::Approx(d2));
  CHECK(d1 > 0);
  // The curve passes through (1, 10): that pixel is painted in the series colour.
  CHECK(c.pixel(static_cast<int>(std::lround(a.to_pixel_x(1))), static_cast<int>(std::lround(a.to_pixel_y(10)))) ==
        series_color(0));
  CHECK(a.x_max == 3);  // the points at x = 4 and 5 (0 and -5) cannot be drawn on a log axis
}

TEST_CASE("plot: charts side by side, bar charts, and a chart too small to draw") {
  TempDir dir("plot_more");
  LineChart a("a"), b("b");
  a.add_series("s", {1, 2, 3});
  b.add_series("s", {3, 2, 1});
  save_charts_png(dir.file("two.png"), {a, b}, 300, 200);
  CHECK(load_image(dir.file("two.png")).shape() == Shape{3, 200, 600});

  BarChart bars("bars", "class", "value");
  bars.add_bar("a", 1.0).add_bar("b", 2.0).add_bar("c", 0.5);
  Canvas c(420, 300);
  const PlotArea p = bars.draw(c, 0, 0, 420, 300);
  CHECK(p.y_min == 0);
  const int bx = static_cast<int>(std::lround(p.to_pixel_x(1)));  // bar "b"
  CHECK(c.pixel(bx, static_cast<int>(std::lround(p.to_pixel_y(1.9)))) == series_color(0));
  CHECK(c.pixel(bx, static_cast<int>(std::lround(p.to_pixel_y(2.1)))) != series_color(0));
  const int cx = static_cast<int>(std::lround(p.to_pixel_x(2)));  // bar "c" stops at 0.5
  CHECK(c.pixel(cx, static_cast<int>(std::lround(p.to_pixel_y(0.4)))) == series_color(0));
  CHECK(c.pixel(cx, static_cast<int>(std::lround(p.to_pixel_y(0.8)))) != series_color(0));

  CHECK_THROWS_NAMING(LineChart("tiny").save_png(dir.file("tiny.png"), 60, 40), "60x40");
  CHECK_THROWS_NAMING(BarChart("none").save_png(dir.file("none.png")), "no bars");
  CHECK_THROWS_NAMING(LineChart().add_series("bad", {1, 2}, {1, 2, 3}), "bad", "2 x values", "3 y values");
}

TEST_CASE("plot: image grid tiles, scale, padding and captions") {
  // Three 2x2 grey images, values 0.0 / 0.5 / 1.0 at pixel (0, 0).
  Tensor images({3, 1, 2, 2}, 0.25f);
  images.data()[0] = 0.0f;
  images.data()[4] = 0.5f;
  images.data()[8] = 1.0f;
  GridOptions o;
  o.columns = 2;
  o.scale = 3;
  o.padding = 1;
  Canvas c = image_grid(images, o);
  // 2 columns of 6-pixel tiles with 1-pixel padding: 1 + 2 * 7 = 15 wide; 2 rows: 15 high.
  CHECK(c.width() == 15);
  CHECK(c.height() == 15);
  CHECK(c.pixel(1, 1) == Rgb{0, 0, 0});        // image 0, pixel (0, 0), scaled 3x
  CHECK(c.pixel(3, 3) == Rgb{0, 0, 0});
  CHECK(c.pixel(4, 4) == Rgb{64, 64, 64});     // image 0, pixel (1, 1) = 0.25
  CHECK(c.pixel(8, 1) == Rgb{128, 128, 128});  // image 1 in column 2
  CHECK(c.pixel(1, 8) == Rgb{255, 255, 255});  // image 2 on the second row
  CHECK(c.pixel(0, 0) == Rgb{245, 245, 245});  // padding

  o.captions = {"a", "b", "c"};
  Canvas captioned = image_grid(images, o);
  CHECK(captioned.height() == 15 + 2 * (font5x7::kLineHeight + 3));
  o.captions = {"a"};
  CHECK_THROWS_NAMING(image_grid(images, o), "1 captions", "3 images");
  CHECK_THROWS_NAMING(image_grid(Tensor({2, 5, 4, 4})), "[2, 5, 4, 4]", "channels");

  GridOptions norm;
  norm.normalize_each = true;
  Tensor feature = Tensor::from({1, 1, 1, 2}, {-3.0f, 5.0f});
  Canvas n = image_grid(feature, norm);
  CHECK(n.pixel(4, 4) == Rgb{0, 0, 0});
  CHECK(n.pixel(5, 4) == Rgb{255, 255, 255});
}

TEST_CASE("plot: the bitmap font draws the glyph table") {
  Canvas c(20, 12);
  c.text(1, 2, "A", kBlack);
  // 'A' is ".###." on top and "#...#" below.
  CHECK(c.pixel(1, 2) == kWhite);
  CHECK(c.pixel(2, 2) == kBlack);
  CHECK(c.pixel(4, 2) == kBlack);
  CHECK(c.pixel(5, 2) == kWhite);
  CHECK(c.pixel(1, 3) == kBlack);
  CHECK(c.pixel(5, 3) == kBlack);
  CHECK(c.pixel(3, 3) == kWhite);
  CHECK(Canvas::text_width("AB") == 11);
  CHECK(Canvas::text_width("AB", 2) == 22);
  // Vertical text reads bottom to top: the box is glyph-high wide and text-wide tall.
  Canvas v(12, 20);
  v.text_vertical(0, 0, "AB", kBlack);
  int max_x = -1, max_y = -1;
  for (int y = 0; y < 20; ++y)
    for (int x = 0; x < 12; ++x)
      if (v.pixel(x, y) == kBlack) max_x = std::max(max_x, x), max_y = std::max(max_y, y);
  CHECK(max_x < font5x7::kGlyphHeight);
  CHECK(max_y == Canvas::text_width("AB") - 1);
  // Every printable character has ink, except the space.
  for (char ch = 33; ch < 127; ++ch) {
    bool inked = false;
    for (int r = 0; r < font5x7::kGlyphHeight; ++r)
      for (int col = 0; col < font5x7::kGlyphWidth; ++col) inked |= font5x7::ink(ch, col, r);
    CHECK_MESSAGE(inked, "character '" << ch << "' is blank");
  }
}

TEST_CASE("plot: nice ticks") {
  const std::vector<double> unit = nice_ticks(0, 1, 6);
  REQUIRE(unit.size() == 6);
  for (int i = 0; i < 6; ++i) CHECK(unit[i] == doctest::Approx(0.2 * i));
  const std::vector<double> t = nice_ticks(-0.13, 2.37, 6);
  REQUIRE(t.size() == 5);
  CHECK(t.front() == doctest::Approx(0.0));
  CHECK(t.back() == doctest::Approx(2.0));
  CHECK(nice_ticks(3, 3).empty());
  const std::vector<double> big = nice_ticks(0, 469, 5);
  CHECK(big == std::vector<double>{0, 100, 200, 300, 400});
}
