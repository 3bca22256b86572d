// SIE's layers: the hypernetwork predictor (A(g) linear in g, the batched form equals A(g[b]) z[b] row by row,
// gradients to z, g and every A_i), the projector, the SmallResNet encoder (shapes for 32x32 RGB and 28x28 grey,
// zero-initialised residual branches, gradients reach every parameter) and errors naming the shapes.
#include <doctest/doctest.h>

#include "engine/elementwise.h"
#include "engine/matmul.h"
#include "engine/reduce.h"
#include "engine/rng.h"
#include "engine/shape_ops.h"
#include "layers/hypernetwork_predictor.h"
#include "layers/projector.h"
#include "layers/small_resnet.h"
#include "tests/gradcheck.h"
#include "tests/test_helpers.h"

using namespace eq;
using eq::testing::max_abs_diff;
using V = const std::vector<Tensor>&;

TEST_CASE("hypernetwork predictor: each row is A(g) z with A(g) = sum_i g_i A_i") {
  Rng rng(1);
  HypernetworkPredictor pred(5, 3, rng);
  CHECK(pred.weight.shape() == Shape{3, 5, 5});
  Tensor z = Tensor::randn({4, 5}, rng), g = Tensor::randn({4, 3}, rng);
  Tensor out = pred.predict(z, g);
  REQUIRE(out.shape() == Shape{4, 5});
  for (int64_t b = 0; b < 4; ++b) {
    std::vector<float> gb(g.data() + b * 3, g.data() + b * 3 + 3);
    Tensor a = pred.matrix(gb);  // [5, 5]
    for (int64_t j = 0; j < 5; ++j) {
      double expected = 0;
      for (int64_t k = 0; k < 5; ++k) expected += double(a.at({j, k})) * z.at({b, k});
      CHECK(out.at({b, j}) == doctest::Approx(expected).epsilon(1e-5));
    }
  }
  // A(e_i) = A_i: a one-hot group element selects one matrix.
  Tensor a1 = pred.matrix({0, 1, 0});
  CHECK(max_abs_diff(a1, reshape(slice(pred.weight, 0, 1, 2), {5, 5})) == 0.0f);
  // forward([z, g]) is the same map.
  CHECK(max_abs_diff(pred.forward(concat({z, g}, 1)), out) == 0.0f);
}

TEST_CASE("hypernetwork predictor: linear in g, and in z") {
  Rng rng(2);
  HypernetworkPredictor pred(6, 4, rng);
  Tensor z = Tensor::randn({3, 6}, rng), z2 = Tensor::randn({3, 6}, rng);
  Tensor g1 = Tensor::randn({3, 4}, rng), g2 = Tensor::randn({3, 4}, rng);
  Tensor lhs = pred.predict(z, g1 * 2.0f + g2 * -0.5f);
  Tensor rhs = pred.predict(z, g1) * 2.0f + pred.predict(z, g2) * -0.5f;
  CHECK(max_abs_diff(lhs, rhs) < 1e-5f);
  CHECK(max_abs_diff(pred.predict(z + z2, g1), pred.predict(z, g1) + pred.predict(z2, g1)) < 1e-5f);
  CHECK(max_abs_diff(pred.predict(z, Tensor::zeros({3, 4})), Tensor::zeros({3, 6})) == 0.0f);
  // Not a constant map: different group elements give different predictions.
  CHECK(max_abs_diff(pred.predict(z, g1), pred.predict(z, g2)) > 1e-2f);
}

TEST_CASE("hypernetwork predictor: the default initialisation keeps the scale of z for unit group elements") {
  Rng rng(3);
  HypernetworkPredictor pred(256, 4, rng);
  Tensor z = Tensor::randn({64, 256}, rng);
  Tensor g = Tensor::randn({64, 4}, rng);
  Tensor norms = sqrt(sum(square(g), {1}, true));
  Tensor out = pred.predict(z, g / norms);
  const double ratio = std::sqrt(sum(square(out)).item() / sum(square(z)).item());
  CHECK(ratio == doctest::Approx(1.0).epsilon(0.1));
}

TEST_CASE("hypernetwork predictor: gradient check for z, g and the matrices A_i") {
  Rng rng(4);
  HypernetworkPredictor pred(3, 2, rng);
  Tensor z = Tensor::randn({4, 3}, rng).set_requires_grad(), g = Tensor::randn({4, 2}, rng).set_requires_grad();
  CHECK_GRADIENTS([&](V in) { return pred.predict(in[0], in[1]); }, {z, g, pred.weight});
  CHECK_GRADIENTS([&](V in) { return pred.forward(concat({in[0], in[1]}, 1)); }, {z, g});
}

TEST_CASE("projector: Linear-BN-ReLU-Linear without bias, gradients to every parameter") {
  Rng rng(5);
  auto proj = make_projector(6, 8, 4, rng);
  REQUIRE(proj->size() == 4);
  CHECK((*proj)[0].name() == "Linear(6, 8)");
  CHECK((*proj)[1].name() == "BatchNorm(8)");
  CHECK((*proj)[2].name() == "ReLU");
  CHECK((*proj)[3].name() == "Linear(8, 4)");
  const NamedTensors params = proj->named_parameters();
  REQUIRE(params.size() == 5);  // 0.weight 0.bias 1.weight 1.bias 3.weight: the last Linear has no bias
  CHECK(params.back().first == "3.weight");
  Tensor x = Tensor::randn({5, 6}, rng);
  CHECK(proj->forward(x).shape() == Shape{5, 4});
  // Training mode: every weight gets a gradient; the first Linear's bias gets none to speak of, since the batch
  // norm after it subtracts the batch mean (as in PyTorch: the bias is redundant there).
  sum(square(proj->forward(x))).backward();
  for (auto& [name, t] : params) {
    INFO(name);
    REQUIRE(t.has_grad());
    const float largest = max_abs_diff(t.grad(), Tensor::zeros(t.shape()));
    if (name == "0.bias") CHECK(largest < 1e-4f);
    else CHECK(largest > 1e-3f);
  }
  // Eval mode (batch norm with its running statistics): finite differences agree with autograd.
  proj->eval();
  CHECK_GRADIENTS([&](V) { return proj->forward(x); }, proj->parameters());
}

TEST_CASE("small resnet: shapes for 32x32 RGB and 28x28 grey, and a residual block starts as its shortcut") {
  Rng rng(6);
  SmallResNet rgb(3, 24, rng, 8), grey(1, 16, rng, 8);
  CHECK(rgb.forward(Tensor::uniform({2, 3, 32, 32}, rng)).shape() == Shape{2, 24});
  CHECK(grey.forward(Tensor::uniform({3, 1, 28, 28}, rng)).shape() == Shape{3, 16});
  CHECK(rgb.out_dim() == 24);
  // The representation comes after a ReLU: never negative.
  Tensor r = grey.forward(Tensor::uniform({3, 1, 28, 28}, rng));
  for (float v : r.to_vector()) CHECK(v >= 0.0f);

  // zero_init_residual: an identity-shortcut block is relu(x) at the start, and stops being so once bn2 learns.
  BasicBlock block(4, 4, 1, rng);
  Tensor x = Tensor::randn({2, 4, 6, 6}, rng);
  CHECK(max_abs_diff(block.forward(x), relu(x)) == 0.0f);
  for (auto& [name, t] : block.named_parameters())
    if (name == "bn2.weight") t.data()[0] = 1;
  CHECK(max_abs_diff(block.forward(x), relu(x)) > 1e-3f);
}

TEST_CASE("small resnet: gradients reach every parameter once the residual branches are switched on") {
  Rng rng(7);
  SmallResNet net(1, 8, rng, 4);
  for (auto& [name, t] : net.named_parameters())
    if (name.find("bn2.weight") != std::string::npos)
      for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = 1;
  Tensor x = Tensor::uniform({3, 1, 12, 12}, rng);
  sum(square(net.forward(x))).backward();
  for (auto& [name, t] : net.named_parameters()) {
    INFO(name);
    REQUIRE(t.has_grad());
    CHECK(max_abs_diff(t.grad(), Tensor::zeros(t.shape())) > 0.0f);
  }
}

TEST_CASE("sie layers: bad input names the layer and the shapes") {
  Rng rng(8);
  HypernetworkPredictor pred(4, 2, rng);
  CHECK_THROWS_NAMING(pred.predict(Tensor({3, 5}), Tensor({3, 2})), "HypernetworkPredictor", "[3, 5]", "[3, 2]");
  CHECK_THROWS_NAMING(pred.predict(Tensor({3, 4}), Tensor({2, 2})), "HypernetworkPredictor", "[2, 2]");
  CHECK_THROWS_NAMING(pred.forward(Tensor({3, 4})), "HypernetworkPredictor", "[3, 4]", "[B, 6]");
  CHECK_THROWS_NAMING(pred.matrix({1, 2, 3}), "HypernetworkPredictor", "2 numbers");
  CHECK_THROWS_NAMING(HypernetworkPredictor(0, 2, rng), "HypernetworkPredictor", "positive");
  SmallResNet net(3, 8, rng, 4);
  CHECK_THROWS_NAMING(net.forward(Tensor({2, 1, 32, 32})), "SmallResNet", "[2, 1, 32, 32]");
  CHECK_THROWS_NAMING(net.forward(Tensor({2, 3, 4, 4})), "SmallResNet", "[2, 3, 4, 4]");
  CHECK_THROWS_NAMING(make_projector(0, 4, 4, rng), "make_projector", "in 0");
}
