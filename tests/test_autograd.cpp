// Tests of the tape itself: fan-out, accumulation, NoGrad, tape freeing, error messages.
#include <doctest/doctest.h>

#include "engine/autograd.h"
#include "engine/elementwise.h"
#include "engine/rng.h"
#include "tests/gradcheck.h"
#include "tests/test_helpers.h"

using namespace eq;
using eq::testing::max_abs_diff;

TEST_CASE("autograd: fan-out accumulates both contributions") {
  // y = x * x + x  ->  dy/dx = 2x + 1; x is used three times.
  Tensor x = Tensor::from({3}, {1.0f, -2.0f, 0.5f}).set_requires_grad();
  Tensor y = x * x + x;
  y.backward(Tensor::ones({3}));
  CHECK(x.grad().to_vector() == std::vector<float>{3.0f, -3.0f, 2.0f});
}

TEST_CASE("autograd: a diamond graph (shared intermediate) runs each node once, after its consumers") {
  Tensor x = Tensor::from({2}, {0.3f, -0.7f}).set_requires_grad();
  Tensor h = tanh(x);
  Tensor y = h * h + exp(h);  // dy/dx = (2h + e^h)(1 - h^2)
  y.backward(Tensor::ones({2}));
  for (int i = 0; i < 2; ++i) {
    const float hv = std::tanh(x.data()[i]);
    CHECK(x.grad().data()[i] == doctest::Approx((2 * hv + std::exp(hv)) * (1 - hv * hv)).epsilon(1e-5));
  }
}

TEST_CASE("autograd: leaf gradients accumulate across backward calls until zero_grad") {
  Tensor x = Tensor::from({1}, {2.0f}).set_requires_grad();
  (x * 3.0f).backward(Tensor::ones({1}));
  (x * 3.0f).backward(Tensor::ones({1}));
  CHECK(x.grad().item() == 6.0f);
  x.zero_grad();
  CHECK_FALSE(x.has_grad());
}

TEST_CASE("autograd: NoGrad records nothing; backward on it is a clear error") {
  Tensor x = Tensor::ones({2}).set_requires_grad();
  Tensor y;
  {
    NoGrad ng;
    y = x * 2.0f;
  }
  CHECK_FALSE(y.requires_grad());
  CHECK_THROWS_NAMING(y.backward(Tensor::ones({2})), "backward", "does not require grad");
}

TEST_CASE("autograd: the tape is freed after backward and a second backward says so") {
  Tensor x = Tensor::ones({2}).set_requires_grad();
  Tensor y = exp(x);
  std::weak_ptr<Node> node = y.impl()->grad_fn;
  CHECK_FALSE(node.expired());
  y.backward(Tensor::ones({2}));
  CHECK(node.expired());
  CHECK_THROWS_NAMING(y.backward(Tensor::ones({2})), "backward", "already freed");
}

TEST_CASE("autograd: backward without seed needs a one-element tensor") {
  Tensor x = Tensor::ones({2, 3}).set_requires_grad();
  CHECK_THROWS_NAMING((x * 2.0f).backward(), "backward", "[2, 3]");
}

TEST_CASE("autograd: a long chain does not overflow the stack (iterative ordering)") {
  Tensor x = Tensor::from({1}, {1.0f}).set_requires_grad();
  Tensor y = x;
  for (int i = 0; i < 200000; ++i) y = y + 0.0f;
  y.backward(Tensor::ones({1}));
  CHECK(x.grad().item() == 1.0f);
}
