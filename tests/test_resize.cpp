// Resizing and rescaling: hand-computed values per mode, constants stay constant, downscale-by-2 is average
// pooling, agreement with grid_sample, antialiasing, the separable kernel vs its reference, gradients, errors.
#include <doctest/doctest.h>

#include "engine/elementwise.h"
#include "engine/parallel.h"
#include "engine/resample.h"
#include "engine/resize.h"
#include "engine/rng.h"
#include "tests/gradcheck.h"
#include "tests/test_helpers.h"

using namespace eq;
using eq::testing::max_abs_diff;
using V = const std::vector<Tensor>&;

namespace {

const ResizeMode kModes[] = {ResizeMode::Bilinear, ResizeMode::Bicubic, ResizeMode::Area};

std::vector<float> resize_row(std::vector<float> row, int64_t out, ResizeOptions opt) {
  const int64_t n = static_cast<int64_t>(row.size());
  return resize(Tensor::from({1, 1, 1, n}, row), 1, out, opt).to_vector();
}

void check_values(const std::vector<float>& got, const std::vector<float>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-5));
}

Tensor diag_theta(int64_t N, float s) {
  std::vector<float> v;
  for (int64_t n = 0; n < N; ++n) v.insert(v.end(), {s, 0, 0, 0, s, 0});
  return Tensor::from({N, 2, 3}, v);
}

}  // namespace

TEST_CASE("resize: hand-computed values for each mode") {
  // Bilinear upscale 2 -> 4. align_corners = false: src = (o + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25, clamped.
  check_values(resize_row({1, 2}, 4, {}), {1, 1.25f, 1.75f, 2});
  check_values(resize_row({1, 2}, 4, {ResizeMode::Bilinear, true}), {1, 4.0f / 3, 5.0f / 3, 2});
  // Bicubic (a = -0.75), align_corners, 3 -> 5: output 1 sits at src 0.5; taps -1, 0, 1, 2 at distances
  // 1.5, 0.5, 0.5, 1.5 have weights -0.09375, 0.59375, 0.59375, -0.09375; tap -1 clamps to pixel 0.
  check_values(resize_row({1, 0, 0}, 5, {ResizeMode::Bicubic, true}), {1, 0.5f, 0, -0.09375f, 0});
  check_values(resize_row({0, 0, 1}, 5, {ResizeMode::Bicubic, true}), {0, -0.09375f, 0, 0.5f, 1});
  // Area 6 -> 4: cells [0, 2), [1, 3), [3, 5), [4, 6).
  check_values(resize_row({0, 1, 2, 3, 4, 5}, 4, {ResizeMode::Area}), {0.5f, 1.5f, 3.5f, 4.5f});
  // Antialiased bilinear 6 -> 3: a triangle two pixels wide per side, taps (1, 3, 3, 1) / 8 around src = 2o + 0.5;
  // at the left border tap -1 is dropped and the rest renormalised (/ 7/8).
  check_values(resize_row({0, 0, 8, 0, 0, 0}, 3, {ResizeMode::Bilinear, false, true}), {8.0f / 7, 3, 0});
  // Without antialias the same downscale point-samples between pixels 2o and 2o + 1.
  check_values(resize_row({0, 0, 8, 0, 0, 0}, 3, {ResizeMode::Bilinear}), {0, 4, 0});
}

TEST_CASE("resize: a constant image stays constant in every mode, up and down") {
  Tensor c = Tensor::full({2, 3, 7, 5}, -1.5f);
  for (ResizeMode mode : kModes)
    for (bool align : {false, true})
      for (bool aa : {false, true})
        for (auto [h, w] : {std::pair<int64_t, int64_t>{3, 2}, {11, 13}, {7, 5}, {1, 1}, {2, 9}}) {
          INFO("mode " << int(mode) << " align " << align << " antialias " << aa << " -> " << h << "x" << w);
          Tensor out = resize(c, h, w, {mode, align, aa});
          CHECK(out.shape() == Shape{2, 3, h, w});
          CHECK(max_abs_diff(out, Tensor::full(out.shape(), -1.5f)) < 1e-5f);
        }
}

TEST_CASE("resize: bilinear downscale by 2 (align_corners = false) is 2x2 average pooling") {
  Rng rng(1);
  Tensor x = Tensor::randn({2, 3, 6, 8}, rng);
  Tensor out = resize(x, 3, 4);
  Tensor pooled({2, 3, 3, 4});
  for (int64_t p = 0; p < 6; ++p)
    for (int64_t i = 0; i < 3; ++i)
      for (int64_t j = 0; j < 4; ++j) {
        const float* s = x.data() + p * 48;
        pooled.data()[(p * 3 + i) * 4 + j] =
            0.25f * (s[2 * i * 8 + 2 * j] + s[2 * i * 8 + 2 * j + 1] + s[(2 * i + 1) * 8 + 2 * j] + s[(2 * i + 1) * 8 + 2 * j + 1]);
      }
  CHECK(max_abs_diff(out, pooled) < 1e-5f);
  CHECK(max_abs_diff(resize(x, 3, 4, {ResizeMode::Area}), pooled) < 1e-5f);
  CHECK(max_abs_diff(resize(x, 3, 4, {ResizeMode::Bilinear, true}), pooled) > 1e-2f);  // align_corners differs
}

TEST_CASE("resize: bilinear resize equals grid_sample on the identity affine grid with border padding") {
  // Two independent implementations of the same sampling: separable taps vs per-pixel bilinear sampling.
  Rng rng(2);
  Tensor x = Tensor::randn({2, 2, 5, 7}, rng);
  for (bool align : {false, true})
    for (auto [h, w] : {std::pair<int64_t, int64_t>{9, 4}, {3, 13}, {5, 7}}) {
      INFO("align " << align << " -> " << h << "x" << w);
      Tensor grid = affine_grid(diag_theta(2, 1), 2, h, w, align);
      Tensor sampled = grid_sample(x, grid, {SampleMode::Bilinear, GridPadding::Border, align});
      CHECK(max_abs_diff(resize(x, h, w, {ResizeMode::Bilinear, align}), sampled) < 1e-5f);
    }
}

TEST_CASE("resize: antialiasing suppresses aliasing of a fine pattern") {
  // Columns repeat 0, 1, 1, 0: the local mean is 0.5 everywhere. Plain bilinear 4x downscaling samples at
  // src = 4o + 1.5, between the two 1s, and sees only ones; the antialiased filter averages the whole period.
  Tensor stripes({1, 1, 4, 16});
  for (int64_t i = 0; i < stripes.numel(); ++i) stripes.data()[i] = (i % 4 == 1 || i % 4 == 2) ? 1.0f : 0.0f;
  const Tensor half = Tensor::full({1, 1, 4, 4}, 0.5f);
  CHECK(max_abs_diff(resize(stripes, 4, 4, {ResizeMode::Bilinear}), Tensor::ones({1, 1, 4, 4})) < 1e-6f);
  CHECK(max_abs_diff(resize(stripes, 4, 4, {ResizeMode::Bilinear, false, true}), half) < 0.05f);
  CHECK(max_abs_diff(resize(stripes, 4, 4, {ResizeMode::Bicubic, false, true}), half) < 0.05f);
}

TEST_CASE("resize: rescale_about_center") {
  Rng rng(3);
  Tensor x = Tensor::randn({2, 3, 8, 7}, rng);
  // factor 1 is the identity in both modes.
  CHECK(max_abs_diff(rescale_about_center(x, 1.0f, ResizeMode::Bicubic), x) < 1e-6f);
  CHECK(max_abs_diff(rescale_about_center(x, 1.0f, ResizeMode::Bilinear), x) < 1e-6f);
  // Bilinear equals affine_grid + grid_sample with theta = diag(1 / factor), zeros padding, align_corners = false.
  for (float f : {0.3f, 0.55f, 1.7f}) {
    INFO("factor " << f);
    Tensor grid = affine_grid(diag_theta(2, 1 / f), 2, 8, 7, false);
    CHECK(max_abs_diff(rescale_about_center(x, f, ResizeMode::Bilinear),
                       grid_sample(x, grid, {SampleMode::Bilinear, GridPadding::Zeros, false})) < 1e-5f);
  }
  // Shrinking a constant image: the centre keeps its value, the border becomes zero.
  Tensor c = Tensor::ones({1, 1, 28, 28});
  for (bool aa : {false, true}) {
    Tensor small = rescale_about_center(c, 0.5f, ResizeMode::Bicubic, aa);
    CHECK(small.at({0, 0, 14, 13}) == doctest::Approx(1.0f).epsilon(1e-4));
    CHECK(small.at({0, 0, 0, 0}) == 0.0f);
    CHECK(small.at({0, 0, 3, 14}) == 0.0f);
  }
  // Shrinking by 0.5 about the centre of an 8-wide axis: output 3 reads src (3.5 - 4) / 0.5 + 3.5 = 2.5, the mean
  // of 2 and 3; on the 2-high axis output 0 reads src -0.5, half of row 0 and half of the zero canvas.
  Tensor rows = Tensor::ones({2, 1}) * Tensor::from({1, 8}, {0, 1, 2, 3, 4, 5, 6, 7});
  Tensor half = rescale_about_center(rows, 0.5f, ResizeMode::Bilinear);
  CHECK(half.at({0, 3}) == doctest::Approx(0.5f * 2.5f));
}

TEST_CASE("resize: separable kernel equals its direct reference on random maps") {
  Rng rng(4);
  auto random_taps = [&](int64_t in, int64_t out) {
    AxisTaps t;
    t.in_size = in;
    for (int64_t o = 0; o < out; ++o) {
      const int64_t n = rng.randint(4);
      for (int64_t k = 0; k < n; ++k) t.add(rng.randint(in), rng.uniform(-1, 1));
      t.end_row();
    }
    return t;
  };
  Tensor x = Tensor::randn({2, 3, 5, 6}, rng).set_requires_grad();
  AxisTaps rows = random_taps(5, 7), cols = random_taps(6, 4);
  CHECK(max_abs_diff(apply_separable(x, rows, cols, "test"), apply_separable_reference(x, rows, cols)) < 1e-5f);
  CHECK_GRADIENTS([&](V t) { return apply_separable(t[0], rows, cols, "test"); }, {x});
}

TEST_CASE("resize: gradients for every mode, flag and antialias, up and down, odd sizes") {
  Rng rng(5);
  Tensor x = Tensor::randn({2, 2, 5, 7}, rng).set_requires_grad();
  for (ResizeMode mode : kModes)
    for (bool align : {false, true})
      for (bool aa : {false, true})
        for (auto [h, w] : {std::pair<int64_t, int64_t>{3, 2}, {9, 11}}) {
          INFO("mode " << int(mode) << " align " << align << " antialias " << aa << " -> " << h << "x" << w);
          ResizeOptions opt{mode, align, aa};
          CHECK_GRADIENTS([opt, h = h, w = w](V t) { return resize(t[0], h, w, opt); }, {x});
        }
  for (ResizeMode mode : {ResizeMode::Bilinear, ResizeMode::Bicubic})
    for (bool aa : {false, true}) {
      CHECK_GRADIENTS([mode, aa](V t) { return rescale_about_center(t[0], 0.6f, mode, aa); }, {x});
      CHECK_GRADIENTS([mode, aa](V t) { return rescale_about_center(t[0], 1.4f, mode, aa); }, {x});
    }
}

TEST_CASE("resize: bad input names the op and the shapes") {
  Tensor x({1, 2, 4, 4});
  CHECK_THROWS_NAMING(resize(x, 0, 3), "resize", "[1, 2, 4, 4]", "0 x 3");
  CHECK_THROWS_NAMING(resize(x, 3, -1), "resize", "[1, 2, 4, 4]");
  CHECK_THROWS_NAMING(resize(Tensor({5}), 3, 3), "resize", "[5]");
  CHECK_THROWS_NAMING(resize(Tensor({1, 0, 4}), 3, 3), "resize", "[1, 0, 4]");
  CHECK_THROWS_NAMING(rescale_about_center(x, 0.0f), "rescale_about_center", "factor", "[1, 2, 4, 4]");
  CHECK_THROWS_NAMING(rescale_about_center(x, 0.5f, ResizeMode::Area), "rescale_about_center", "area");
  AxisTaps three;
  three.in_size = 3;
  three.add(0, 1);
  three.end_row();
  CHECK_THROWS_NAMING(apply_separable(x, three, three, "myop"), "myop", "[1, 2, 4, 4]");
}

TEST_CASE("resize: threaded kernels give bitwise the same results as one thread") {
  Rng rng(13);
  Tensor x = Tensor::randn({2, 8, 50, 45}, rng).set_requires_grad();
  Tensor seed = Tensor::randn({2, 8, 37, 61}, rng);
  auto run = [&](int threads) {
    set_num_threads(threads);
    x.zero_grad();
    Tensor out = resize(x, 37, 61, {ResizeMode::Bicubic, false, true});
    out.backward(seed);
    return std::vector<Tensor>{out.detach(), x.grad().clone()};
  };
  const int before = num_threads();
  std::vector<Tensor> one = run(1), two = run(2);
  set_num_threads(before);
  for (size_t k = 0; k < one.size(); ++k) CHECK(max_abs_diff(one[k], two[k]) == 0.0f);
}
