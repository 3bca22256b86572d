// Matrix products: gemm against the naive loop for every transpose combination, matmul and linear values,
// gradient checks, and shape errors.
#include <doctest/doctest.h>

#include "engine/autograd.h"
#include "engine/matmul.h"
#include "engine/rng.h"
#include "tests/gradcheck.h"
#include "tests/test_helpers.h"

using namespace eq;
using V = const std::vector<Tensor>&;

TEST_CASE("matmul: gemm equals gemm_reference for all transposes, strides, alpha and beta") {
  Rng rng(11);
  const int64_t M = 7, N = 5, K = 9, pad = 3;  // odd sizes; leading dimensions larger than the rows they hold
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      INFO("trans_a " << ta << ", trans_b " << tb);
      const int64_t a_rows = ta ? K : M, a_cols = ta ? M : K, b_rows = tb ? N : K, b_cols = tb ? K : N;
      const int64_t lda = a_cols + pad, ldb = b_cols + pad, ldc = N + pad;
      Tensor A = Tensor::randn({a_rows, lda}, rng), B = Tensor::randn({b_rows, ldb}, rng);
      Tensor C0 = Tensor::randn({M, ldc}, rng);
      Tensor fast = C0.clone(), slow = C0.clone();
      gemm(ta, tb, M, N, K, 0.7f, A.data(), lda, B.data(), ldb, 0.3f, fast.data(), ldc);
      gemm_reference(ta, tb, M, N, K, 0.7f, A.data(), lda, B.data(), ldb, 0.3f, slow.data(), ldc);
      CHECK(testing::max_abs_diff(fast, slow) < 1e-4f);
      // The padding columns of C (beyond N) are untouched by both.
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = N; j < ldc; ++j) CHECK(fast.at({i, j}) == C0.at({i, j}));
    }
  // beta = 0 ignores whatever C held, even NaN.
  Tensor C = Tensor::full({2, 2}, std::nanf(""));
  Tensor I = Tensor::from({2, 2}, {1, 0, 0, 1}), X = Tensor::from({2, 2}, {1, 2, 3, 4});
  gemm(false, false, 2, 2, 2, 1.0f, I.data(), 2, X.data(), 2, 0.0f, C.data(), 2);
  CHECK(C.to_vector() == std::vector<float>{1, 2, 3, 4});
  // K = 0: an empty sum, so C = beta C.
  gemm(false, false, 2, 2, 0, 1.0f, I.data(), 1, X.data(), 2, 0.5f, C.data(), 2);
  CHECK(C.to_vector() == std::vector<float>{0.5f, 1, 1.5f, 2});
}

TEST_CASE("matmul: hand-computed 2-D and batched products") {
  Tensor a = Tensor::from({2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor b = Tensor::from({3, 2}, {7, 8, 9, 10, 11, 12});
  CHECK(matmul(a, b).to_vector() == std::vector<float>{58, 64, 139, 154});
  Tensor ab = Tensor::from({2, 1, 2}, {1, 2, 3, 4});
  Tensor bb = Tensor::from({2, 2, 1}, {5, 6, 7, 8});
  Tensor c = matmul(ab, bb);
  CHECK(c.shape() == Shape{2, 1, 1});
  CHECK(c.to_vector() == std::vector<float>{17, 53});
  // linear: y = x w^T + b
  Tensor x = Tensor::from({1, 2}, {1, 2});
  Tensor w = Tensor::from({3, 2}, {1, 0, 0, 1, 1, 1});
  CHECK(linear(x, w, Tensor::from({3}, {10, 20, 30})).to_vector() == std::vector<float>{11, 22, 33});
  CHECK(linear(x, w).to_vector() == std::vector<float>{1, 2, 3});
}

TEST_CASE("matmul: gradient checks (2-D, batched, linear with and without bias)") {
  Rng rng(5);
  Tensor a = Tensor::randn({3, 7}, rng).set_requires_grad();
  Tensor b = Tensor::randn({7, 5}, rng).set_requires_grad();
  CHECK_GRADIENTS([](V t) { return matmul(t[0], t[1]); }, {a, b});
  Tensor ba = Tensor::randn({5, 3, 4}, rng).set_requires_grad();  // batch >= 2 threads: the per-thread path
  Tensor bb = Tensor::randn({5, 4, 2}, rng).set_requires_grad();
  CHECK_GRADIENTS([](V t) { return matmul(t[0], t[1]); }, {ba, bb});
  // Only one side requiring grad: the other side's value must still be kept.
  Tensor frozen = Tensor::randn({7, 5}, rng);
  CHECK_GRADIENTS([](V t) { return matmul(t[0], t[1]); }, {a, frozen});
  Tensor x = Tensor::randn({6, 5}, rng).set_requires_grad();
  Tensor w = Tensor::randn({3, 5}, rng).set_requires_grad();
  Tensor bias = Tensor::randn({3}, rng).set_requires_grad();
  CHECK_GRADIENTS([](V t) { return linear(t[0], t[1], t[2]); }, {x, w, bias});
  CHECK_GRADIENTS([](V t) { return linear(t[0], t[1]); }, {x, w});
}

TEST_CASE("matmul: gradients accumulate across uses (fan-out)") {
  Tensor a = Tensor::from({1, 1}, {3}).set_requires_grad();
  Tensor b = Tensor::from({1, 1}, {4});
  Tensor y = matmul(a, b);
  Tensor z = matmul(a, b);
  y.backward();
  z.backward();
  CHECK(a.grad().item() == 8.0f);
}

TEST_CASE("matmul: bad shapes name the op and the shapes") {
  CHECK_THROWS_NAMING(matmul(Tensor({2, 3}), Tensor({4, 2})), "matmul", "[2, 3]", "[4, 2]");
  CHECK_THROWS_NAMING(matmul(Tensor({2, 3}), Tensor({3})), "matmul", "[2, 3]", "[3]");
  CHECK_THROWS_NAMING(matmul(Tensor({2, 2, 3}), Tensor({3, 3, 2})), "matmul", "batch", "[2, 2, 3]", "[3, 3, 2]");
  CHECK_THROWS_NAMING(linear(Tensor({4, 5}), Tensor({3, 6})), "linear", "[4, 5]", "[3, 6]");
  CHECK_THROWS_NAMING(linear(Tensor({4, 5}), Tensor({3, 5}), Tensor({4})), "linear", "bias", "[4]");
  CHECK_THROWS_NAMING(linear(Tensor({5}), Tensor({3, 5})), "linear", "[5]");
}
