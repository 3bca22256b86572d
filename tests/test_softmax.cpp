// Softmax family: values against a double-precision naive computation on every axis, stability at +-1000,
// gradient checks, errors.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "engine/autograd.h"
#include "engine/rng.h"
#include "engine/softmax.h"
#include "tests/gradcheck.h"
#include "tests/test_helpers.h"

using namespace eq;
using V = const std::vector<Tensor>&;

namespace {

// Naive log-sum-exp along `axis` in double, written straight from the definition (with the max shift so that it
// can also take large values): returns per-output values in [outer, inner] order.
std::vector<double> naive_logsumexp(const Tensor& x, int axis) {
  const Shape& s = x.shape();
  int64_t outer = 1, inner = 1;
  for (int k = 0; k < axis; ++k) outer *= s[static_cast<size_t>(k)];
  for (size_t k = static_cast<size_t>(axis) + 1; k < s.size(); ++k) inner *= s[k];
  const int64_t n = s[static_cast<size_t>(axis)];
  std::vector<double> out;
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      double m = -INFINITY, z = 0;
      for (int64_t r = 0; r < n; ++r) m = std::max(m, static_cast<double>(x.data()[(o * n + r) * inner + i]));
      for (int64_t r = 0; r < n; ++r) z += std::exp(x.data()[(o * n + r) * inner + i] - m);
      out.push_back(m + std::log(z));
    }
  return out;
}

}  // namespace

TEST_CASE("softmax: hand-computed values") {
  Tensor x = Tensor::from({3}, {1, 2, 3});
  const double z = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  const std::vector<float> p = softmax(x, 0).to_vector();
  CHECK(p[0] == doctest::Approx(std::exp(1.0) / z));
  CHECK(p[2] == doctest::Approx(std::exp(3.0) / z));
  CHECK(log_softmax(x, -1).to_vector()[1] == doctest::Approx(2 - std::log(z)));
  CHECK(logsumexp(x, 0).item() == doctest::Approx(std::log(z)));
  CHECK(logsumexp(x, 0).shape() == Shape{});
  CHECK(logsumexp(x, 0, true).shape() == Shape{1});
  // [[0, 0], [0, ln 3]] along axis 0: column 1 is [1/4, 3/4].
  Tensor m = Tensor::from({2, 2}, {0, 0, 0, std::log(3.0f)});
  const std::vector<float> col = softmax(m, 0).to_vector();
  CHECK(col[0] == doctest::Approx(0.5));
  CHECK(col[1] == doctest::Approx(0.25));
  CHECK(col[3] == doctest::Approx(0.75));
}

TEST_CASE("softmax: stable at large magnitudes") {
  Tensor big = Tensor::from({2, 2}, {1000, 1000, -1000, 0});
  const std::vector<float> p = softmax(big, 1).to_vector();
  CHECK(p[0] == doctest::Approx(0.5).epsilon(1e-7));
  CHECK(p[1] == doctest::Approx(0.5).epsilon(1e-7));
  CHECK(p[2] == 0.0f);
  CHECK(p[3] == doctest::Approx(1.0).epsilon(1e-7));
  const std::vector<float> ls = log_softmax(Tensor::from({2}, {1000, 0}), 0).to_vector();
  CHECK(ls[0] == doctest::Approx(0).epsilon(1e-6));
  CHECK(ls[1] == doctest::Approx(-1000));
  CHECK(logsumexp(Tensor::from({2}, {1000, 1000}), 0).item() == doctest::Approx(1000 + std::log(2.0)));
  CHECK(logsumexp(Tensor::from({2}, {-1000, -1000}), 0).item() == doctest::Approx(-1000 + std::log(2.0)));
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(logsumexp(Tensor::from({2}, {-inf, -inf}), 0).item() == -inf);
  CHECK(logsumexp(Tensor::from({2}, {-inf, 3}), 0).item() == 3);
  // Gradients stay finite too.
  Tensor x = Tensor::from({3}, {1000, -1000, 999}).set_requires_grad();
  Tensor w = Tensor::from({3}, {1, 2, 3});
  Tensor s = softmax(x, 0);
  s.backward(w);
  for (float g : x.grad().to_vector()) CHECK(std::isfinite(g));
}

TEST_CASE("softmax: every axis of odd shapes matches the naive double computation") {
  Rng rng(21);
  for (const Shape& shape : {Shape{3, 5, 7}, Shape{2, 1, 4, 3}, Shape{2, 7, 150}}) {
    Tensor x = Tensor::randn(shape, rng, 0, 3);
    for (int axis = 0; axis < x.dim(); ++axis) {
      INFO("shape " << shape_str(shape) << " axis " << axis);
      const std::vector<double> ref = naive_logsumexp(x, axis);
      const std::vector<float> lse = logsumexp(x, axis - x.dim()).to_vector();  // the negative spelling
      REQUIRE(lse.size() == ref.size());
      double worst = 0;
      for (size_t i = 0; i < ref.size(); ++i) worst = std::max(worst, std::fabs(lse[i] - ref[i]));
      CHECK(worst < 1e-4);
      // softmax and log_softmax follow from the logsumexp of their slice.
      Tensor p = softmax(x, axis), lp = log_softmax(x, axis);
      int64_t inner = 1;
      for (int k = axis + 1; k < x.dim(); ++k) inner *= shape[static_cast<size_t>(k)];
      const int64_t n = shape[static_cast<size_t>(axis)];
      double worst_p = 0, worst_lp = 0;
      for (int64_t e = 0; e < x.numel(); ++e) {
        const int64_t out_index = (e / (n * inner)) * inner + e % inner;
        const double l = x.data()[e] - ref[static_cast<size_t>(out_index)];
        worst_lp = std::max(worst_lp, std::fabs(lp.data()[e] - l));
        worst_p = std::max(worst_p, std::fabs(p.data()[e] - std::exp(l)));
      }
      CHECK(worst_lp < 1e-4);
      CHECK(worst_p < 1e-6);
    }
  }
}

TEST_CASE("softmax: gradient checks on every axis, keepdim") {
  Rng rng(22);
  for (const Shape& shape : {Shape{3, 5, 7}, Shape{2, 1, 4, 3}}) {
    Tensor x = Tensor::randn(shape, rng).set_requires_grad();
    for (int axis : {0, 1, -1, -2}) {
      INFO("shape " << shape_str(shape) << " axis " << axis);
      CHECK_GRADIENTS([axis](V t) { return softmax(t[0], axis); }, {x});
      CHECK_GRADIENTS([axis](V t) { return log_softmax(t[0], axis); }, {x});
      CHECK_GRADIENTS([axis](V t) { return logsumexp(t[0], axis); }, {x});
      CHECK_GRADIENTS([axis](V t) { return logsumexp(t[0], axis, true); }, {x});
    }
  }
  // More lanes than one tile, along a middle axis.
  Tensor wide = Tensor::randn({2, 3, 70}, rng).set_requires_grad();
  CHECK_GRADIENTS([](V t) { return softmax(t[0], 1); }, {wide});
  CHECK_GRADIENTS([](V t) { return logsumexp(t[0], 1); }, {wide});
}

TEST_CASE("softmax: bad axis names the op and the shape") {
  Tensor x({2, 3});
  CHECK_THROWS_NAMING(softmax(x, 2), "softmax", "axis 2", "[2, 3]");
  CHECK_THROWS_NAMING(log_softmax(x, -3), "log_softmax", "[2, 3]");
  CHECK_THROWS_NAMING(logsumexp(x, 7), "logsumexp", "[2, 3]");
}
