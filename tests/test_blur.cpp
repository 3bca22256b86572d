// Gaussian blur: the 1-D kernel, hand-computed values per padding mode, mass and constants preserved, agreement
// with a direct 2-D convolution, commuting with roll, gradients, errors.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/blur.h"
#include "engine/resample.h"
#include "engine/rng.h"
#include "tests/gradcheck.h"
#include "tests/test_helpers.h"

using namespace eq;
using eq::testing::max_abs_diff;
using V = const std::vector<Tensor>&;

namespace {

const PadMode kPads[] = {PadMode::Zeros, PadMode::Reflect, PadMode::Replicate, PadMode::Circular};

double sum_of(const Tensor& t) {
  double s = 0;
  for (float v : t.to_vector()) s += v;
  return s;
}

}  // namespace

TEST_CASE("blur: the sampled 1-D Gaussian kernel") {
  const float e = std::exp(-0.5f);
  std::vector<float> k = gaussian_kernel1d(1.0f, 1);
  REQUIRE(k.size() == 3);
  CHECK(k[0] == doctest::Approx(e / (1 + 2 * e)));
  CHECK(k[1] == doctest::Approx(1 / (1 + 2 * e)));
  CHECK(k[2] == k[0]);
  CHECK(gaussian_kernel1d(1.0f).size() == 7);   // radius ceil(3 sigma) = 3
  CHECK(gaussian_kernel1d(0.5f).size() == 5);   // radius 2
  CHECK(gaussian_kernel1d(1.7f).size() == 13);  // radius ceil(5.1) = 6
  for (float sigma : {0.3f, 1.0f, 2.5f}) {
    double s = 0;
    for (float v : gaussian_kernel1d(sigma)) s += v;
    CHECK(s == doctest::Approx(1.0));
  }
  CHECK(gaussian_kernel1d(0.0f) == std::vector<float>{1});
  CHECK(gaussian_kernel1d(0.0f, 2) == std::vector<float>{0, 0, 1, 0, 0});
}

TEST_CASE("blur: hand-computed 1-D values for each padding mode") {
  // A [1, 3] image blurred with sigma 1, radius 1: taps (a, b, a). Along the size-1 H axis, Zeros scales by b
  // (both neighbours are padding) and every other mode reads the row itself three times (weight a + b + a = 1).
  const float e = std::exp(-0.5f), a = e / (1 + 2 * e), b = 1 / (1 + 2 * e);
  Tensor x = Tensor::from({1, 3}, {1, 0, 0});
  auto blur = [&](PadMode pad) { return gaussian_blur(x, 1.0f, 1, pad).to_vector(); };
  std::vector<float> got = blur(PadMode::Zeros);  // 0 | 1 0 0 | 0
  CHECK(got[0] == doctest::Approx(b * b));
  CHECK(got[1] == doctest::Approx(a * b));
  CHECK(got[2] == doctest::Approx(0));
  got = blur(PadMode::Reflect);  // 0 | 1 0 0 | 0: the mirror images of x[1] and x[1] are 0
  CHECK(got[0] == doctest::Approx(b));
  got = blur(PadMode::Replicate);  // 1 | 1 0 0 | 0
  CHECK(got[0] == doctest::Approx(a + b));
  got = blur(PadMode::Circular);  // 0 | 1 0 0 | 1
  CHECK(got[2] == doctest::Approx(a));
  CHECK(got[0] == doctest::Approx(b));
  // Reflect with radius larger than the axis keeps mirroring: 0 1 2 1 0 1 2 ...
  Tensor ramp = Tensor::from({1, 3}, {0, 1, 2});
  std::vector<float> k = gaussian_kernel1d(2.0f, 4);
  float expect = 0;
  const int src[9] = {0, 1, 2, 1, 0, 1, 2, 1, 0};  // positions -4 .. 4 read these cells
  for (int t = 0; t < 9; ++t) expect += k[t] * ramp.data()[src[t]];
  CHECK(gaussian_blur(ramp, 2.0f, 4, PadMode::Reflect).to_vector()[0] == doctest::Approx(expect));
}

TEST_CASE("blur: circular padding preserves the sum; constant images stay constant") {
  Rng rng(1);
  Tensor x = Tensor::randn({2, 3, 7, 9}, rng);
  CHECK(sum_of(gaussian_blur(x, 1.3f, -1, PadMode::Circular)) == doctest::Approx(sum_of(x)).epsilon(1e-4));
  Tensor c = Tensor::full({1, 2, 5, 6}, 2.5f);
  for (PadMode pad : {PadMode::Reflect, PadMode::Replicate, PadMode::Circular}) {
    Tensor out = gaussian_blur(c, 1.5f, -1, pad);  // radius 5, larger than the 5-row axis
    CHECK(max_abs_diff(out, c) < 1e-5f);
  }
  // Zero padding loses mass at the border (the check above would catch a wrong padding).
  CHECK(gaussian_blur(c, 1.5f, -1, PadMode::Zeros).at({0, 0, 0, 0}) < 2.0f);
}

TEST_CASE("blur: separable blur equals a direct 2-D convolution with the outer-product kernel") {
  Rng rng(2);
  Tensor x = Tensor::randn({2, 5, 6}, rng);
  const float sigma = 0.9f;
  const int r = 2;
  std::vector<float> k = gaussian_kernel1d(sigma, r);
  Tensor out = gaussian_blur(x, sigma, r, PadMode::Circular);
  float worst = 0;
  for (int64_t p = 0; p < 2; ++p)
    for (int64_t i = 0; i < 5; ++i)
      for (int64_t j = 0; j < 6; ++j) {
        double v = 0;
        for (int a = -r; a <= r; ++a)
          for (int b = -r; b <= r; ++b)
            v += double(k[a + r]) * k[b + r] * x.at({p, (i + a + 5) % 5, (j + b + 6) % 6});
        worst = std::max(worst, std::fabs(static_cast<float>(v) - out.at({p, i, j})));
      }
  CHECK(worst < 1e-5f);
}

TEST_CASE("blur: circular blur commutes with roll; sigma 0 is the identity") {
  Rng rng(3);
  Tensor x = Tensor::randn({2, 2, 6, 5}, rng);
  CHECK(max_abs_diff(gaussian_blur(roll(x, 2, -1), 1.1f, -1, PadMode::Circular),
                     roll(gaussian_blur(x, 1.1f, -1, PadMode::Circular), 2, -1)) < 1e-5f);
  CHECK(max_abs_diff(gaussian_blur(x, 0.0f), x) == 0.0f);
  CHECK(max_abs_diff(gaussian_blur(x, 0.0f, 3, PadMode::Zeros), x) == 0.0f);
}

TEST_CASE("blur: gradients for every padding mode, odd sizes, radius beyond the image") {
  Rng rng(4);
  for (PadMode pad : kPads) {
    INFO("pad " << int(pad));
    Tensor x = Tensor::randn({2, 3, 5, 7}, rng).set_requires_grad();
    CHECK_GRADIENTS([pad](V t) { return gaussian_blur(t[0], 0.8f, -1, pad); }, {x});
    CHECK_GRADIENTS([pad](V t) { return gaussian_blur(t[0], 2.0f, 6, pad); }, {x});
  }
  Tensor x = Tensor::randn({3, 4}, rng).set_requires_grad();
  CHECK_GRADIENTS([](V t) { return gaussian_blur(t[0], 0.0f); }, {x});
}

TEST_CASE("blur: bad input names the op and the shapes") {
  CHECK_THROWS_NAMING(gaussian_blur(Tensor({1, 1, 4, 4}), -1.0f), "gaussian_blur", "sigma", "[1, 1, 4, 4]");
  CHECK_THROWS_NAMING(gaussian_blur(Tensor({4}), 1.0f), "gaussian_blur", "[4]");
  CHECK_THROWS_NAMING(gaussian_blur(Tensor({4, 4}), 1.0f, -3), "gaussian_blur", "radius", "[4, 4]");
  CHECK_THROWS_NAMING(gaussian_kernel1d(std::nanf("")), "gaussian_kernel1d", "sigma");
  CHECK_THROWS_NAMING(gaussian_blur(Tensor({4, 4}), 1e12f), "gaussian_blur", "sigma", "[4, 4]");
  CHECK_THROWS_NAMING(gaussian_kernel1d(1.0f, 1 << 30), "gaussian_kernel1d", "radius", "too large");
}
