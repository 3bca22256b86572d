// Pooling: hand-computed values (with padding), where the max-pool gradient goes, gradient checks, bad input.
#include <doctest/doctest.h>

#include <numeric>

#include "engine/autograd.h"
#include "engine/elementwise.h"
#include "engine/pool.h"
#include "engine/rng.h"
#include "tests/gradcheck.h"
#include "tests/test_helpers.h"

using namespace eq;
using V = const std::vector<Tensor>&;

namespace {

Pool2dOptions pool(int kernel, int stride, int pad = 0) {
  Pool2dOptions o;
  o.kernel_h = o.kernel_w = kernel;
  o.stride_h = o.stride_w = stride;
  o.pad_h = o.pad_w = pad;
  return o;
}

// Distinct values spaced >= 0.1 apart in random order: no ties, so max pooling is smooth under the gradient
// check's small perturbations.
Tensor distinct_values(Shape shape, Rng& rng) {
  Tensor t(shape);
  std::vector<int64_t> order(static_cast<size_t>(t.numel()));
  std::iota(order.begin(), order.end(), 0);
  for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[static_cast<size_t>(rng.randint(i))]);
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = 0.1f * static_cast<float>(order[i]) - 1.0f;
  return t;
}

// The step is relative to |x| (up to 20 here): 1e-3 keeps it below half the 0.1 spacing of distinct_values, so
// no perturbation changes a window's argmax.
testing::GradCheckOptions small_step() {
  testing::GradCheckOptions o;
  o.step = 1e-3;
  return o;
}

}  // namespace

TEST_CASE("pool: hand-computed max and average values") {
  // 4x4 ramp 0..15.
  std::vector<float> v(16);
  std::iota(v.begin(), v.end(), 0.0f);
  Tensor x = Tensor::from({1, 1, 4, 4}, v);
  CHECK(max_pool2d(x, pool(2, 2)).to_vector() == std::vector<float>{5, 7, 13, 15});
  CHECK(avg_pool2d(x, pool(2, 2)).to_vector() == std::vector<float>{2.5f, 4.5f, 10.5f, 12.5f});
  // 3x3 windows, stride 2, padding 1 -> 2x2 output. Max: padded cells never win, even over negative values.
  Tensor mp = max_pool2d(x, pool(3, 2, 1));
  CHECK(mp.shape() == Shape{1, 1, 2, 2});
  CHECK(mp.to_vector() == std::vector<float>{5, 7, 13, 15});
  CHECK(max_pool2d(x * -1.0f, pool(3, 2, 1)).to_vector() == std::vector<float>{-0, -1, -4, -5});
  // Average, count_include_pad: the top-left window holds 0, 1, 4, 5 and five padded zeros; divisor is 9.
  Tensor ap = avg_pool2d(x, pool(3, 2, 1));
  CHECK(ap.at({0, 0, 0, 0}) == doctest::Approx(10.0 / 9));
  CHECK(ap.at({0, 0, 1, 1}) == doctest::Approx((5 + 6 + 7 + 9 + 10 + 11 + 13 + 14 + 15) / 9.0));
  // Global average: per plane.
  Tensor g = global_avg_pool2d(Tensor::from({1, 2, 1, 2}, {1, 3, 10, 20}));
  CHECK(g.shape() == Shape{1, 2});
  CHECK(g.to_vector() == std::vector<float>{2, 15});
  // Odd size with floor semantics: 5x5, kernel 2, stride 2 -> 2x2 (last row and column unread).
  CHECK(max_pool2d(Tensor::ones({2, 3, 5, 5}), pool(2, 2)).shape() == Shape{2, 3, 2, 2});
}

TEST_CASE("pool: the max-pool gradient goes to the argmax only") {
  Tensor x = Tensor::from({1, 1, 2, 4}, {1, 9, 3, 2, 4, 0, 8, 7}).set_requires_grad();
  Tensor y = max_pool2d(x, pool(2, 2));
  CHECK(y.to_vector() == std::vector<float>{9, 8});
  y.backward(Tensor::from({1, 1, 1, 2}, {10, 20}));
  CHECK(x.grad().to_vector() == std::vector<float>{0, 10, 0, 0, 0, 0, 20, 0});
  // Overlapping windows (stride 1) that share a maximum: its gradient is the sum.
  Tensor z = Tensor::from({1, 1, 1, 3}, {1, 5, 2}).set_requires_grad();
  Pool2dOptions row = pool(1, 1);
  row.kernel_w = 2;
  max_pool2d(z, row).backward(Tensor::from({1, 1, 1, 2}, {1, 2}));
  CHECK(z.grad().to_vector() == std::vector<float>{0, 3, 0});
}

TEST_CASE("pool: gradient checks with odd shapes, stride and padding") {
  Rng rng(4);
  for (Shape s : {Shape{2, 3, 5, 7}, Shape{1, 2, 6, 6}, Shape{3, 1, 7, 4}}) {
    INFO("input " << shape_str(s));
    Tensor x = distinct_values(s, rng).set_requires_grad();
    for (Pool2dOptions o : {pool(2, 2), pool(3, 2, 1), pool(3, 1, 1), pool(2, 1)}) {
      INFO("kernel " << o.kernel_h << " stride " << o.stride_h << " pad " << o.pad_h);
      CHECK_GRADIENTS([o](V t) { return max_pool2d(t[0], o); }, {x}, small_step());
      CHECK_GRADIENTS([o](V t) { return avg_pool2d(t[0], o); }, {x});
    }
    CHECK_GRADIENTS([](V t) { return global_avg_pool2d(t[0]); }, {x});
  }
  // Rectangular kernel and stride.
  Tensor x = distinct_values({2, 2, 7, 9}, rng).set_requires_grad();
  Pool2dOptions rect = pool(3, 2, 1);
  rect.kernel_w = 2, rect.stride_w = 3, rect.pad_w = 0;
  CHECK_GRADIENTS([rect](V t) { return max_pool2d(t[0], rect); }, {x}, small_step());
  CHECK_GRADIENTS([rect](V t) { return avg_pool2d(t[0], rect); }, {x});
}

TEST_CASE("pool: bad input names the op and the shapes") {
  CHECK_THROWS_NAMING(max_pool2d(Tensor({3, 4, 4}), pool(2, 2)), "max_pool2d", "[3, 4, 4]");
  CHECK_THROWS_NAMING(avg_pool2d(Tensor({1, 1, 2, 2}), pool(3, 1)), "avg_pool2d", "larger than the padded input",
                      "[1, 1, 2, 2]");
  CHECK_THROWS_NAMING(max_pool2d(Tensor({1, 1, 4, 4}), pool(2, 2, 2)), "max_pool2d", "half the kernel");
  CHECK_THROWS_NAMING(max_pool2d(Tensor({1, 1, 4, 4}), pool(2, 0)), "max_pool2d", "stride", "[1, 1, 4, 4]");
  CHECK_THROWS_NAMING(global_avg_pool2d(Tensor({2, 3})), "global_avg_pool2d", "[2, 3]");
  CHECK_THROWS_NAMING(global_avg_pool2d(Tensor({2, 3, 0, 4})), "global_avg_pool2d", "[2, 3, 0, 4]");
}
