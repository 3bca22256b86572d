// Initialisers: fans from shapes, gains, and the statistics of each distribution on large tensors (std within a
// few percent of PyTorch's formulas), bounds, determinism, errors.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/elementwise.h"
#include "engine/init.h"
#include "engine/rng.h"
#include "tests/test_helpers.h"

using namespace eq;

namespace {

struct Stats {
  double mean, std, min, max;
};

Stats stats_of(const Tensor& t) {
  double s = 0, s2 = 0, lo = 1e30, hi = -1e30;
  for (int64_t i = 0; i < t.numel(); ++i) {
    const double v = t.data()[i];
    s += v, s2 += v * v, lo = std::min(lo, v), hi = std::max(hi, v);
  }
  const double mean = s / t.numel();
  return {mean, std::sqrt(s2 / t.numel() - mean * mean), lo, hi};
}

}  // namespace

TEST_CASE("init: fans and gains") {
  CHECK(compute_fans({16, 3, 5, 5}).fan_in == 75);
  CHECK(compute_fans({16, 3, 5, 5}).fan_out == 400);
  CHECK(compute_fans({10, 20}).fan_in == 20);
  CHECK(compute_fans({10, 20}).fan_out == 10);
  CHECK(compute_fans({8, 4, 3, 2, 2}).fan_in == 48);  // a [Cout, Cin, S, kh, kw] scale-conv weight
  CHECK_THROWS_NAMING(compute_fans({7}), "compute_fans", "[7]");
  Tensor bias({7});
  Rng rng(0);
  CHECK_THROWS_NAMING(kaiming_uniform_(bias, rng), "kaiming_uniform_", "[7]");
  CHECK(calculate_gain(Nonlinearity::Relu) == doctest::Approx(std::sqrt(2.0)));
  CHECK(calculate_gain(Nonlinearity::Tanh) == doctest::Approx(5.0 / 3.0));
  CHECK(calculate_gain(Nonlinearity::Linear) == 1.0f);
  CHECK(calculate_gain(Nonlinearity::LeakyRelu, 0.2f) == doctest::Approx(std::sqrt(2.0 / 1.04)));
}

TEST_CASE("init: kaiming normal and uniform have PyTorch's std and bound") {
  Rng rng(1);
  Tensor w({128, 64, 3, 3});  // fan_in 576, fan_out 1152; 73728 values
  kaiming_normal_(w, rng);
  Stats s = stats_of(w);
  CHECK(s.std == doctest::Approx(std::sqrt(2.0 / 576)).epsilon(0.02));
  CHECK(std::fabs(s.mean) < 0.02 * s.std);  // the std of the mean is s.std / 271

  kaiming_normal_(w, rng, 0, FanMode::FanOut);
  CHECK(stats_of(w).std == doctest::Approx(std::sqrt(2.0 / 1152)).epsilon(0.02));

  kaiming_uniform_(w, rng);
  const double bound = std::sqrt(6.0 / 576);  // gain sqrt(2) * sqrt(3 / fan_in)
  s = stats_of(w);
  CHECK(s.max <= bound);
  CHECK(s.min >= -bound);
  CHECK(s.max > 0.99 * bound);
  CHECK(s.std == doctest::Approx(bound / std::sqrt(3.0)).epsilon(0.02));

  // PyTorch's default Linear/Conv init: a = sqrt(5) gives U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  kaiming_uniform_(w, rng, std::sqrt(5.0f));
  s = stats_of(w);
  CHECK(s.max <= 1 / std::sqrt(576.0) + 1e-7);
  CHECK(s.max > 0.99 / std::sqrt(576.0));

  Tensor lin({300, 200});
  kaiming_normal_(lin, rng, 0, FanMode::FanIn, Nonlinearity::Tanh);
  CHECK(stats_of(lin).std == doctest::Approx(5.0 / 3.0 / std::sqrt(200.0)).epsilon(0.02));
}

TEST_CASE("init: xavier uniform and normal") {
  Rng rng(2);
  Tensor w({300, 200});
  xavier_uniform_(w, rng);
  const double bound = std::sqrt(6.0 / 500);
  Stats s = stats_of(w);
  CHECK(s.max <= bound);
  CHECK(s.min >= -bound);
  CHECK(s.std == doctest::Approx(bound / std::sqrt(3.0)).epsilon(0.02));
  xavier_normal_(w, rng, 2.0f);
  CHECK(stats_of(w).std == doctest::Approx(2.0 * std::sqrt(2.0 / 500)).epsilon(0.02));
}

TEST_CASE("init: uniform_, normal_, zeros_, constant_, determinism") {
  Rng rng(3);
  Tensor t({100000});
  uniform_(t, rng, -2.0f, 4.0f);
  Stats s = stats_of(t);
  CHECK(s.min >= -2.0);
  CHECK(s.max < 4.0);
  CHECK(s.mean == doctest::Approx(1.0).epsilon(0.02));
  CHECK(s.std == doctest::Approx(6.0 / std::sqrt(12.0)).epsilon(0.02));
  normal_(t, rng, 3.0f, 0.5f);
  s = stats_of(t);
  CHECK(s.mean == doctest::Approx(3.0).epsilon(0.01));
  CHECK(s.std == doctest::Approx(0.5).epsilon(0.02));
  constant_(t, 1.5f);
  CHECK(stats_of(t).min == 1.5);
  CHECK(stats_of(t).max == 1.5);
  zeros_(t);
  CHECK(stats_of(t).max == 0.0);

  Tensor a({20, 10}), b({20, 10});
  Rng r1(42), r2(42);
  kaiming_uniform_(a, r1);
  kaiming_uniform_(b, r2);
  CHECK(eq::testing::max_abs_diff(a, b) == 0.0f);
}

TEST_CASE("init: bad arguments and non-leaf tensors are errors") {
  Rng rng(4);
  Tensor t({3, 4});
  CHECK_THROWS_NAMING(uniform_(t, rng, 1.0f, -1.0f), "uniform_", "[3, 4]");
  CHECK_THROWS_NAMING(normal_(t, rng, 0.0f, -1.0f), "normal_", "std");
  Tensor leaf = Tensor::ones({3, 4}).set_requires_grad();
  Tensor product = leaf * 2.0f;
  CHECK_THROWS_NAMING(kaiming_normal_(product, rng), "kaiming_normal_", "[3, 4]", "leaf");
  Tensor empty(Shape{0, 5});
  CHECK(kaiming_uniform_(empty, rng).numel() == 0);  // nothing to draw: a no-op, as in PyTorch
}
