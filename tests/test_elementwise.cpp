// Elementwise ops: forward values by hand, broadcasting, gradient checks, shape errors.
#include <doctest/doctest.h>

#include "engine/autograd.h"
#include "engine/elementwise.h"
#include "engine/rng.h"
#include "tests/gradcheck.h"
#include "tests/test_helpers.h"

using namespace eq;

TEST_CASE("elementwise: broadcast forward values") {
  Tensor a = Tensor::from({2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor b = Tensor::from({3}, {10, 20, 30});
  CHECK((a + b).to_vector() == std::vector<float>{11, 22, 33, 14, 25, 36});
  Tensor c = Tensor::from({2, 1}, {2, 3});
  CHECK((a * c).to_vector() == std::vector<float>{2, 4, 6, 12, 15, 18});
  CHECK((a - c).shape() == Shape{2, 3});
  CHECK(broadcast_shapes({4, 1, 3}, {2, 1}, "t") == Shape{4, 2, 3});
  CHECK((Tensor::from({1}, {8}) / Tensor::from({2}, {2, 4})).to_vector() == std::vector<float>{4, 2});
}

TEST_CASE("elementwise: activations on hand-computed values") {
  Tensor x = Tensor::from({4}, {-2.0f, -0.5f, 0.0f, 1.5f});
  CHECK(relu(x).to_vector() == std::vector<float>{0, 0, 0, 1.5f});
  CHECK(leaky_relu(x, 0.1f).to_vector()[0] == doctest::Approx(-0.2f));
  CHECK(sigmoid(x).to_vector()[2] == doctest::Approx(0.5f));
  CHECK(gelu(x).to_vector()[3] == doctest::Approx(1.5f * 0.5f * (1 + std::erf(1.5f / std::sqrt(2.0f)))));
  CHECK(tanh(x).to_vector()[1] == doctest::Approx(std::tanh(-0.5f)));
  CHECK(pow(Tensor::from({1}, {3.0f}), 2.5f).item() == doctest::Approx(std::pow(3.0f, 2.5f)));
  // sigmoid must not overflow for large |x|
  Tensor big = Tensor::from({2}, {-200.0f, 200.0f});
  CHECK(sigmoid(big).to_vector() == std::vector<float>{0.0f, 1.0f});
}

TEST_CASE("elementwise: gradient checks, with broadcasting and odd sizes") {
  Rng rng(7);
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {{3, 5}, {3, 5}}, {{2, 3, 5}, {5}}, {{2, 1, 5}, {3, 1}}, {{7}, {1}}, {{1, 3, 1, 5}, {2, 3, 4, 1}}};
  for (auto& [sa, sb] : shapes) {
    Tensor a = Tensor::randn(sa, rng).set_requires_grad();
    Tensor b = Tensor::uniform(sb, rng, 0.5f, 2.0f).set_requires_grad();  // away from 0 for div
    INFO("shapes " << shape_str(sa) << " and " << shape_str(sb));
    CHECK_GRADIENTS([](const std::vector<Tensor>& t) { return t[0] + t[1]; }, {a, b});
    CHECK_GRADIENTS([](const std::vector<Tensor>& t) { return t[0] - t[1]; }, {a, b});
    CHECK_GRADIENTS([](const std::vector<Tensor>& t) { return t[0] * t[1]; }, {a, b});
    CHECK_GRADIENTS([](const std::vector<Tensor>& t) { return t[0] / t[1]; }, {a, b});
  }
}

TEST_CASE("elementwise: unary gradient checks") {
  Rng rng(3);
  // Away from relu's kink at 0: |x| >= 0.1.
  Tensor x = Tensor::uniform({3, 7}, rng, 0.1f, 2.0f);
  for (int64_t i = 0; i < x.numel(); i += 2) x.data()[i] = -x.data()[i];
  x.set_requires_grad();
  Tensor pos = Tensor::uniform({3, 7}, rng, 0.5f, 3.0f).set_requires_grad();
  using V = const std::vector<Tensor>&;
  CHECK_GRADIENTS([](V t) { return relu(t[0]); }, {x});
  CHECK_GRADIENTS([](V t) { return leaky_relu(t[0], 0.2f); }, {x});
  CHECK_GRADIENTS([](V t) { return gelu(t[0]); }, {x});
  CHECK_GRADIENTS([](V t) { return tanh(t[0]); }, {x});
  CHECK_GRADIENTS([](V t) { return sigmoid(t[0]); }, {x});
  CHECK_GRADIENTS([](V t) { return exp(t[0]); }, {x});
  CHECK_GRADIENTS([](V t) { return abs(t[0]); }, {x});
  CHECK_GRADIENTS([](V t) { return square(t[0]); }, {x});
  CHECK_GRADIENTS([](V t) { return t[0] * 3.0f + 1.0f; }, {x});
  CHECK_GRADIENTS([](V t) { return -t[0]; }, {x});
  CHECK_GRADIENTS([](V t) { return log(t[0]); }, {pos});
  CHECK_GRADIENTS([](V t) { return sqrt(t[0]); }, {pos});
  CHECK_GRADIENTS([](V t) { return pow(t[0], 1.7f); }, {pos});
}

TEST_CASE("elementwise: the gradient check can fail (it is not vacuous)") {
  // A deliberately wrong backward must be caught: y = x^2 but report dy/dx = x.
  Rng rng(1);
  Tensor x = Tensor::randn({5}, rng).set_requires_grad();
  auto wrong = [](const std::vector<Tensor>& t) {
    Tensor y(t[0].shape());
    for (int64_t i = 0; i < y.numel(); ++i) y.data()[i] = t[0].data()[i] * t[0].data()[i];
    record(y, "wrong_square", {t[0]}, [x = t[0]](const float* g, const std::vector<float*>& gin) {
      for (int64_t i = 0; i < x.numel(); ++i) gin[0][i] += g[i] * x.data()[i];
    });
    return y;
  };
  CHECK_FALSE(eq::testing::gradcheck(wrong, {x}).ok);
}

TEST_CASE("elementwise: incompatible shapes name the op and both shapes") {
  Tensor a({2, 3}), b({4});
  CHECK_THROWS_NAMING(a + b, "add", "[2, 3]", "[4]");
  CHECK_THROWS_NAMING(a * Tensor({3, 3}), "mul", "[3, 3]");
  CHECK_THROWS_NAMING(Tensor::from({2}, {1, 2, 3}), "Tensor::from", "[2]");
  CHECK_THROWS_NAMING(Tensor().shape(), "undefined");
}
