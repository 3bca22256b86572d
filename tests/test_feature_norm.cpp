// FeatureBallNorm (per-pixel L2 normalisation times a trainable radius) and PixelCenter (per-location batch-mean
// subtraction with a running mean): hand-computed values, gradients, modes, errors.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/autograd.h"
#include "engine/elementwise.h"
#include "engine/reduce.h"
#include "engine/rng.h"
#include "engine/shape_ops.h"
#include "layers/feature_ball_norm.h"
#include "layers/pixel_center.h"
#include "tests/gradcheck.h"
#include "tests/test_helpers.h"

using namespace eq;
using eq::testing::max_abs_diff;
using V = const std::vector<Tensor>&;

TEST_CASE("feature_norm: hand-computed values, including the eps clamp") {
  // x [1, 2, 1, 3]: pixel 0 = (3, 4) -> norm 5 -> 12 * (0.6, 0.8); pixel 1 = (0, 0) -> 0; pixel 2 = (1e-7, 0),
  // below eps = 1e-6 -> 12 * 1e-7 / 1e-6 = 1.2.
  Tensor x = Tensor::from({1, 2, 1, 3}, {3, 0, 1e-7f, 4, 0, 0});
  Tensor y = feature_ball_norm(x, Tensor::scalar(12.0f), 1e-6f);
  const std::vector<float> v = y.to_vector();
  CHECK(v[0] == doctest::Approx(7.2f));
  CHECK(v[3] == doctest::Approx(9.6f));
  CHECK(v[1] == 0.0f);
  CHECK(v[4] == 0.0f);
  CHECK(v[2] == doctest::Approx(1.2f));
  CHECK(v[5] == 0.0f);
}

TEST_CASE("feature_norm: every pixel lands on the sphere of the given radius") {
  Rng rng(1);
  FeatureBallNorm norm;  // radius 12
  Tensor x = Tensor::randn({3, 16, 5, 7}, rng);
  Tensor lengths = sqrt(sum(square(norm(x)), {1}));  // [3, 5, 7]
  for (float l : lengths.to_vector()) CHECK(l == doctest::Approx(12.0f).epsilon(1e-5));
  // Against the composition r * x / ||x|| (no clamp active for random vectors).
  Tensor expected = x / sqrt(sum(square(x), {1}, true)) * 12.0f;
  CHECK(max_abs_diff(norm(x), expected) < 1e-5f);
}

TEST_CASE("feature_norm: gradients to x and the radius, on odd shapes and in the clamped regime") {
  Rng rng(2);
  for (const Shape& s : {Shape{2, 5, 3, 4}, Shape{3, 7}, Shape{1, 3, 2, 2, 3}, Shape{2, 2, 1, 1}}) {
    INFO("shape " << shape_str(s));
    Tensor x = Tensor::randn(s, rng).set_requires_grad();
    Tensor r = Tensor::from({1}, {1.7f}).set_requires_grad();
    CHECK_GRADIENTS([](V t) { return feature_ball_norm(t[0], t[1]); }, {x, r});
  }
  // D = 1: y = r * sign(x), so dy/dx = 0 (away from 0) and dy/dr = sign(x).
  Tensor x1 = Tensor::from({1, 1, 1, 2}, {-2.0f, 0.5f}).set_requires_grad();
  Tensor r1 = Tensor::from({1}, {3.0f}).set_requires_grad();
  feature_ball_norm(x1, r1).backward(Tensor::from({1, 1, 1, 2}, {1.0f, 5.0f}));
  CHECK(std::fabs(x1.grad().to_vector()[0]) < 1e-6f);
  CHECK(std::fabs(x1.grad().to_vector()[1]) < 1e-6f);
  CHECK(r1.grad().item() == doctest::Approx(4.0f));  // -1 * 1 + 1 * 5
  // eps = 50 above every norm: the map is linear, y = r x / eps.
  Tensor x = Tensor::randn({2, 3, 4, 4}, rng).set_requires_grad();
  Tensor r = Tensor::from({1}, {3.0f}).set_requires_grad();
  CHECK_GRADIENTS([](V t) { return feature_ball_norm(t[0], t[1], 50.0f); }, {x, r});
  // A large map exercises the multi-block, multi-thread path (P = 40 * 30 > one pixel block).
  Tensor big = Tensor::randn({2, 4, 40, 30}, rng).set_requires_grad();
  CHECK_GRADIENTS([](V t) { return feature_ball_norm(t[0], t[1]); }, {big, r});
}

TEST_CASE("feature_norm: the radius gradient is sum <g, x/||x||> (by hand) and the module trains it") {
  FeatureBallNorm norm(2.0f);
  CHECK(norm.named_parameters().size() == 1);
  CHECK(norm.named_parameters()[0].first == "radius");
  Tensor x = Tensor::from({1, 2, 1, 1}, {3, 4});
  norm(x).backward(Tensor::from({1, 2, 1, 1}, {1, 1}));  // d/dr (r * 0.6 + r * 0.8) = 1.4
  CHECK(norm.radius.grad().item() == doctest::Approx(1.4f));
  FeatureBallNorm fixed(5.0f, /*trainable=*/false);
  CHECK(fixed.named_parameters().empty());
  CHECK(fixed.named_buffers().size() == 1);
  CHECK(fixed.name() == "FeatureBallNorm(radius=5, fixed)");
}

TEST_CASE("feature_norm: bad inputs") {
  CHECK_THROWS_NAMING(feature_ball_norm(Tensor::zeros({4}), Tensor::scalar(1)), "feature_ball_norm", "[4]");
  CHECK_THROWS_NAMING(feature_ball_norm(Tensor::zeros({2, 3}), Tensor::zeros({2})), "feature_ball_norm", "radius",
                      "[2]");
  CHECK_THROWS_NAMING(feature_ball_norm(Tensor::zeros({2, 3}), Tensor::scalar(1), 0.0f), "feature_ball_norm", "eps");
}

TEST_CASE("pixel_center: training subtracts the per-location batch mean and updates the running mean") {
  // x [2, 1, 1, 2]: samples (1, 2) and (3, 6) -> batch mean (2, 4) -> outputs (-1, -2), (1, 2).
  PixelCenter center(1, 1, 2, 0.1f);
  Tensor x = Tensor::from({2, 1, 1, 2}, {1, 2, 3, 6});
  CHECK(center(x).to_vector() == std::vector<float>{-1, -2, 1, 2});
  // running = 0.9 * 0 + 0.1 * (2, 4)
  CHECK(center.running_mean.to_vector()[0] == doctest::Approx(0.2f));
  CHECK(center.running_mean.to_vector()[1] == doctest::Approx(0.4f));
  CHECK(center(x).to_vector() == std::vector<float>{-1, -2, 1, 2});
  CHECK(center.running_mean.to_vector()[0] == doctest::Approx(0.38f));  // 0.9 * 0.2 + 0.1 * 2
  // Eval: subtract the running mean, leave it alone.
  center.eval();
  const std::vector<float> y = center(x).to_vector();
  CHECK(y[0] == doctest::Approx(1 - 0.38f));
  CHECK(y[3] == doctest::Approx(6 - 0.76f));
  CHECK(center.running_mean.to_vector()[0] == doctest::Approx(0.38f));
  CHECK(center.named_buffers().size() == 1);
  CHECK(center.named_parameters().empty());
}

TEST_CASE("pixel_center: gradient check in training mode (the mean is differentiated too) and in eval") {
  Rng rng(3);
  PixelCenter center(3, 4, 5);
  Tensor x = Tensor::randn({3, 3, 4, 5}, rng).set_requires_grad();
  CHECK_GRADIENTS([&](V t) { return center(t[0]); }, {x});
  // In training the output sums to zero over the batch, so the gradient of sum(y) is zero, not one.
  Tensor x2 = Tensor::randn({2, 3, 4, 5}, rng).set_requires_grad();
  sum(center(x2)).backward();
  for (float g : x2.grad().to_vector()) CHECK(std::fabs(g) < 1e-6f);
  center.eval();
  CHECK_GRADIENTS([&](V t) { return center(t[0]); }, {x});
}

TEST_CASE("pixel_center: bad inputs") {
  PixelCenter center(2, 3, 3);
  CHECK_THROWS_NAMING(center(Tensor::zeros({1, 2, 3, 4})), "PixelCenter(2, 3x3)", "[1, 2, 3, 4]");
  CHECK_THROWS_NAMING(center(Tensor::zeros({2, 3, 3})), "PixelCenter", "[2, 3, 3]");
  CHECK_THROWS_NAMING(center(Tensor::zeros({0, 2, 3, 3})), "PixelCenter", "[0, 2, 3, 3]");
  CHECK_THROWS_NAMING(PixelCenter(0, 3, 3), "PixelCenter", "positive");
  CHECK_THROWS_NAMING(PixelCenter(2, 3, 3, 1.5f), "PixelCenter", "momentum");
}
