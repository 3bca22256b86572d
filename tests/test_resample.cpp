// Warps: grid_sample (hand values, fast vs reference, gradients to input and grid), affine_grid, roll, rot90,
// flips, and how they agree with each other.
#include <doctest/doctest.h>

#include "engine/autograd.h"
#include "engine/parallel.h"
#include "engine/resample.h"
#include "engine/rng.h"
#include "tests/gradcheck.h"
#include "tests/test_helpers.h"

using namespace eq;
using eq::testing::max_abs_diff;
using V = const std::vector<Tensor>&;

namespace {

const GridPadding kPaddings[] = {GridPadding::Zeros, GridPadding::Border, GridPadding::Reflection};
const SampleMode kModes[] = {SampleMode::Bilinear, SampleMode::Nearest};

Tensor one_point_grid(float x, float y) { return Tensor::from({1, 1, 1, 2}, {x, y}); }

float sample_at(const Tensor& img, float x, float y, GridSampleOptions opt) {
  return grid_sample(img, one_point_grid(x, y), opt).item();
}

// Normalised coordinate of pixel coordinate `pos` on an axis of `size` (the inverse of grid_sample's mapping).
float normalise(float pos, int64_t size, bool align_corners) {
  return align_corners ? 2 * pos / static_cast<float>(size - 1) - 1 : (2 * pos + 1) / static_cast<float>(size) - 1;
}

// A grid whose pixel coordinates have fractional parts in [0.15, 0.35] or [0.65, 0.85]: away from the integers
// (bilinear kinks, border clamps at 0 and size-1) and from the half-integers (nearest's rounding, reflections
// about -0.5 and size-0.5), so finite differences see a smooth function. Spans [-2, size+1) in pixels.
Tensor smooth_grid(int64_t N, int64_t Ho, int64_t Wo, int64_t H, int64_t W, bool align_corners, Rng& rng) {
  Tensor g({N, Ho, Wo, 2});
  for (int64_t i = 0; i < g.numel(); ++i) {
    const int64_t size = i % 2 == 0 ? W : H;
    float frac = rng.uniform(0.15f, 0.35f);
    if (rng.bernoulli(0.5f)) frac += 0.5f;
    const float pos = static_cast<float>(rng.randint(size + 3) - 2) + frac;
    g.data()[i] = normalise(pos, size, align_corners);
  }
  return g;
}

Tensor theta_batch(int64_t N, std::vector<float> m) {
  std::vector<float> v;
  for (int64_t n = 0; n < N; ++n) v.insert(v.end(), m.begin(), m.end());
  return Tensor::from({N, 2, 3}, v);
}

}  // namespace

TEST_CASE("resample: grid_sample hand-computed values for every padding and both align flags") {
  // [[1, 2, 3], [4, 5, 6]]: H = 2, W = 3.
  Tensor img = Tensor::from({1, 1, 2, 3}, {1, 2, 3, 4, 5, 6});
  GridSampleOptions opt;
  opt.align_corners = true;  // ix = (x + 1), iy = (y + 1) / 2
  CHECK(sample_at(img, 0, 0, opt) == doctest::Approx(3.5f));     // (1, 0.5): mean of 2 and 5
  CHECK(sample_at(img, 0.5f, -1, opt) == doctest::Approx(2.5f)); // (1.5, 0)
  CHECK(sample_at(img, 1.5f, -1, opt) == doctest::Approx(1.5f)); // ix = 2.5: half of 3, half of a zero
  opt.padding = GridPadding::Border;
  CHECK(sample_at(img, 1.5f, -1, opt) == doctest::Approx(3.0f));  // clamped to 2
  opt.padding = GridPadding::Reflection;
  CHECK(sample_at(img, 1.5f, -1, opt) == doctest::Approx(2.5f));   // 2.5 mirrored about 2 -> 1.5
  CHECK(sample_at(img, -1.5f, -1, opt) == doctest::Approx(1.5f));  // -0.5 mirrored about 0 -> 0.5
  opt.mode = SampleMode::Nearest;
  opt.padding = GridPadding::Zeros;
  CHECK(sample_at(img, 0.4f, 0.2f, opt) == 5.0f);  // (1.4, 0.6) -> pixel (1, 1)

  opt = GridSampleOptions{};  // align_corners = false: ix = ((x + 1) 3 - 1) / 2, iy = ((y + 1) 2 - 1) / 2
  CHECK(sample_at(img, 0, 0, opt) == doctest::Approx(3.5f));      // (1, 0.5)
  CHECK(sample_at(img, -1, -1, opt) == doctest::Approx(0.25f));   // (-0.5, -0.5): a quarter of pixel (0, 0)
  opt.padding = GridPadding::Border;
  CHECK(sample_at(img, -1, -1, opt) == doctest::Approx(1.0f));
  opt.padding = GridPadding::Reflection;
  CHECK(sample_at(img, -1, 1, opt) == doctest::Approx(4.0f));          // (-0.5, 1.5) on the edges -> (0, 1)
  CHECK(sample_at(img, -1.6f / 3 - 1, -1, opt) == doctest::Approx(1.3f));  // ix = -1.3 about -0.5 -> 0.3
  CHECK(sample_at(img, 7.4f / 3 - 1, -1, opt) == doctest::Approx(2.8f));   // ix = 3.2 about 2.5 -> 1.8
  // A non-finite coordinate reads 0 instead of crashing.
  CHECK(sample_at(img, std::nanf(""), 0, opt) == 0.0f);
  CHECK(sample_at(img, 1e30f, 0, GridSampleOptions{}) == 0.0f);
  CHECK(std::isfinite(sample_at(img, 1e30f, -3e25f, {SampleMode::Bilinear, GridPadding::Reflection, false})));
}

TEST_CASE("resample: grid_sample fast kernel equals the reference for every option") {
  Rng rng(11);
  Tensor img = Tensor::randn({2, 3, 5, 7}, rng);
  Tensor grid = Tensor::uniform({2, 4, 6, 2}, rng, -1.6f, 1.6f);
  for (SampleMode mode : kModes)
    for (GridPadding pad : kPaddings)
      for (bool align : {false, true}) {
        GridSampleOptions opt{mode, pad, align};
        INFO("mode " << int(mode) << " padding " << int(pad) << " align " << align);
        CHECK(max_abs_diff(grid_sample(img, grid, opt), grid_sample_reference(img, grid, opt)) < 1e-5f);
      }
  // The comparison is not vacuous: a different convention gives a visibly different result.
  CHECK(max_abs_diff(grid_sample(img, grid, {SampleMode::Bilinear, GridPadding::Zeros, true}),
                     grid_sample_reference(img, grid, {SampleMode::Bilinear, GridPadding::Zeros, false})) > 1e-2f);
}

TEST_CASE("resample: grid_sample gradients to input and grid, every mode, padding and flag") {
  Rng rng(5);
  for (SampleMode mode : kModes)
    for (GridPadding pad : kPaddings)
      for (bool align : {false, true}) {
        INFO("mode " << int(mode) << " padding " << int(pad) << " align " << align);
        Tensor img = Tensor::randn({2, 3, 4, 5}, rng).set_requires_grad();
        Tensor grid = smooth_grid(2, 3, 2, 4, 5, align, rng).set_requires_grad();
        GridSampleOptions opt{mode, pad, align};
        CHECK_GRADIENTS([opt](V t) { return grid_sample(t[0], t[1], opt); }, {img, grid}, {1e-3});
      }
  // Only the grid needs a gradient (the input is a constant image being warped).
  Tensor img = Tensor::randn({1, 2, 3, 3}, rng);
  Tensor grid = smooth_grid(1, 2, 3, 3, 3, false, rng).set_requires_grad();
  CHECK_GRADIENTS([](V t) { return grid_sample(t[0], t[1]); }, {img, grid}, {1e-3});
}

TEST_CASE("resample: affine_grid values and gradient") {
  Tensor identity = theta_batch(1, {1, 0, 0, 0, 1, 0});
  // 2 x 3 grid. align_corners = false: centres at x = -2/3, 0, 2/3 and y = -1/2, 1/2.
  Tensor g = affine_grid(identity, 1, 2, 3, false);
  CHECK(g.shape() == Shape{1, 2, 3, 2});
  CHECK(g.at({0, 0, 0, 0}) == doctest::Approx(-2.0f / 3));
  CHECK(g.at({0, 1, 2, 0}) == doctest::Approx(2.0f / 3));
  CHECK(g.at({0, 0, 1, 1}) == doctest::Approx(-0.5f));
  g = affine_grid(identity, 1, 2, 3, true);  // corners at +-1
  CHECK(g.at({0, 0, 0, 0}) == -1.0f);
  CHECK(g.at({0, 1, 2, 1}) == 1.0f);
  // A general matrix: (x, y) -> (2x + 3y + 0.5, -y + 1) at pixel (1, 2) with align_corners: (x, y) = (1, 1).
  g = affine_grid(theta_batch(1, {2, 3, 0.5f, 0, -1, 1}), 1, 2, 3, true);
  CHECK(g.at({0, 1, 2, 0}) == doctest::Approx(5.5f));
  CHECK(g.at({0, 1, 2, 1}) == doctest::Approx(0.0f));

  Rng rng(2);
  for (bool align : {false, true}) {
    Tensor theta = Tensor::randn({3, 2, 3}, rng).set_requires_grad();
    CHECK_GRADIENTS([align](V t) { return affine_grid(t[0], 3, 4, 5, align); }, {theta});
  }
  // End to end: warp an image by a learnable affine map (away from pixel boundaries: a small rotation-ish theta).
  Tensor img = Tensor::randn({2, 1, 5, 6}, rng);
  Tensor theta = theta_batch(2, {0.83f, 0.11f, 0.07f, -0.09f, 0.91f, 0.13f}).set_requires_grad();
  CHECK_GRADIENTS([img](V t) { return grid_sample(img, affine_grid(t[0], 2, 5, 6, false)); }, {theta}, {1e-3});
}

TEST_CASE("resample: identity theta reproduces the input (both flags, every mode)") {
  Rng rng(3);
  Tensor img = Tensor::randn({2, 3, 5, 6}, rng);
  for (bool align : {false, true})
    for (SampleMode mode : kModes) {
      GridSampleOptions opt{mode, GridPadding::Zeros, align};
      Tensor out = grid_sample(img, affine_grid(theta_batch(2, {1, 0, 0, 0, 1, 0}), 2, 5, 6, align), opt);
      INFO("align " << align << " mode " << int(mode));
      CHECK(max_abs_diff(out, img) < 1e-6f);
    }
  // Larger images: the normalised coordinates carry float rounding (~1e-7 relative), so bilinear blends a ~1e-6
  // share of a neighbour; nearest rounds it away and is exact.
  Tensor big = Tensor::randn({1, 2, 28, 28}, rng);
  for (bool align : {false, true}) {
    Tensor grid = affine_grid(theta_batch(1, {1, 0, 0, 0, 1, 0}), 1, 28, 28, align);
    CHECK(max_abs_diff(grid_sample(big, grid, {SampleMode::Bilinear, GridPadding::Zeros, align}), big) < 2e-5f);
    CHECK(max_abs_diff(grid_sample(big, grid, {SampleMode::Nearest, GridPadding::Zeros, align}), big) == 0.0f);
  }
  // With mismatched flags the identity is not reproduced (the flags mean different things).
  Tensor off = grid_sample(img, affine_grid(theta_batch(2, {1, 0, 0, 0, 1, 0}), 2, 5, 6, true), {});
  CHECK(max_abs_diff(off, img) > 1e-2f);
}

TEST_CASE("resample: integer translation by affine_grid is a zero-filled shift, equal to roll inside") {
  Rng rng(8);
  const int64_t H = 5, W = 6;
  Tensor img = Tensor::randn({1, 2, H, W}, rng);
  const int dy = 1, dx = -2;
  // align_corners = false: one pixel is 2 / size in normalised units. Output (i, j) reads input (i + dy, j + dx).
  Tensor theta = theta_batch(1, {1, 0, 2.0f * dx / W, 0, 1, 2.0f * dy / H});
  for (SampleMode mode : kModes) {
    Tensor out = grid_sample(img, affine_grid(theta, 1, H, W, false), {mode, GridPadding::Zeros, false});
    Tensor rolled = roll(img, -dy, -dx);
    for (int64_t c = 0; c < 2; ++c)
      for (int64_t i = 0; i < H; ++i)
        for (int64_t j = 0; j < W; ++j) {
          const bool inside = i + dy >= 0 && i + dy < H && j + dx >= 0 && j + dx < W;
          const float expect = inside ? img.at({0, c, i + dy, j + dx}) : 0.0f;
          CHECK(out.at({0, c, i, j}) == doctest::Approx(expect).epsilon(1e-5));
          if (inside) CHECK(out.at({0, c, i, j}) == doctest::Approx(rolled.at({0, c, i, j})).epsilon(1e-5));
        }
  }
}

TEST_CASE("resample: roll values, per-sample shifts, gradients") {
  Tensor x = Tensor::from({1, 1, 2, 3}, {1, 2, 3, 4, 5, 6});
  CHECK(roll(x, 0, 1).to_vector() == std::vector<float>{3, 1, 2, 6, 4, 5});
  CHECK(roll(x, 1, 0).to_vector() == std::vector<float>{4, 5, 6, 1, 2, 3});
  CHECK(roll(x, -3, -4).to_vector() == roll(x, 1, 2).to_vector());  // shifts wrap (mod H, mod W)
  Tensor two = Tensor::from({2, 1, 1, 3}, {1, 2, 3, 4, 5, 6});
  CHECK(roll(two, {0, 0}, {1, -1}).to_vector() == std::vector<float>{3, 1, 2, 5, 6, 4});

  Rng rng(4);
  Tensor y = Tensor::randn({3, 2, 4, 5}, rng);
  CHECK(max_abs_diff(roll(roll(y, {1, -2, 7}, {3, 0, -1}), {-1, 2, -7}, {-3, 0, 1}), y) == 0.0f);
  y.set_requires_grad();
  CHECK_GRADIENTS([](V t) { return roll(t[0], {1, -2, 7}, {3, 0, -1}); }, {y});
  CHECK_GRADIENTS([](V t) { return roll(t[0], 2, -3); }, {y});
}

TEST_CASE("resample: rot90 and flips on a hand-computed 2x3 case, four turns are the identity") {
  Tensor x = Tensor::from({1, 2, 3}, {1, 2, 3, 4, 5, 6});  // [[1, 2, 3], [4, 5, 6]]
  CHECK(rot90(x, 1).shape() == Shape{1, 3, 2});
  CHECK(rot90(x, 1).to_vector() == std::vector<float>{3, 6, 2, 5, 1, 4});  // [[3, 6], [2, 5], [1, 4]]
  CHECK(rot90(x, 2).to_vector() == std::vector<float>{6, 5, 4, 3, 2, 1});
  CHECK(rot90(x, 3).to_vector() == std::vector<float>{4, 1, 5, 2, 6, 3});  // [[4, 1], [5, 2], [6, 3]]
  CHECK(rot90(x, -1).to_vector() == rot90(x, 3).to_vector());
  CHECK(rot90(x, 0).to_vector() == x.to_vector());
  CHECK(flip_h(x).to_vector() == std::vector<float>{3, 2, 1, 6, 5, 4});
  CHECK(flip_v(x).to_vector() == std::vector<float>{4, 5, 6, 1, 2, 3});

  Rng rng(6);
  Tensor y = Tensor::randn({2, 3, 4, 5}, rng);
  CHECK(max_abs_diff(rot90(rot90(rot90(rot90(y)))), y) == 0.0f);
  CHECK(max_abs_diff(rot90(y, 2), flip_h(flip_v(y))) == 0.0f);
  y.set_requires_grad();
  for (int k = 0; k < 4; ++k) CHECK_GRADIENTS([k](V t) { return rot90(t[0], k); }, {y});
  CHECK_GRADIENTS([](V t) { return flip_h(t[0]); }, {y});
  CHECK_GRADIENTS([](V t) { return flip_v(t[0]); }, {y});
}

TEST_CASE("resample: grid_sample with a rot90 grid equals rot90 on square images (both flags)") {
  // rot90: out[i, j] = x[j, W-1-i]. In normalised coordinates the output point (x, y) reads the input at (-y, x),
  // theta = [[0, -1, 0], [1, 0, 0]]. Both conventions put pixel centres symmetrically about 0 (c(W-1-i) = -c(i)),
  // so both flags are exact in exact arithmetic; in float, bilinear is off by the coordinates' rounding (0 to
  // ~1e-5 depending on the size, for either flag; < 1e-6 at 5x5) and nearest is exactly equal.
  Rng rng(9);
  Tensor theta = theta_batch(2, {0, -1, 0, 1, 0, 0});
  for (int64_t S : {5, 28}) {
    Tensor img = Tensor::randn({2, 2, S, S}, rng);
    for (bool align : {false, true}) {
      INFO("size " << S << " align " << align);
      Tensor grid = affine_grid(theta, 2, S, S, align);
      CHECK(max_abs_diff(grid_sample(img, grid, {SampleMode::Bilinear, GridPadding::Zeros, align}), rot90(img)) <
            (S == 5 ? 1e-6f : 2e-5f));
      CHECK(max_abs_diff(grid_sample(img, grid, {SampleMode::Nearest, GridPadding::Zeros, align}), rot90(img)) == 0.0f);
    }
  }
}

TEST_CASE("resample: bad input names the op and the shapes") {
  Tensor img({2, 3, 4, 5});
  CHECK_THROWS_NAMING(grid_sample(img, Tensor({1, 4, 5, 2})), "grid_sample", "[1, 4, 5, 2]", "[2, 3, 4, 5]");
  CHECK_THROWS_NAMING(grid_sample(img, Tensor({2, 4, 5, 3})), "grid_sample", "[2, 4, 5, 3]");
  CHECK_THROWS_NAMING(grid_sample(Tensor({3, 4, 5}), Tensor({3, 4, 5, 2})), "grid_sample", "[3, 4, 5]");
  CHECK_THROWS_NAMING(affine_grid(Tensor({2, 3, 3}), 2, 4, 4, false), "affine_grid", "[2, 3, 3]");
  CHECK_THROWS_NAMING(affine_grid(Tensor({2, 2, 3}), 3, 4, 4, false), "affine_grid", "[2, 2, 3]", "N = 3");
  CHECK_THROWS_NAMING(affine_grid(Tensor({2, 2, 3}), 2, 0, 4, false), "affine_grid", "H = 0");
  CHECK_THROWS_NAMING(roll(img, {1, 2, 3}, {0, 0, 0}), "roll", "[2, 3, 4, 5]");
  CHECK_THROWS_NAMING(roll(Tensor({4, 5}), {1, 2}, {0, 0}), "roll", "[4, 5]");
  CHECK_THROWS_NAMING(rot90(Tensor({5}), 1), "rot90", "[5]");
  CHECK_THROWS_NAMING(flip_h(Tensor({5})), "flip_h", "[5]");
}

TEST_CASE("resample: threaded kernels give bitwise the same results as one thread") {
  // Large enough that every parallel loop runs (kParallelGrain); each thread owns its outputs, so the
  // accumulation order, and hence every bit, is independent of the thread count.
  Rng rng(12);
  Tensor img = Tensor::randn({2, 8, 40, 40}, rng).set_requires_grad();
  Tensor theta = theta_batch(2, {0.9f, 0.2f, 0.05f, -0.15f, 1.1f, -0.1f}).set_requires_grad();
  Tensor seed = Tensor::randn({2, 8, 48, 48}, rng);
  auto run = [&](int threads) {
    set_num_threads(threads);
    img.zero_grad();
    theta.zero_grad();
    Tensor out = grid_sample(img, affine_grid(theta, 2, 48, 48, false), {SampleMode::Bilinear, GridPadding::Reflection});
    out.backward(seed);
    return std::vector<Tensor>{out.detach(), img.grad().clone(), theta.grad().clone()};
  };
  const int before = num_threads();
  std::vector<Tensor> one = run(1), two = run(2);
  set_num_threads(before);
  for (size_t k = 0; k < one.size(); ++k) CHECK(max_abs_diff(one[k], two[k]) == 0.0f);
}
