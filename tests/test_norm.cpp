// Batch norm and dropout: hand-computed statistics, running-stat updates, eval mode, gradient checks (train and
// eval, affine on and off, odd sizes), a double-precision reference forward, dropout statistics, errors.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/autograd.h"
#include "engine/norm.h"
#include "engine/rng.h"
#include "tests/gradcheck.h"
#include "tests/test_helpers.h"

using namespace eq;
using V = const std::vector<Tensor>&;

TEST_CASE("batch_norm: training on [N, C] normalises with the biased batch variance") {
  // One channel holding 1, 2, 3, 4: mean 2.5, biased variance 1.25, unbiased 5/3.
  Tensor x = Tensor::from({4, 1}, {1, 2, 3, 4});
  Tensor rm = Tensor::zeros({1}), rv = Tensor::ones({1});
  Tensor y = batch_norm(x, Tensor(), Tensor(), rm, rv, true, 0.1f, 1e-5f);
  const float inv = 1.0f / std::sqrt(1.25f + 1e-5f);
  CHECK(y.at({0, 0}) == doctest::Approx(-1.5f * inv).epsilon(1e-6));
  CHECK(y.at({3, 0}) == doctest::Approx(1.5f * inv).epsilon(1e-6));
  // running = 0.9 running + 0.1 batch, with the UNBIASED variance: 0.9 * 1 + 0.1 * 5/3.
  CHECK(rm.item() == doctest::Approx(0.25f).epsilon(1e-6));
  CHECK(rv.item() == doctest::Approx(0.9f + 0.1f * 5.0f / 3.0f).epsilon(1e-6));
  // The biased variance would give 0.9 + 0.125 = 1.025: this test tells the two apart.
  CHECK(std::fabs(rv.item() - 1.025f) > 1e-2f);
}

TEST_CASE("batch_norm: [N, C, H, W] statistics per channel over batch and space; affine; momentum") {
  // x [2, 2, 1, 2]. Channel 0 holds 1, 3 (n=0) and 5, 7 (n=1): mean 4, biased var 5, unbiased 20/3.
  // Channel 1 holds 0, 0 and 2, 2: mean 1, biased var 1, unbiased 4/3.
  Tensor x = Tensor::from({2, 2, 1, 2}, {1, 3, 0, 0, 5, 7, 2, 2});
  Tensor gamma = Tensor::from({2}, {2, -1}), beta = Tensor::from({2}, {0.5f, 3});
  Tensor rm = Tensor::from({2}, {1, 1}), rv = Tensor::from({2}, {2, 2});
  Tensor y = batch_norm(x, gamma, beta, rm, rv, true, 0.25f, 0.0f + 1e-5f);
  const float i0 = 1.0f / std::sqrt(5.0f + 1e-5f), i1 = 1.0f / std::sqrt(1.0f + 1e-5f);
  CHECK(y.at({0, 0, 0, 0}) == doctest::Approx(2 * (1 - 4) * i0 + 0.5f));
  CHECK(y.at({1, 0, 0, 1}) == doctest::Approx(2 * (7 - 4) * i0 + 0.5f));
  CHECK(y.at({0, 1, 0, 0}) == doctest::Approx(-1 * (0 - 1) * i1 + 3));
  CHECK(y.at({1, 1, 0, 1}) == doctest::Approx(-1 * (2 - 1) * i1 + 3));
  CHECK(rm.at({0}) == doctest::Approx(0.75f * 1 + 0.25f * 4));
  CHECK(rm.at({1}) == doctest::Approx(0.75f * 1 + 0.25f * 1));
  CHECK(rv.at({0}) == doctest::Approx(0.75f * 2 + 0.25f * 20.0f / 3.0f));
  CHECK(rv.at({1}) == doctest::Approx(0.75f * 2 + 0.25f * 4.0f / 3.0f));
}

TEST_CASE("batch_norm: eval uses the running statistics and leaves them unchanged") {
  Tensor x = Tensor::from({3, 2}, {1, 2, 3, 4, -5, 6});
  Tensor gamma = Tensor::from({2}, {2, 1}), beta = Tensor::from({2}, {0.5f, 0});
  Tensor rm = Tensor::from({2}, {1, -1}), rv = Tensor::from({2}, {4, 0.25f});
  Tensor y = batch_norm(x, gamma, beta, rm, rv, false, 0.1f, 1e-5f);
  for (int n = 0; n < 3; ++n) {
    CHECK(y.at({n, 0}) == doctest::Approx(2 * (x.at({n, 0}) - 1) / std::sqrt(4 + 1e-5f) + 0.5f));
    CHECK(y.at({n, 1}) == doctest::Approx((x.at({n, 1}) + 1) / std::sqrt(0.25f + 1e-5f)));
  }
  CHECK(rm.to_vector() == std::vector<float>{1, -1});
  CHECK(rv.to_vector() == std::vector<float>{4, 0.25f});
  // Without running statistics, eval falls back to batch statistics (track_running_stats=False).
  Tensor none_m, none_v;
  Tensor yb = batch_norm(x, Tensor(), Tensor(), none_m, none_v, false);
  Tensor yt = batch_norm(x, Tensor(), Tensor(), none_m, none_v, true);
  CHECK(eq::testing::max_abs_diff(yb, yt) == 0.0f);
}

TEST_CASE("batch_norm: forward matches a double-precision reference on a random [3, 4, 5, 2] batch") {
  Rng rng(5);
  Tensor x = Tensor::randn({3, 4, 5, 2}, rng, 3.0f, 2.0f);  // a mean far from 0 tests the two-pass variance
  Tensor gamma = Tensor::randn({4}, rng), beta = Tensor::randn({4}, rng);
  Tensor rm = Tensor::zeros({4}), rv = Tensor::ones({4});
  Tensor y = batch_norm(x, gamma, beta, rm, rv, true, 0.1f, 1e-5f);
  for (int c = 0; c < 4; ++c) {
    double s = 0, s2 = 0;
    for (int n = 0; n < 3; ++n)
      for (int h = 0; h < 5; ++h)
        for (int w = 0; w < 2; ++w) s += x.at({n, c, h, w});
    const double m = s / 30;
    for (int n = 0; n < 3; ++n)
      for (int h = 0; h < 5; ++h)
        for (int w = 0; w < 2; ++w) s2 += (x.at({n, c, h, w}) - m) * (x.at({n, c, h, w}) - m);
    const double inv = 1 / std::sqrt(s2 / 30 + 1e-5);
    for (int n = 0; n < 3; ++n)
      for (int h = 0; h < 5; ++h)
        for (int w = 0; w < 2; ++w)
          CHECK(y.at({n, c, h, w}) ==
                doctest::Approx(gamma.at({c}) * (x.at({n, c, h, w}) - m) * inv + beta.at({c})).epsilon(1e-5));
    CHECK(rm.at({c}) == doctest::Approx(0.1 * m).epsilon(1e-5));
    CHECK(rv.at({c}) == doctest::Approx(0.9 + 0.1 * s2 / 29).epsilon(1e-5));
  }
}

TEST_CASE("batch_norm: gradient checks in training mode, odd sizes, with and without affine") {
  Rng rng(11);
  for (const Shape& shape : {Shape{5, 3}, Shape{3, 2, 3, 5}, Shape{2, 3, 7}, Shape{7, 1, 1, 1}}) {
    INFO("shape " << shape_str(shape));
    const int64_t c = shape[1];
    Tensor x = Tensor::randn(shape, rng, 0.5f, 1.5f).set_requires_grad();
    Tensor gamma = Tensor::uniform({c}, rng, 0.5f, 1.5f).set_requires_grad();
    Tensor beta = Tensor::randn({c}, rng).set_requires_grad();
    Tensor rm = Tensor::zeros({c}), rv = Tensor::ones({c});
    CHECK_GRADIENTS([&](V t) { return batch_norm(t[0], t[1], t[2], rm, rv, true); }, {x, gamma, beta});
    CHECK_GRADIENTS([&](V t) { return batch_norm(t[0], Tensor(), Tensor(), rm, rv, true); }, {x});
    // Gradient to gamma/beta only (x a constant input).
    Tensor xc = Tensor::randn(shape, rng);
    CHECK_GRADIENTS([&](V t) { return batch_norm(xc, t[0], t[1], rm, rv, true); }, {gamma, beta});
  }
}

TEST_CASE("batch_norm: gradient check in eval mode (running statistics are constants)") {
  Rng rng(12);
  Tensor x = Tensor::randn({4, 3, 2, 3}, rng).set_requires_grad();
  Tensor gamma = Tensor::uniform({3}, rng, 0.5f, 1.5f).set_requires_grad();
  Tensor beta = Tensor::randn({3}, rng).set_requires_grad();
  Tensor rm = Tensor::randn({3}, rng), rv = Tensor::uniform({3}, rng, 0.5f, 2.0f);
  CHECK_GRADIENTS([&](V t) { return batch_norm(t[0], t[1], t[2], rm, rv, false); }, {x, gamma, beta});
}

TEST_CASE("batch_norm: training-mode input gradient sums to zero per channel (mean is subtracted)") {
  // A property that the naive "dx = gamma inv_std dy" (eval formula used in training) would violate.
  Rng rng(13);
  Tensor x = Tensor::randn({6, 2, 3}, rng).set_requires_grad();
  Tensor rm = Tensor::zeros({2}), rv = Tensor::ones({2});
  Tensor y = batch_norm(x, Tensor(), Tensor(), rm, rv, true);
  y.backward(Tensor::randn({6, 2, 3}, rng));
  for (int c = 0; c < 2; ++c) {
    double s = 0;
    for (int n = 0; n < 6; ++n)
      for (int l = 0; l < 3; ++l) s += x.grad().at({n, c, l});
    CHECK(std::fabs(s) < 1e-5);
  }
}

TEST_CASE("batch_norm: bad input names the op and the shapes") {
  Tensor rm = Tensor::zeros({3}), rv = Tensor::ones({3}), none;
  CHECK_THROWS_NAMING(batch_norm(Tensor({6}), Tensor(), Tensor(), rm, rv, true), "batch_norm", "[6]");
  CHECK_THROWS_NAMING(batch_norm(Tensor({4, 3}), Tensor({2}), Tensor(), rm, rv, true), "batch_norm", "gamma",
                      "[2]", "[4, 3]");
  CHECK_THROWS_NAMING(batch_norm(Tensor({4, 2}), Tensor(), Tensor(), rm, rv, true), "batch_norm", "running_mean",
                      "[3]");
  CHECK_THROWS_NAMING(batch_norm(Tensor({1, 3}), Tensor(), Tensor(), rm, rv, true), "batch_norm",
                      "more than one value", "[1, 3]");
  CHECK_THROWS_NAMING(batch_norm(Tensor({4, 3}), Tensor(), Tensor(), rm, none, true), "batch_norm", "both");
  // A single sample is fine in eval mode.
  CHECK(batch_norm(Tensor({1, 3}), Tensor(), Tensor(), rm, rv, false).shape() == Shape{1, 3});
}

TEST_CASE("dropout: statistics, scaling, determinism, eval identity") {
  Rng rng(21);
  const int64_t n = 200000;
  Tensor x = Tensor::uniform({n}, rng, 1.0f, 2.0f);
  Rng mask_rng(99);
  Tensor y = dropout(x, 0.3f, true, mask_rng);
  int64_t zeros = 0, badly_scaled = 0;
  double sum_x = 0, sum_y = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float v = y.data()[i];
    if (v == 0.0f) ++zeros;
    else if (std::fabs(v - x.data()[i] / 0.7f) > 1e-6f * v) ++badly_scaled;  // kept values scale by 1 / (1 - p)
    sum_x += x.data()[i];
    sum_y += v;
  }
  CHECK(badly_scaled == 0);
  // Binomial(200000, 0.3): the std of the dropped fraction is ~0.001, so 0.01 is a 10-sigma band.
  CHECK(std::fabs(static_cast<double>(zeros) / n - 0.3) < 0.01);
  CHECK(sum_y / sum_x == doctest::Approx(1.0).epsilon(0.01));  // inverted dropout preserves the mean

  Rng again(99);
  CHECK(eq::testing::max_abs_diff(dropout(x, 0.3f, true, again), y) == 0.0f);
  Rng other(100);
  CHECK(eq::testing::max_abs_diff(dropout(x, 0.3f, true, other), y) > 0.0f);

  Tensor e = dropout(x, 0.3f, false, rng);
  CHECK(e.impl() == x.impl());  // eval: the input itself
  CHECK(dropout(x, 0.0f, true, rng).impl() == x.impl());
}

TEST_CASE("dropout: gradient is the mask times 1 / (1 - p)") {
  Rng rng(22);
  Tensor x = Tensor::randn({4, 5, 3}, rng).set_requires_grad();
  CHECK_GRADIENTS(
      [](V t) {
        Rng mask(7);  // the same mask on every call of the gradient check
        return dropout(t[0], 0.4f, true, mask);
      },
      {x});
  Rng mask(7);
  Tensor y = dropout(x, 0.4f, true, mask);
  x.zero_grad();
  y.backward(Tensor::ones(y.shape()));
  for (int64_t i = 0; i < x.numel(); ++i)
    CHECK(x.grad().data()[i] == doctest::Approx(y.data()[i] == 0.0f ? 0.0f : 1.0f / 0.6f));
}

TEST_CASE("dropout: p outside [0, 1) is an error naming dropout") {
  Rng rng(1);
  Tensor x({2, 3});
  CHECK_THROWS_NAMING(dropout(x, 1.0f, true, rng), "dropout", "p", "[2, 3]");
  CHECK_THROWS_NAMING(dropout(x, -0.1f, true, rng), "dropout");
  CHECK_THROWS_NAMING(dropout(x, std::nanf(""), false, rng), "dropout");
}
