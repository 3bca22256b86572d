// Deep Scale-Spaces layers: the Gaussian and bilinear liftings, ScaleConv (against independent dilated convs and a
// direct-loop reference, hand-computed values, exact scale equivariance), DeformScaleConv (reduces to ScaleConv,
// equivariant with integer offsets), scale and per-scale pooling, batch norm over scales, gradient checks, errors.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>

#include "engine/autograd.h"
#include "engine/blur.h"
#include "engine/conv.h"
#include "engine/elementwise.h"
#include "engine/parallel.h"
#include "engine/pool.h"
#include "engine/reduce.h"
#include "engine/rng.h"
#include "engine/shape_ops.h"
#include "layers/batch_norm.h"
#include "layers/bilinear_scale_lift.h"
#include "layers/deform_scale_conv.h"
#include "layers/scale_conv.h"
#include "layers/scale_lift.h"
#include "layers/scale_pool.h"
#include "tests/gradcheck.h"
#include "tests/test_helpers.h"

using namespace eq;
using eq::testing::max_abs_diff;

namespace {

// Scale s of [N, C, S, H, W] as [N, C, H, W].
Tensor level(const Tensor& x, int64_t s) { return reshape(slice(x, 2, s, s + 1), {x.size(0), x.size(1), x.size(3), x.size(4)}); }

// D_b: every b-th pixel of the last two axes, starting at pixel 0.
Tensor subsample(const Tensor& x, int64_t b) {
  return slice(slice(x, -1, 0, x.size(-1), b), -2, 0, x.size(-2), b);
}

// ||a - b|| / ||a||.
double relative_error(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  double d = 0, n = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double e = double(a.data()[i]) - b.data()[i];
    d += e * e;
    n += double(a.data()[i]) * a.data()[i];
  }
  return std::sqrt(d / n);
}

// A lifting built from explicit sigmas (circular borders, radius 4 sigma as ScaleLift), to try wrong formulas.
Tensor lift_with_sigmas(const Tensor& x, const std::vector<float>& sigmas) {
  std::vector<Tensor> levels;
  for (float s : sigmas)
    levels.push_back(s == 0 ? x : gaussian_blur(x, s, static_cast<int>(std::ceil(4 * s)), PadMode::Circular));
  return stack(levels, 2);
}

// The discrete scale action on a lifting: blur by t_1 (sigma_1), keep every b-th pixel. Returns the worst relative
// error over k of  D_b(lift(x)_{k+1})  vs  lift(D_b(blur_{sigma_1} x))_k.
double scale_shift_error(const Tensor& x, const std::vector<float>& sigmas, int64_t b) {
  const Tensor lifted = lift_with_sigmas(x, sigmas);
  const Tensor coarse = subsample(gaussian_blur(x, sigmas[1], static_cast<int>(std::ceil(4 * sigmas[1])),
                                                PadMode::Circular), b);
  const Tensor lifted_coarse = lift_with_sigmas(coarse, sigmas);
  double worst = 0;
  for (size_t k = 0; k + 1 < sigmas.size(); ++k)
    worst = std::max(worst, relative_error(subsample(level(lifted, k + 1), b), level(lifted_coarse, k)));
  return worst;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// Gaussian lifting
// ---------------------------------------------------------------------------------------------------------------

TEST_CASE("scale space: sigma_k = sigma0 sqrt(b^2k - 1), and an impulse spreads with variance t_k") {
  const auto s = scale_space_sigmas(3, 2.0f, 0.25f);
  REQUIRE(s.size() == 3);
  CHECK(s[0] == 0.0f);
  CHECK(s[1] == doctest::Approx(0.25 * std::sqrt(3.0)));
  CHECK(s[2] == doctest::Approx(0.25 * std::sqrt(15.0)));
  // Measured, not recomputed: the second moment of a lifted impulse is the variance t_k of its level.
  const int64_t size = 61, c = 30;
  Tensor impulse({1, 1, size, size});
  impulse.data()[c * size + c] = 1;
  const float sigma0 = 1.2f, base = 2;
  Tensor lifted = ScaleLift(3, base, sigma0).forward(impulse);
  REQUIRE(lifted.shape() == Shape{1, 1, 3, size, size});
  CHECK(max_abs_diff(level(lifted, 0), impulse) == 0);  // scale 0 is the input
  for (int k = 1; k < 3; ++k) {
    double mass = 0, second = 0;
    for (int64_t y = 0; y < size; ++y)
      for (int64_t x = 0; x < size; ++x) {
        const double v = lifted.at({0, 0, k, y, x});
        mass += v, second += v * (x - c) * (x - c);
      }
    const double t_k = sigma0 * sigma0 * (std::pow(base, 2.0 * k) - 1);
    CHECK(mass == doctest::Approx(1.0).epsilon(1e-5));
    CHECK(second / mass == doctest::Approx(t_k).epsilon(0.01));
  }
}

TEST_CASE("scale space: lifting is scale-equivariant — D_b lift(x)_{k+1} = lift(D_b blur_{t_1} x)_k") {
  // Continuous version: b^2 t_k + t_1 = t_{k+1}, so keeping every b-th pixel of scale k+1 gives scale k of the
  // lifting of the downscaled input (blur by t_1, then subsample). Discretely two errors remain: aliasing of the
  // subsampling (the Gaussian of variance t_1 must cut the frequencies above the coarse Nyquist limit) and the
  // sampled kernel. Measured on 64x64 white noise, circular borders, b = 2, S = 4 (relative L2 error, worst k):
  //   sigma0 = 1.0: 4.6e-5 (correct formula)   sigma0 = 0.8: 1.1e-3   sigma0 = 0.5: 1.2e-1 (aliasing)
  // and, at sigma0 = 1, wrong sigma formulas: sigma0 b^k 0.12, sigma_1 b^(k-1) 0.12, t_k = k t_1 0.46,
  // sigma0 (b^k - 1) 0.42. A tolerance of 1e-3 separates them by two orders of magnitude each way.
  Rng rng(31);
  Tensor x = Tensor::randn({1, 2, 64, 64}, rng);
  const float sigma0 = 1.0f, b = 2;
  const auto sigmas = scale_space_sigmas(4, b, sigma0);
  // ScaleLift itself (circular) must equal the explicit construction used for the wrong formulas below.
  CHECK(max_abs_diff(gaussian_scale_lift(x, 4, b, sigma0, PadMode::Circular), lift_with_sigmas(x, sigmas)) == 0);
  const double tolerance = 1e-3;
  CHECK(scale_shift_error(x, sigmas, 2) < tolerance);
  const double s0 = sigma0;
  const std::vector<std::vector<float>> wrong = {
      {0.0f, float(s0 * b), float(s0 * b * b), float(s0 * b * b * b)},             // sigma_k = sigma0 b^k
      {0.0f, sigmas[1], float(sigmas[1] * std::sqrt(2.0)), float(sigmas[1] * std::sqrt(3.0))},  // t_k = k t_1
      {0.0f, sigmas[1], sigmas[1] * b, sigmas[1] * b * b},                         // sigma_k = sigma_1 b^(k-1)
      {0.0f, float(s0 * (b - 1)), float(s0 * (b * b - 1)), float(s0 * (b * b * b - 1))},  // sigma0 (b^k - 1)
  };
  for (const auto& w : wrong) CHECK(scale_shift_error(x, w, 2) > 100 * tolerance);
  // "sigma large enough": at sigma0 = 0.5 the subsampling aliases and the property no longer holds.
  CHECK(scale_shift_error(x, scale_space_sigmas(4, b, 0.5f), 2) > 10 * tolerance);
}

TEST_CASE("scale space: the levels form a semigroup; blurring the input by t_1 shifts the stack only at k = 0") {
  Rng rng(32);
  Tensor x = Tensor::randn({1, 1, 48, 48}, rng);
  const auto sigmas = scale_space_sigmas(3, 2.0f, 1.0f);
  Tensor lifted = gaussian_scale_lift(x, 3, 2.0f, 1.0f, PadMode::Circular);
  auto blur = [](const Tensor& t, double sigma) {
    return gaussian_blur(t, float(sigma), static_cast<int>(std::ceil(4 * sigma)), PadMode::Circular);
  };
  for (int k = 0; k < 2; ++k) {
    // Scale k+1 = scale k blurred by the variance increment t_{k+1} - t_k.
    const double increment = std::sqrt(double(sigmas[k + 1]) * sigmas[k + 1] - double(sigmas[k]) * sigmas[k]);
    CHECK(relative_error(level(lifted, k + 1), blur(level(lifted, k), increment)) < 1e-3);
  }
  // Blurring the input by t_1 and lifting gives scale 1 at k = 0 exactly, but at k = 1 variance 2 t_1, not
  // t_2 = 5 t_1 (b = 2): without subsampling the shift is not a symmetry of a geometric ladder.
  Tensor lifted_blurred = gaussian_scale_lift(blur(x, sigmas[1]), 3, 2.0f, 1.0f, PadMode::Circular);
  CHECK(max_abs_diff(level(lifted_blurred, 0), level(lifted, 1)) == 0);
  CHECK(relative_error(level(lifted, 2), level(lifted_blurred, 1)) > 0.1);
}

TEST_CASE("scale space: gaussian lifting keeps zero-padded borders like the DSS code") {
  // Zeros (default): a constant image darkens at the border of blurred scales; Reflect keeps it constant.
  Tensor ones = Tensor::ones({1, 1, 9, 9});
  Tensor zero_padded = ScaleLift(2, 2.0f, 1.0f).forward(ones);
  Tensor reflected = ScaleLift(2, 2.0f, 1.0f, PadMode::Reflect).forward(ones);
  CHECK(zero_padded.at({0, 0, 1, 0, 0}) < 0.5f);
  CHECK(zero_padded.at({0, 0, 1, 4, 4}) > 0.9f);
  for (float v : reflected.to_vector()) CHECK(v == doctest::Approx(1.0f));
}

// ---------------------------------------------------------------------------------------------------------------
// Bilinear lifting (DSS v2)
// ---------------------------------------------------------------------------------------------------------------

TEST_CASE("scale space: bilinear lifting on hand-computed values") {
  // A ramp 0 1 2 3 along W (4 rows alike). Scale 1 (b = 2): down to 2 columns, sources 0.5 and 2.5 -> 0.5, 2.5;
  // back up to 4 columns, sources -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1) -> 0.5, 1, 2, 2.5.
  // Scale 2 (b^2 = 4): one column, source 1.5 -> 1.5; back up: 1.5 everywhere.
  Tensor x({1, 1, 4, 4});
  for (int64_t y = 0; y < 4; ++y)
    for (int64_t c = 0; c < 4; ++c) x.data()[y * 4 + c] = float(c);
  Tensor lifted = BilinearScaleLift(3, 2.0f).forward(x);
  REQUIRE(lifted.shape() == Shape{1, 1, 3, 4, 4});
  CHECK(max_abs_diff(level(lifted, 0), x) == 0);
  const float scale1[4] = {0.5f, 1.0f, 2.0f, 2.5f};
  for (int64_t y = 0; y < 4; ++y)
    for (int64_t c = 0; c < 4; ++c) {
      CHECK(lifted.at({0, 0, 1, y, c}) == doctest::Approx(scale1[c]));
      CHECK(lifted.at({0, 0, 2, y, c}) == doctest::Approx(1.5f));
    }
  // Constants stay constant at every scale, with or without antialiasing, on odd sizes too.
  for (bool aa : {false, true})
    for (float v : bilinear_scale_lift(Tensor::full({2, 3, 7, 9}, 3.0f), 3, 2.0f, aa).to_vector())
      CHECK(v == doctest::Approx(3.0f));
}

// ---------------------------------------------------------------------------------------------------------------
// ScaleConv
// ---------------------------------------------------------------------------------------------------------------

TEST_CASE("scale conv: hand-computed values (1x1 kernel over scales, dilated 3x3 on an impulse)") {
  // 1x1, Ks = 2, S = 3, scale s constant s + 1, w = [2, 10], bias 0.5:
  // out_0 = 2*1 + 10*2 + .5 = 22.5, out_1 = 2*2 + 10*3 + .5 = 34.5, out_2 = 2*3 + .5 = 6.5 (top: one term).
  Tensor x({1, 1, 3, 2, 2});
  for (int64_t s = 0; s < 3; ++s)
    for (int64_t i = 0; i < 4; ++i) x.data()[s * 4 + i] = float(s + 1);
  Tensor out = scale_conv(x, Tensor::from({1, 1, 2, 1, 1}, {2, 10}), Tensor::from({1}, {0.5f}), 2.0f);
  REQUIRE(out.shape() == Shape{1, 1, 3, 2, 2});
  const float expected[3] = {22.5f, 34.5f, 6.5f};
  for (int64_t s = 0; s < 3; ++s)
    for (int64_t i = 0; i < 4; ++i) CHECK(out.data()[s * 4 + i] == expected[s]);

  // 3x3 taps 1..9, Ks = 1, base 3, an impulse at the centre (4, 4) of scale 1 of a 9x9 map: scale 1 uses dilation
  // 3, so tap (i, j) lands at (4 - 3(i - 1), 4 - 3(j - 1)): w[2][2] = 9 at (1, 1), w[1][1] = 5 at (4, 4),
  // w[0][0] = 1 at (7, 7), w[2][0] = 7 at (1, 7); all else 0, and scale 0 (no impulse there) is 0.
  Tensor impulse({1, 1, 2, 9, 9});
  impulse.data()[81 + 4 * 9 + 4] = 1;
  Tensor w = Tensor::from({1, 1, 1, 3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9});
  Tensor y = scale_conv(impulse, w, Tensor(), 3.0f);
  CHECK(y.at({0, 0, 1, 1, 1}) == 9);
  CHECK(y.at({0, 0, 1, 4, 4}) == 5);
  CHECK(y.at({0, 0, 1, 7, 7}) == 1);
  CHECK(y.at({0, 0, 1, 1, 7}) == 7);
  CHECK(y.at({0, 0, 1, 4, 1}) == 6);
  double total = 0;
  for (float v : y.to_vector()) total += v;
  CHECK(total == 45);  // each tap exactly once, nothing else
  for (int64_t i = 0; i < 81; ++i) CHECK(y.data()[i] == 0);
}

TEST_CASE("scale conv: with Ks = 1 it is S independent dilated conv2d calls") {
  // The same products as conv2d, but the scales share one GEMM, whose blocking may sum them in another order: equal
  // to float rounding (a wrong dilation, scale or tap differs by O(1)).
  Rng rng(33);
  const int64_t N = 2, Cin = 3, Cout = 4, S = 3, H = 11, W = 9;
  for (float base : {2.0f, 3.0f}) {
    Tensor x = Tensor::randn({N, Cin, S, H, W}, rng);
    Tensor w = Tensor::randn({Cout, Cin, 1, 3, 3}, rng);
    Tensor b = Tensor::randn({Cout}, rng);
    Tensor out = scale_conv(x, w, b, base);
    int dilation = 1;
    for (int64_t s = 0; s < S; ++s, dilation *= static_cast<int>(base)) {
      Conv2dOptions opt;
      opt.dilation_h = opt.dilation_w = dilation;
      opt.pad_h = opt.pad_w = dilation;
      Tensor expected = conv2d(level(x, s), reshape(w, {Cout, Cin, 3, 3}), b, opt);
      CHECK(max_abs_diff(level(out, s), expected) < 1e-5f);
    }
  }
}

TEST_CASE("scale conv: equals the direct-loop reference (interaction, base, kernel, odd sizes, no bias)") {
  Rng rng(34);
  struct Case {
    int64_t n, cin, cout, S, h, w, ks, k;
    float base;
    bool bias;
  };
  const Case cases[] = {{2, 3, 4, 3, 7, 5, 2, 3, 2, true}, {1, 2, 3, 4, 9, 9, 3, 3, 2, false},
                        {2, 1, 2, 2, 5, 6, 5, 5, 3, true},  // Ks > S: the extra weights are never used
                        {1, 4, 2, 3, 6, 7, 2, 1, 1, true}};  // base 1: no dilation
  for (const Case& c : cases) {
    INFO("S " << c.S << ", Ks " << c.ks << ", k " << c.k << ", base " << c.base);
    Tensor x = Tensor::randn({c.n, c.cin, c.S, c.h, c.w}, rng);
    Tensor w = Tensor::randn({c.cout, c.cin, c.ks, c.k, c.k}, rng);
    Tensor b = c.bias ? Tensor::randn({c.cout}, rng) : Tensor();
    const Tensor expected = scale_conv_reference(x, w, b, c.base);
    eq::testing::poison_next_allocation(expected.numel());  // the output is Tensor::empty: all must be written
    CHECK(max_abs_diff(scale_conv(x, w, b, c.base), expected) < 1e-4f);
  }
}

TEST_CASE("scale conv: forward and every gradient are bit-identical for 1 and 2 threads") {
  // Jobs own their output planes, and the weight gradient is summed per fixed run of jobs, then in run order:
  // nothing depends on which thread ran what.
  Rng rng(43);
  Tensor x = Tensor::randn({5, 3, 4, 12, 19}, rng), w = Tensor::randn({6, 3, 2, 3, 3}, rng);
  Tensor b = Tensor::randn({6}, rng), seed = Tensor::randn({5, 6, 4, 12, 19}, rng);
  auto run = [&](int threads) {
    set_num_threads(threads);
    Tensor xg = x.clone().set_requires_grad(), wg = w.clone().set_requires_grad(), bg = b.clone().set_requires_grad();
    Tensor y = scale_conv(xg, wg, bg, 2.0f);
    y.backward(seed);
    return std::vector<Tensor>{y, xg.grad(), wg.grad(), bg.grad()};
  };
  const int saved_threads = num_threads();
  const std::vector<Tensor> one = run(1), two = run(2);
  set_num_threads(saved_threads);
  for (size_t i = 0; i < one.size(); ++i) {
    INFO("output " << i);
    CHECK(std::memcmp(one[i].data(), two[i].data(), sizeof(float) * one[i].numel()) == 0);
  }
}

TEST_CASE("scale conv: the fast kernels equal the direct loops, forward and every gradient, 1 and 2 threads") {
  // The fast path runs one direct convolution (engine/direct_conv.h) per (sample, scale) job; the cases give rows
  // of 40, 11, 33, 5, 7 and 6 pixels (whole and partial vector chunks), 2-20 output channels (every register block
  // size, two vectors of output rows in the weight gradient), taps that miss every column (dilation 27 on 9
  // columns), Ks exceeding S, 1x1, 3x3 and 5x5 kernels, and fewer jobs than threads as well as more.
  Rng rng(42);
  struct Case {
    int64_t n, cin, cout, S, h, w, ks, k;
    float base;
    bool bias;
  };
  const Case cases[] = {{3, 8, 5, 3, 30, 40, 2, 3, 2, true}, {1, 2, 3, 4, 9, 11, 2, 3, 3, true},
                        {2, 3, 2, 2, 6, 5, 3, 5, 2, false}, {4, 2, 3, 3, 5, 7, 3, 1, 2, true},
                        {2, 3, 4, 4, 8, 6, 4, 3, 1, true}, {2, 5, 20, 3, 12, 33, 2, 3, 2, true}};
  const int saved_threads = num_threads();
  for (int threads : {1, 2}) {
    set_num_threads(threads);
    for (const Case& c : cases) {
      INFO(threads << " threads, N " << c.n << ", Cin " << c.cin << ", S " << c.S << ", " << c.h << "x" << c.w
                   << ", Ks " << c.ks << ", k " << c.k << ", base " << c.base);
      Tensor x = Tensor::randn({c.n, c.cin, c.S, c.h, c.w}, rng);
      Tensor w = Tensor::randn({c.cout, c.cin, c.ks, c.k, c.k}, rng);
      Tensor b = c.bias ? Tensor::randn({c.cout}, rng) : Tensor();
      Tensor seed = Tensor::randn({c.n, c.cout, c.S, c.h, c.w}, rng);
      auto run = [&](bool fast) {
        Tensor xg = x.clone().set_requires_grad(), wg = w.clone().set_requires_grad();
        Tensor bg = c.bias ? b.clone().set_requires_grad() : Tensor();
        Tensor y = fast ? scale_conv(xg, wg, bg, c.base) : scale_conv_reference(xg, wg, bg, c.base);
        y.backward(seed);
        std::vector<Tensor> out = {y, xg.grad(), wg.grad()};
        if (c.bias) out.push_back(bg.grad());
        return out;
      };
      const std::vector<Tensor> fast = run(true), naive = run(false);
      const char* names[] = {"output", "grad input", "grad weight", "grad bias"};
      for (size_t i = 0; i < fast.size(); ++i) {
        INFO(names[i]);
        CHECK(relative_error(naive[i], fast[i]) < 1e-5);
      }
    }
  }
  set_num_threads(saved_threads);
  // The references' own backward (the loops the fast path is held to) against finite differences.
  using V = const std::vector<Tensor>&;
  Tensor x = Tensor::randn({2, 2, 3, 5, 4}, rng).set_requires_grad();
  Tensor w = Tensor::randn({3, 2, 2, 3, 3}, rng).set_requires_grad();
  Tensor b = Tensor::randn({3}, rng).set_requires_grad();
  CHECK_GRADIENTS([](V t) { return scale_conv_reference(t[0], t[1], t[2], 2.0f); }, {x, w, b});
}

TEST_CASE("scale conv: exactly equivariant to 'subsample by b, move up one scale'") {
  // scale_conv(D_b(x[:, :, 1:])) = D_b(scale_conv(x)[:, :, 1:]) because a conv dilated by b^s on D_b z reads
  // exactly the pixels a conv dilated by b^{s+1} reads on z at the kept positions; the top truncation matches.
  Rng rng(35);
  for (float base : {2.0f, 3.0f}) {
    INFO("base " << base);
    const int64_t S = 3, b = static_cast<int64_t>(base);
    Tensor x = Tensor::randn({2, 3, S, 13, 11}, rng);
    Tensor w = Tensor::randn({4, 3, 2, 3, 3}, rng);
    Tensor bias = Tensor::randn({4}, rng);
    Tensor lhs = scale_conv(subsample(slice(x, 2, 1, S), b), w, bias, base);
    Tensor rhs = subsample(slice(scale_conv(x, w, bias, base), 2, 1, S), b);
    CHECK(max_abs_diff(lhs, rhs) < 1e-5f);
    // Without the dilation the relation fails: the check is sharp.
    Tensor lhs_undilated = scale_conv(subsample(slice(x, 2, 1, S), b), w, bias, 1.0f);
    CHECK(max_abs_diff(lhs_undilated, rhs) > 0.1f);
  }
}

TEST_CASE("scale conv: scale_window lays scales s .. s+n-1 side by side as channels c*n + j") {
  Rng rng(41);
  Tensor x = Tensor::randn({2, 3, 4, 5, 3}, rng);
  for (int64_t s = 0; s < 4; ++s) {
    const int64_t n = std::min<int64_t>(2, 4 - s);
    Tensor window = scale_window(x, s, 2);
    REQUIRE(window.shape() == Shape{2, 3 * n, 5, 3});
    for (int64_t b = 0; b < 2; ++b)
      for (int64_t c = 0; c < 3; ++c)
        for (int64_t j = 0; j < n; ++j)
          for (int64_t y = 0; y < 5; ++y)
            for (int64_t xx = 0; xx < 3; ++xx) CHECK(window.at({b, c * n + j, y, xx}) == x.at({b, c, s + j, y, xx}));
  }
  x.set_requires_grad();
  using V = const std::vector<Tensor>&;
  for (int64_t s : {0, 2, 3}) CHECK_GRADIENTS([s](V t) { return scale_window(t[0], s, 2); }, {x});
  CHECK_THROWS_NAMING(scale_window(x, 4, 2), "scale_window", "scale 4", "[2, 3, 4, 5, 3]");
}

TEST_CASE("scale conv: the layer's parameters, initialisation and name") {
  Rng rng(36);
  ScaleConv layer(3, 5, 3, 2, 2.0f, rng);
  auto names = layer.named_parameters();
  REQUIRE(names.size() == 2);
  CHECK(names[0].first == "weight");
  CHECK(layer.weight.shape() == Shape{5, 3, 2, 3, 3});
  CHECK(layer.bias.shape() == Shape{5});
  const float bound = 1.0f / std::sqrt(3.0f * 2 * 9);
  for (float v : layer.weight.to_vector()) CHECK(std::fabs(v) <= bound);
  CHECK(layer.name() == "ScaleConv(3, 5, k=3, Ks=2, base=2)");
  Tensor x = Tensor::randn({2, 3, 4, 6, 6}, rng);
  CHECK(max_abs_diff(layer.forward(x), scale_conv_reference(x, layer.weight, layer.bias, 2.0f)) < 1e-4f);
}

// ---------------------------------------------------------------------------------------------------------------
// DeformScaleConv
// ---------------------------------------------------------------------------------------------------------------

TEST_CASE("deform scale conv: a fresh layer equals ScaleConv (v1) or ScaleConv with halved weights (v2)") {
  Rng rng(37);
  Tensor x = Tensor::randn({2, 4, 3, 9, 7}, rng);
  for (bool modulated : {false, true}) {
    INFO((modulated ? "v2" : "v1"));
    DeformScaleConv layer(4, 3, 3, 2, 2.0f, rng, /*offset_groups=*/2, modulated);
    Tensor w = modulated ? layer.weight * 0.5f : layer.weight;
    CHECK(max_abs_diff(layer.forward(x), scale_conv(x, w, layer.bias, 2.0f)) < 1e-5f);
    CHECK(layer.offset_conv->weight.shape() == Shape{(modulated ? 3 : 2) * 2 * 9, 4, 2, 3, 3});
  }
}

TEST_CASE("deform scale conv: with integer offsets (in grid steps) it keeps ScaleConv's exact equivariance") {
  // A constant raw offset r at every scale moves the taps of scale s by r b^s pixels. On D_b(z) that is r b^s
  // coarse pixels = r b^{s+1} fine pixels: exactly the move of scale s+1 on z. Unscaled offsets would break this.
  Rng rng(38);
  const int64_t S = 3;
  DeformScaleConv layer(2, 3, 3, 2, 2.0f, rng);
  Tensor& ob = layer.offset_conv->bias;  // 18 channels: (dy, dx) per tap, in {-1, 0, 1}
  for (int64_t i = 0; i < ob.numel(); ++i) ob.data()[i] = float(rng.randint(3) - 1);
  Tensor x = Tensor::randn({2, 2, S, 12, 10}, rng);
  Tensor out = layer.forward(x);
  CHECK(max_abs_diff(out, scale_conv(x, layer.weight, layer.bias, 2.0f)) > 0.1f);  // the offsets do something
  Tensor lhs = layer.forward(subsample(slice(x, 2, 1, S), 2));
  Tensor rhs = subsample(slice(out, 2, 1, S), 2);
  CHECK(max_abs_diff(lhs, rhs) < 1e-5f);
}

// ---------------------------------------------------------------------------------------------------------------
// Scale pooling, per-scale 2-D ops, batch norm over scales
// ---------------------------------------------------------------------------------------------------------------

TEST_CASE("scale pool: max and mean over the scale axis; per-scale spatial pooling; BN shares scales") {
  // x[n, c, s, h, w] = 10 s - s^2 + (c + 1) * (h + 1) * w: max over s in {0..3} at s = 3 (21), mean (0+9+16+21)/4.
  Tensor x({2, 3, 4, 4, 4});
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t s = 0; s < 4; ++s)
        for (int64_t h = 0; h < 4; ++h)
          for (int64_t w = 0; w < 4; ++w)
            x.data()[(((n * 3 + c) * 4 + s) * 4 + h) * 4 + w] = float(10 * s - s * s + (c + 1) * (h + 1) * w);
  Tensor mx = ScalePool(ScalePoolMode::Max).forward(x), mn = ScalePool(ScalePoolMode::Mean).forward(x);
  REQUIRE(mx.shape() == Shape{2, 3, 4, 4});
  CHECK(mx.at({1, 2, 3, 1}) == 21 + 3 * 4 * 1);
  CHECK(mn.at({0, 1, 2, 3}) == doctest::Approx(11.5 + 2 * 3 * 3));

  // Per-scale pooling equals pooling each scale on its own.
  Tensor pooled = ScaleMaxPool2d(2).forward(x);
  REQUIRE(pooled.shape() == Shape{2, 3, 4, 2, 2});
  Pool2dOptions two;
  for (int64_t s = 0; s < 4; ++s) CHECK(max_abs_diff(level(pooled, s), max_pool2d(level(x, s), two)) == 0);
  Tensor averaged = ScaleAvgPool2d(3, 1, 1).forward(x);
  Pool2dOptions three;
  three.kernel_h = three.kernel_w = 3, three.stride_h = three.stride_w = 1, three.pad_h = three.pad_w = 1;
  for (int64_t s = 0; s < 4; ++s) CHECK(max_abs_diff(level(averaged, s), avg_pool2d(level(x, s), three)) == 0);

  // BatchNorm(C) on [N, C, S, H, W]: statistics per channel over (N, S, H, W), shared by the scales: each channel
  // has mean 0 overall, but the scales keep their offsets (scale 3 stays above scale 0).
  BatchNorm bn(3);
  Tensor y = bn.forward(x);
  for (int64_t c = 0; c < 3; ++c) {
    double total = 0, s0 = 0, s3 = 0;
    for (int64_t n = 0; n < 2; ++n)
      for (int64_t s = 0; s < 4; ++s)
        for (int64_t i = 0; i < 16; ++i) {
          const double v = y.data()[((n * 3 + c) * 4 + s) * 16 + i];
          total += v;
          if (s == 0) s0 += v;
          if (s == 3) s3 += v;
        }
    CHECK(std::fabs(total) < 1e-3);
    CHECK(s3 > s0 + 10);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Gradient checks (odd sizes) and errors
// ---------------------------------------------------------------------------------------------------------------

TEST_CASE("scale space: gradient checks for every layer, odd sizes") {
  Rng rng(39);
  using V = const std::vector<Tensor>&;
  Tensor img = Tensor::randn({2, 2, 7, 5}, rng).set_requires_grad();
  for (PadMode pad : {PadMode::Zeros, PadMode::Reflect})
    CHECK_GRADIENTS([pad](V t) { return gaussian_scale_lift(t[0], 3, 2.0f, 0.6f, pad); }, {img});
  for (bool aa : {false, true})
    CHECK_GRADIENTS([aa](V t) { return bilinear_scale_lift(t[0], 3, 2.0f, aa); }, {img});

  Tensor x = Tensor::randn({2, 3, 3, 7, 5}, rng).set_requires_grad();
  Tensor w = Tensor::randn({2, 3, 2, 3, 3}, rng).set_requires_grad();
  Tensor b = Tensor::randn({2}, rng).set_requires_grad();
  CHECK_GRADIENTS([](V t) { return scale_conv(t[0], t[1], t[2], 2.0f); }, {x, w, b});
  Tensor w1 = Tensor::randn({4, 3, 3, 1, 1}, rng).set_requires_grad();
  CHECK_GRADIENTS([](V t) { return scale_conv(t[0], t[1], Tensor(), 3.0f); }, {x, w1});

  for (bool modulated : {false, true}) {
    INFO((modulated ? "deform scale conv v2" : "deform scale conv v1"));
    DeformScaleConv layer(3, 2, 3, 2, 2.0f, rng, 1, modulated);
    // Raw offsets near 0.3 / -0.7 grid steps, i.e. 0.3, 0.6, 1.2 / -0.7, -1.4, -2.8 pixels at dilations 1, 2, 4:
    // at least 0.2 away from the kinks of bilinear sampling at integer positions, with small weights so that the
    // input moves them by a few hundredths only.
    Tensor& ow = layer.offset_conv->weight;
    Tensor& ob = layer.offset_conv->bias;
    for (int64_t i = 0; i < ow.numel(); ++i) ow.data()[i] = 0.001f * rng.uniform(-1, 1);
    for (int64_t i = 0; i < ob.numel(); ++i) ob.data()[i] = (i % 2 ? 0.3f : -0.7f) + 0.01f * rng.uniform(-1, 1);
    std::vector<Tensor> inputs = {x};
    for (const Tensor& p : layer.parameters()) inputs.push_back(p);
    eq::testing::GradCheckOptions opt;
    opt.step = 2e-3;
    opt.max_elements = 60;
    CHECK_GRADIENTS([&layer](V t) { return layer.forward(t[0]); }, inputs, opt);
  }

  // Max over scales needs distinct values per position: scale s shifted by 3 s.
  Tensor distinct = Tensor::randn({2, 3, 3, 5, 3}, rng);
  for (int64_t i = 0; i < distinct.numel(); ++i) distinct.data()[i] += 3.0f * ((i / 15) % 3);
  distinct.set_requires_grad();
  CHECK_GRADIENTS([](V t) { return scale_pool(t[0], ScalePoolMode::Max); }, {distinct});
  CHECK_GRADIENTS([](V t) { return scale_pool(t[0], ScalePoolMode::Mean); }, {distinct});
  ScaleAvgPool2d avg(2, 2, 1);
  CHECK_GRADIENTS([&avg](V t) { return avg.forward(t[0]); }, {distinct});
}

TEST_CASE("scale space: bad input and options name the op and the shapes") {
  Rng rng(40);
  Tensor x({2, 3, 4, 8, 8}), w({5, 3, 2, 3, 3});
  CHECK(scale_conv(x, w, Tensor(), 2.0f).shape() == Shape{2, 5, 4, 8, 8});  // the consistent set is fine
  CHECK_THROWS_NAMING(scale_conv(Tensor({2, 3, 8, 8}), w, Tensor(), 2.0f), "scale_conv", "[2, 3, 8, 8]");
  CHECK_THROWS_NAMING(scale_conv(x, Tensor({5, 2, 2, 3, 3}), Tensor(), 2.0f), "scale_conv",
                      "input has 3 channels but weight expects 2", "[2, 3, 4, 8, 8]", "[5, 2, 2, 3, 3]");
  CHECK_THROWS_NAMING(scale_conv(x, Tensor({5, 3, 2, 2, 2}), Tensor(), 2.0f), "scale_conv", "odd", "[5, 3, 2, 2, 2]");
  CHECK_THROWS_NAMING(scale_conv(x, w, Tensor(), 1.5f), "scale_conv", "integer", "1.5");
  CHECK_THROWS_NAMING(scale_conv(x, w, Tensor({4}), 2.0f), "scale_conv", "bias", "[4]");
  CHECK_THROWS_NAMING(scale_conv(Tensor({1, 3, 30, 4, 4}), w, Tensor(), 2.0f), "scale_conv", "dilation", "29");
  CHECK_THROWS_NAMING(scale_conv(Tensor({0, 3, 4, 8, 8}), w, Tensor(), 2.0f), "scale_conv", "empty");
  CHECK_THROWS_NAMING(ScaleConv(3, 5, 3, 2, 2.5f, rng), "ScaleConv", "integer", "2.5");
  CHECK_THROWS_NAMING(ScaleConv(3, 5, 4, 2, 2.0f, rng), "ScaleConv", "odd", "4");
  CHECK_THROWS_NAMING(ScaleConv(3, 5, 3, 0, 2.0f, rng), "ScaleConv", "interaction 0");

  CHECK_THROWS_NAMING(ScaleLift(0, 2.0f, 1.0f), "ScaleLift", "scales", "0");
  CHECK_THROWS_NAMING(ScaleLift(3, 1.0f, 1.0f), "ScaleLift", "base", "1");
  CHECK_THROWS_NAMING(ScaleLift(3, 2.0f, 0.0f), "ScaleLift", "sigma0", "0");
  CHECK_THROWS_NAMING(ScaleLift(3, 2.0f, 1.0f).forward(x), "ScaleLift", "[2, 3, 4, 8, 8]");
  CHECK_THROWS_NAMING(BilinearScaleLift(3, 0.5f), "BilinearScaleLift", "base", "0.5");
  CHECK_THROWS_NAMING(bilinear_scale_lift(x, 3, 2.0f), "BilinearScaleLift", "[2, 3, 4, 8, 8]");

  DeformScaleConv deform(3, 5, 3, 2, 2.0f, rng);
  CHECK_THROWS_NAMING(deform.forward(Tensor({2, 4, 3, 8, 8})), "DeformScaleConv(3, 5, k=3, Ks=2, base=2)",
                      "[2, 4, 3, 8, 8]");
  CHECK_THROWS_NAMING(DeformScaleConv(3, 5, 3, 2, 2.0f, rng, 2), "DeformScaleConv", "offset_groups 2", "3");
  CHECK_THROWS_NAMING(scale_pool(Tensor({2, 3, 8, 8}), ScalePoolMode::Max), "scale_pool", "[2, 3, 8, 8]");
  CHECK_THROWS_NAMING(ScaleMaxPool2d(2).forward(Tensor({2, 3, 8, 8})), "ScaleMaxPool2d", "[2, 3, 8, 8]");
}
