// Losses: fused cross-entropy against the unfused ops (value and gradient), label smoothing, stability, accuracy,
// MSE, and bad input.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/autograd.h"
#include "engine/elementwise.h"
#include "engine/reduce.h"
#include "engine/rng.h"
#include "engine/softmax.h"
#include "losses/cross_entropy.h"
#include "losses/mse.h"
#include "tests/gradcheck.h"
#include "tests/test_helpers.h"

using namespace eq;
using V = const std::vector<Tensor>&;

namespace {

Tensor one_hot(const std::vector<int>& labels, int64_t classes) {
  Tensor t({static_cast<int64_t>(labels.size()), classes});
  for (size_t i = 0; i < labels.size(); ++i) t.data()[static_cast<int64_t>(i) * classes + labels[i]] = 1;
  return t;
}

// -mean_i sum_c q[i, c] log_softmax(x)[i, c] built from small ops, q = (1 - s) onehot + s / C.
Tensor unfused_cross_entropy(const Tensor& logits, const std::vector<int>& labels, float s) {
  const int64_t C = logits.shape()[1];
  Tensor q = one_hot(labels, C) * (1 - s) + s / static_cast<float>(C);
  return -mean(sum(log_softmax(logits, 1) * q, {1}));
}

}  // namespace

TEST_CASE("cross_entropy: hand-computed values") {
  CHECK(cross_entropy(Tensor::from({1, 2}, {0, 0}), {0}).item() == doctest::Approx(std::log(2.0)));
  // Row 0: logits [2, 0, 0], label 0 -> log(e^2 + 2) - 2; row 1: [0, 0, 0], label 2 -> log 3.
  Tensor x = Tensor::from({2, 3}, {2, 0, 0, 0, 0, 0});
  const double expected = ((std::log(std::exp(2.0) + 2) - 2) + std::log(3.0)) / 2;
  CHECK(cross_entropy(x, {0, 2}).item() == doctest::Approx(expected));
  CHECK(accuracy(x, {0, 2}) == 0.5);  // row 1 is a three-way tie: the first class wins
  CHECK(accuracy(x, {0, 0}) == 1.0);
}

TEST_CASE("cross_entropy: equals -mean(log_softmax picked) from the unfused ops, value and gradient") {
  Rng rng(31);
  for (float smoothing : {0.0f, 0.1f, 0.5f}) {
    INFO("label_smoothing " << smoothing);
    Tensor a = Tensor::randn({7, 5}, rng, 0, 2).set_requires_grad();
    Tensor b = a.detach().clone().set_requires_grad();
    const std::vector<int> labels{0, 4, 2, 2, 1, 3, 4};
    Tensor fused = cross_entropy(a, labels, smoothing), ref = unfused_cross_entropy(b, labels, smoothing);
    CHECK(fused.item() == doctest::Approx(ref.item()).epsilon(1e-5));
    fused.backward();
    ref.backward();
    CHECK(eq::testing::max_abs_diff(a.grad(), b.grad()) < 1e-6f);
  }
}

TEST_CASE("cross_entropy: backward is (softmax - onehot) / N directly") {
  Tensor x = Tensor::from({2, 3}, {1, 2, 3, 0, -1, 4}).set_requires_grad();
  cross_entropy(x, {2, 0}).backward();
  Tensor expected = (softmax(x.detach(), 1) - one_hot({2, 0}, 3)) / 2.0f;
  CHECK(eq::testing::max_abs_diff(x.grad(), expected) < 1e-7f);
  // One node on the tape, not a graph of small ops.
  Rng rng(1);
  Tensor y = Tensor::randn({4, 3}, rng).set_requires_grad();
  Tensor loss = cross_entropy(y, {0, 1, 2, 0});
  REQUIRE(loss.impl()->grad_fn);
  CHECK(std::string(loss.impl()->grad_fn->op) == "cross_entropy");
  CHECK(loss.impl()->grad_fn->inputs.size() == 1);
  CHECK(loss.impl()->grad_fn->inputs[0] == y.impl());
}

TEST_CASE("cross_entropy: gradient checks on odd shapes, with and without smoothing") {
  Rng rng(32);
  Tensor x = Tensor::randn({5, 7}, rng).set_requires_grad();
  const std::vector<int> labels{6, 0, 3, 3, 1};
  CHECK_GRADIENTS([&](V t) { return cross_entropy(t[0], labels); }, {x});
  CHECK_GRADIENTS([&](V t) { return cross_entropy(t[0], labels, 0.2f); }, {x});
  Tensor single = Tensor::randn({1, 2}, rng).set_requires_grad();
  CHECK_GRADIENTS([](V t) { return cross_entropy(t[0], {1}); }, {single});
}

TEST_CASE("cross_entropy: stable at large logits") {
  Tensor confident = Tensor::from({2, 2}, {1000, 0, 0, 1000});
  CHECK(cross_entropy(confident, {0, 1}).item() == doctest::Approx(0).epsilon(1e-6));
  CHECK(cross_entropy(confident, {1, 0}).item() == doctest::Approx(1000));
  Tensor x = Tensor::from({1, 3}, {-1000, 1000, 999}).set_requires_grad();
  Tensor loss = cross_entropy(x, {2});
  CHECK(loss.item() == doctest::Approx(1 + std::log1p(std::exp(-1.0))));
  loss.backward();
  for (float g : x.grad().to_vector()) CHECK(std::isfinite(g));
}

TEST_CASE("cross_entropy and accuracy: bad input names op, index, value and class count") {
  Tensor x({4, 10});
  CHECK_THROWS_NAMING(cross_entropy(x, {0, 1, 10, 2}), "cross_entropy", "label 10", "index 2", "10 classes",
                      "[4, 10]");
  CHECK_THROWS_NAMING(cross_entropy(x, {0, -1, 1, 2}), "cross_entropy", "label -1", "index 1");
  CHECK_THROWS_NAMING(cross_entropy(x, {0, 1}), "cross_entropy", "2 labels", "[4, 10]");
  CHECK_THROWS_NAMING(cross_entropy(Tensor({4}), {0, 1, 2, 3}), "cross_entropy", "[4]");
  CHECK_THROWS_NAMING(cross_entropy(x, {0, 1, 2, 3}, 1.5f), "cross_entropy", "label_smoothing");
  CHECK_THROWS_NAMING(accuracy(x, {0, 1, 2}), "accuracy", "[4, 10]");
  CHECK_THROWS_NAMING(accuracy(x, {0, 1, 2, 99}), "accuracy", "label 99");
}

TEST_CASE("mse_loss: values, gradients to both inputs, shape errors") {
  Tensor a = Tensor::from({2, 2}, {1, 2, 3, 4}), b = Tensor::from({2, 2}, {1, 0, 5, 4});
  CHECK(mse_loss(a, b).item() == doctest::Approx((0 + 4 + 4 + 0) / 4.0));
  Rng rng(33);
  Tensor p = Tensor::randn({3, 5, 7}, rng).set_requires_grad(), q = Tensor::randn({3, 5, 7}, rng).set_requires_grad();
  CHECK_GRADIENTS([](V t) { return mse_loss(t[0], t[1]); }, {p, q});
  // Equal to the unfused mean(square(a - b)).
  CHECK(mse_loss(p, q).item() == doctest::Approx(mean(square(p - q)).item()).epsilon(1e-5));
  // Only one side needing a gradient.
  Tensor target = Tensor::randn({2, 3}, rng), pred = Tensor::randn({2, 3}, rng).set_requires_grad();
  CHECK_GRADIENTS([&](V t) { return mse_loss(t[0], target); }, {pred});
  CHECK_THROWS_NAMING(mse_loss(Tensor({2, 3}), Tensor({3, 2})), "mse_loss", "[2, 3]", "[3, 2]");
  CHECK_THROWS_NAMING(mse_loss(Tensor({2, 3}), Tensor({1, 3})), "mse_loss", "[1, 3]");
}
