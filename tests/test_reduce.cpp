// Reductions: hand-computed values, fast kernel vs naive reference on many axis sets, gradient checks, errors.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/autograd.h"
#include "engine/reduce.h"
#include "engine/rng.h"
#include "tests/gradcheck.h"
#include "tests/test_helpers.h"

using namespace eq;
using V = const std::vector<Tensor>&;

TEST_CASE("reduce: hand-computed sums and means") {
  // [[1, 2, 3], [4, 5, 6]]
  Tensor x = Tensor::from({2, 3}, {1, 2, 3, 4, 5, 6});
  CHECK(sum(x).shape() == Shape{});
  CHECK(sum(x).item() == 21);
  CHECK(mean(x).item() == doctest::Approx(3.5));
  CHECK(sum(x, {0}).to_vector() == std::vector<float>{5, 7, 9});
  CHECK(sum(x, {1}).to_vector() == std::vector<float>{6, 15});
  CHECK(sum(x, {-1}, true).shape() == Shape{2, 1});
  CHECK(sum(x, {-1}, true).to_vector() == std::vector<float>{6, 15});
  CHECK(mean(x, {0}).to_vector() == std::vector<float>{2.5f, 3.5f, 4.5f});
  CHECK(mean(x, {0, 1}, true).shape() == Shape{1, 1});
  CHECK(mean(x, {1, 0}).item() == doctest::Approx(3.5));
  // [2, 2, 2] = 0..7; axes {0, 2} are not adjacent: out[j] = sum_{i,k} x[i, j, k]
  Tensor y = Tensor::arange(8);
  Tensor y3 = Tensor::from({2, 2, 2}, y.to_vector());
  CHECK(sum(y3, {0, 2}).to_vector() == std::vector<float>{0 + 1 + 4 + 5, 2 + 3 + 6 + 7});
  CHECK(sum(y3, {0, 2}, true).shape() == Shape{1, 2, 1});
  // A size-1 axis: a copy (mean over one value is that value).
  CHECK(mean(Tensor::from({2, 1}, {3, 4}), {1}).to_vector() == std::vector<float>{3, 4});
  // Scalars and empty axes.
  CHECK(sum(Tensor::scalar(2.5f)).item() == 2.5f);
  CHECK(sum(Tensor(Shape{0, 3}), {0}).to_vector() == std::vector<float>{0, 0, 0});
  CHECK(std::isnan(mean(Tensor(Shape{0, 3})).item()));
}

TEST_CASE("reduce: fast sum equals the naive reference on odd shapes and every axis set") {
  Rng rng(11);
  const std::vector<Shape> shapes = {{3, 5, 7}, {2, 1, 4, 3}, {7}, {2, 3, 1, 5, 2}};
  for (const Shape& s : shapes) {
    Tensor x = Tensor::randn(s, rng);
    const int rank = static_cast<int>(s.size());
    for (int mask = 1; mask < (1 << rank); ++mask) {  // every non-empty subset of axes
      std::vector<int> axes;
      for (int a = 0; a < rank; ++a)
        if (mask & (1 << a)) axes.push_back(a % 2 ? a - rank : a);  // mix negative and positive spellings
      for (bool keepdim : {false, true}) {
        INFO("shape " << shape_str(s) << " mask " << mask << " keepdim " << keepdim);
        Tensor fast = sum(x, axes, keepdim), ref = sum_reference(x, axes, keepdim);
        REQUIRE(fast.shape() == ref.shape());
        CHECK(eq::testing::max_abs_diff(fast, ref) < 1e-4f);
      }
    }
  }
}

TEST_CASE("reduce: large inputs take the parallel and chunked paths and still match") {
  Rng rng(5);
  Tensor x = Tensor::randn({40, 1000, 3}, rng);  // 120k values: above the parallel grain
  for (const std::vector<int>& axes : std::vector<std::vector<int>>{{1}, {0}, {2}, {0, 2}, {0, 1}}) {
    Tensor fast = sum(x, axes), ref = sum_reference(x, axes);
    CHECK(eq::testing::max_abs_diff(fast, ref) < 1e-3f);
  }
  // The whole tensor in chunked partial sums: compare against a double sum.
  double total = 0;
  for (float v : x.to_vector()) total += v;
  CHECK(sum(x).item() == doctest::Approx(total).epsilon(1e-6));
  CHECK(mean(x).item() == doctest::Approx(total / x.numel()).epsilon(1e-6));
}

TEST_CASE("reduce: sum and mean gradient checks over axis sets and keepdim") {
  Rng rng(3);
  for (const Shape& s : {Shape{3, 5, 7}, Shape{2, 1, 4, 3}}) {
    Tensor x = Tensor::randn(s, rng).set_requires_grad();
    INFO("shape " << shape_str(s));
    CHECK_GRADIENTS([](V t) { return sum(t[0]); }, {x});
    CHECK_GRADIENTS([](V t) { return mean(t[0]); }, {x});
    for (const std::vector<int>& axes : std::vector<std::vector<int>>{{0}, {-1}, {1}, {0, 2}, {-1, 0}, {1, 2}}) {
      for (bool keepdim : {false, true}) {
        INFO("axes size " << axes.size() << " keepdim " << keepdim);
        CHECK_GRADIENTS([&](V t) { return sum(t[0], axes, keepdim); }, {x});
        CHECK_GRADIENTS([&](V t) { return mean(t[0], axes, keepdim); }, {x});
      }
    }
  }
}

TEST_CASE("reduce: max/min values, first-extremum gradient, NaN") {
  // [[1, 5, 5], [7, 0, 7]]: ties at (0,1)/(0,2) and (1,0)/(1,2)
  Tensor x = Tensor::from({2, 3}, {1, 5, 5, 7, 0, 7}).set_requires_grad();
  CHECK(max(x, 1).to_vector() == std::vector<float>{5, 7});
  CHECK(min(x, 1).to_vector() == std::vector<float>{1, 0});
  CHECK(max(x, 0).to_vector() == std::vector<float>{7, 5, 7});
  CHECK(min(x, -2, true).shape() == Shape{1, 3});
  CHECK(min(x, -2, true).to_vector() == std::vector<float>{1, 0, 5});
  sum(max(x, 1)).backward();
  CHECK(x.grad().to_vector() == std::vector<float>{0, 1, 0, 1, 0, 0});  // the first of each tie
  x.zero_grad();
  sum(min(x, 0)).backward();
  CHECK(x.grad().to_vector() == std::vector<float>{1, 0, 1, 0, 1, 0});
  Tensor with_nan = Tensor::from({3}, {1, NAN, 2});
  CHECK(std::isnan(max(with_nan, 0).item()));
  CHECK(std::isnan(min(with_nan, 0).item()));
}

TEST_CASE("reduce: max/min gradient checks on odd shapes") {
  Rng rng(9);
  for (const Shape& s : {Shape{3, 5, 7}, Shape{2, 1, 4, 3}}) {
    // Distinct values spaced well beyond the finite-difference step, so no perturbation changes the winner.
    Tensor x = Tensor::arange(shape_numel(s));
    std::vector<float> v = x.to_vector();
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[static_cast<size_t>(rng.randint(static_cast<int64_t>(i)))]);
    Tensor p = Tensor::from(s, v).set_requires_grad();
    for (int axis : {0, 1, -1, -2}) {
      for (bool keepdim : {false, true}) {
        INFO("shape " << shape_str(s) << " axis " << axis << " keepdim " << keepdim);
        CHECK_GRADIENTS([&](V t) { return max(t[0], axis, keepdim); }, {p});
        CHECK_GRADIENTS([&](V t) { return min(t[0], axis, keepdim); }, {p});
      }
    }
  }
}

TEST_CASE("reduce: argmax_rows") {
  Tensor x = Tensor::from({3, 4}, {0, 3, 1, 3, -5, -4, -6, -9, 2, 2, 2, 2});
  CHECK(argmax_rows(x) == std::vector<int>{1, 1, 0});
  CHECK_THROWS_NAMING(argmax_rows(Tensor({2, 3, 4})), "argmax_rows", "[2, 3, 4]");
  CHECK_THROWS_NAMING(argmax_rows(Tensor({2, 0})), "argmax_rows", "[2, 0]");
}

TEST_CASE("reduce: bad axes name the op and the shape") {
  Tensor x({2, 3});
  CHECK_THROWS_NAMING(sum(x, {2}), "sum", "axis 2", "[2, 3]");
  CHECK_THROWS_NAMING(mean(x, {-3}), "mean", "axis -3", "[2, 3]");
  CHECK_THROWS_NAMING(sum(x, {1, -1}), "sum", "twice", "[2, 3]");
  CHECK_THROWS_NAMING(sum(x, {}), "sum", "empty axis list", "[2, 3]");
  CHECK_THROWS_NAMING(max(x, 5), "max", "[2, 3]");
  CHECK_THROWS_NAMING(min(Tensor({2, 0}), 1), "min", "size 0", "[2, 0]");
}
