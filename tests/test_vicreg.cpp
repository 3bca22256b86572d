// VICReg and SIE losses (losses/vicreg.h): hand-computed values of each term, the collapse case, that the SIE
// loss weighs its terms as the reference and decorrelates the invariant from the equivariant part, gradient checks
// of every term, and errors naming the shapes at fault.
#include <doctest/doctest.h>

#include <cmath>

#include "engine/elementwise.h"
#include "engine/rng.h"
#include "engine/shape_ops.h"
#include "losses/mse.h"
#include "losses/vicreg.h"
#include "tests/gradcheck.h"
#include "tests/test_helpers.h"

using namespace eq;
using V = const std::vector<Tensor>&;

TEST_CASE("vicreg: variance hinge by hand (unbiased variance, sqrt(var + 1e-4))") {
  // Column 0: 0, 2 -> var (1 + 1) / 1 = 2, std 1.414 > 1 -> 0. Column 1: 0, 0.5 -> var 0.125, std 0.3537.
  Tensor z = Tensor::from({2, 2}, {0, 0, 2, 0.5f});
  const double expected = (0 + (1 - std::sqrt(0.125 + 1e-4))) / 2;
  CHECK(variance_hinge(z).item() == doctest::Approx(expected).epsilon(1e-6));
}

TEST_CASE("vicreg: covariance penalty and invariance by hand") {
  // Centred columns (-1, 0, 1) and (0, 2, -2): C_01 = (0 + 0 - 2) / 2 = -1; two off-diagonal entries, D = 2.
  Tensor z = Tensor::from({3, 2}, {1, 2, 2, 4, 3, 0});
  CHECK(covariance_penalty(z).item() == doctest::Approx((1.0 + 1.0) / 2));
  // Uncorrelated columns: no penalty, however large the variances.
  Tensor u = Tensor::from({4, 2}, {1, 5, -1, 5, 1, -5, -1, -5});
  CHECK(covariance_penalty(u).item() == doctest::Approx(0.0));
  Tensor a = Tensor::from({2, 2}, {1, 2, 3, 4}), b = Tensor::from({2, 2}, {1, 0, 3, 5});
  CHECK(invariance_loss(a, b).item() == doctest::Approx((4.0 + 1.0) / 4));
}

TEST_CASE("vicreg: collapse to one constant vector gives variance term 1 - sqrt(1e-4), no covariance, no invariance") {
  Tensor z = Tensor::full({8, 5}, 0.7f);
  CHECK(variance_hinge(z).item() == doctest::Approx(1 - 0.01).epsilon(1e-6));
  VicregTerms t = vicreg_loss(z, z);
  CHECK(t.invariance.item() == 0.0f);
  CHECK(t.covariance.item() == doctest::Approx(0.0));
  CHECK(t.variance.item() == doctest::Approx(0.99).epsilon(1e-6));
  CHECK(t.loss.item() == doctest::Approx(25 * 0.99).epsilon(1e-6));
  // A spread-out batch costs less: the variance term is what keeps VICReg from collapsing.
  Rng rng(1);
  Tensor spread = Tensor::randn({8, 5}, rng, 0, 2);
  CHECK(vicreg_loss(spread, spread).variance.item() < 0.2f);
}

TEST_CASE("vicreg: vicreg_loss = 25 invariance + 25 mean of the two variance terms + 1 sum of the covariances") {
  Rng rng(2);
  Tensor z1 = Tensor::randn({6, 4}, rng, 0, 0.7f), z2 = Tensor::randn({6, 4}, rng, 0, 0.7f);
  VicregTerms t = vicreg_loss(z1, z2);
  CHECK(t.invariance.item() == doctest::Approx(mse_loss(z1, z2).item()));
  CHECK(t.variance.item() == doctest::Approx((variance_hinge(z1).item() + variance_hinge(z2).item()) / 2));
  CHECK(t.covariance.item() == doctest::Approx(covariance_penalty(z1).item() + covariance_penalty(z2).item()));
  CHECK(t.loss.item() ==
        doctest::Approx(25 * t.invariance.item() + 25 * t.variance.item() + t.covariance.item()).epsilon(1e-5));
  VicregTerms w = vicreg_loss(z1, z2, VicregWeights{1, 0, 0});
  CHECK(w.loss.item() == doctest::Approx(t.invariance.item()));
}

TEST_CASE("vicreg: gradient checks of every term") {
  Rng rng(3);
  // Standard deviations around 0.5: inside the hinge (away from its kink at std 1).
  Tensor z = Tensor::randn({6, 4}, rng, 0, 0.5f).set_requires_grad();
  Tensor z2 = Tensor::randn({6, 4}, rng, 0, 0.5f).set_requires_grad();
  CHECK_GRADIENTS([](V in) { return variance_hinge(in[0]); }, {z});
  CHECK_GRADIENTS([](V in) { return covariance_penalty(in[0]); }, {z});
  CHECK_GRADIENTS([](V in) { return invariance_loss(in[0], in[1]); }, {z, z2});
  CHECK_GRADIENTS([](V in) { return vicreg_loss(in[0], in[1]).loss; }, {z, z2});
  // Some columns beyond the hinge (std > 1): their variance gradient is 0, the rest still flow.
  Tensor mixed = Tensor::randn({7, 3}, rng, 0, 1).set_requires_grad();
  for (int64_t n = 0; n < 7; ++n) mixed.data()[n * 3] *= 4;
  CHECK_GRADIENTS([](V in) { return variance_hinge(in[0]); }, {mixed});
}

TEST_CASE("sie_loss: weights of the reference and the prediction-variance switch") {
  Rng rng(4);
  Tensor i1 = Tensor::randn({6, 3}, rng, 0, 0.6f), i2 = Tensor::randn({6, 3}, rng, 0, 0.6f);
  Tensor e1 = Tensor::randn({6, 4}, rng, 0, 0.6f), e2 = Tensor::randn({6, 4}, rng, 0, 0.6f);
  Tensor p = Tensor::randn({6, 4}, rng, 0, 0.3f);
  SieTerms t = sie_loss(i1, i2, e1, e2, p);
  Tensor x = concat({i1, e1}, 1), y = concat({i2, e2}, 1);
  CHECK(t.invariance.item() == doctest::Approx(mse_loss(i1, i2).item()));
  CHECK(t.equivariance.item() == doctest::Approx(mse_loss(p, e2).item()));
  CHECK(t.variance.item() == doctest::Approx((variance_hinge(x).item() + variance_hinge(y).item()) / 2));
  CHECK(t.prediction_variance.item() == doctest::Approx(variance_hinge(p).item() / 2));
  CHECK(t.covariance.item() == doctest::Approx(covariance_penalty(x).item() + covariance_penalty(y).item()));
  const double expected = 10 * t.invariance.item() + 0.45 * 10 * t.equivariance.item() +
                          10 * t.variance.item() + 10 * t.prediction_variance.item() + t.covariance.item();
  CHECK(t.loss.item() == doctest::Approx(expected).epsilon(1e-5));

  SieWeights no_pred_var;
  no_pred_var.prediction_variance = false;
  SieTerms u = sie_loss(i1, i2, e1, e2, p, no_pred_var);
  CHECK(u.prediction_variance.item() == 0.0f);
  CHECK(t.loss.item() - u.loss.item() == doctest::Approx(10 * t.prediction_variance.item()).epsilon(1e-4));

  // Without the split (undefined invariant parts): no invariance term, regularisers on the equivariant part only.
  SieWeights only_equi;
  only_equi.equi_factor = 1;
  SieTerms o = sie_loss(Tensor(), Tensor(), e1, e2, p, only_equi);
  CHECK(o.invariance.item() == 0.0f);
  CHECK(o.variance.item() == doctest::Approx((variance_hinge(e1).item() + variance_hinge(e2).item()) / 2));
  CHECK(o.loss.item() == doctest::Approx(10 * o.equivariance.item() + 10 * o.variance.item() +
                                         10 * o.prediction_variance.item() + o.covariance.item())
                             .epsilon(1e-5));
}

TEST_CASE("sie_loss: the covariance also decorrelates the invariant part from the equivariant part") {
  Rng rng(5);
  Tensor i1 = Tensor::randn({8, 2}, rng), e1 = Tensor::randn({8, 2}, rng);
  // Make one equivariant column a copy of an invariant one (variance ~4): a redundancy only the concatenation sees.
  for (int64_t n = 0; n < 8; ++n) e1.data()[n * 2] = i1.data()[n * 2] *= 2;
  SieTerms t = sie_loss(i1, i1, e1, e1, e1);
  // Both views alike: t.covariance = 2 cp([i1, e1]) = 2 * (off-diagonal squares, D = 4) / 4. The blocks alone
  // hold 2 cp(i1) + 2 cp(e1) of those squares (D = 2 each); the copied column adds 2 var^2 more.
  const float within_blocks = 2 * (2 * covariance_penalty(i1).item() + 2 * covariance_penalty(e1).item()) / 4;
  CHECK(t.covariance.item() > within_blocks + 2.0f);
}

TEST_CASE("sie_loss: gradient checks with and without the split and the prediction variance") {
  Rng rng(6);
  auto r = [&](int64_t d) { return Tensor::randn({5, d}, rng, 0, 0.5f).set_requires_grad(); };
  Tensor i1 = r(3), i2 = r(3), e1 = r(2), e2 = r(2), p = r(2);
  CHECK_GRADIENTS([](V in) { return sie_loss(in[0], in[1], in[2], in[3], in[4]).loss; }, {i1, i2, e1, e2, p});
  SieWeights w;
  w.prediction_variance = false;
  w.equi_factor = 2;
  CHECK_GRADIENTS([&](V in) { return sie_loss(in[0], in[1], in[2], in[3], in[4], w).loss; }, {i1, i2, e1, e2, p});
  CHECK_GRADIENTS([](V in) { return sie_loss(Tensor(), Tensor(), in[0], in[1], in[2]).loss; }, {e1, e2, p});
}

TEST_CASE("vicreg/sie_loss: bad input names the function and the shapes") {
  CHECK_THROWS_NAMING(variance_hinge(Tensor({1, 3})), "variance_hinge", "[1, 3]");
  CHECK_THROWS_NAMING(covariance_penalty(Tensor({4})), "covariance_penalty", "[4]");
  CHECK_THROWS_NAMING(invariance_loss(Tensor({4, 2}), Tensor({4, 3})), "invariance_loss", "[4, 2]", "[4, 3]");
  CHECK_THROWS_NAMING(vicreg_loss(Tensor({4, 2}), Tensor({5, 2})), "vicreg_loss", "[4, 2]", "[5, 2]");
  CHECK_THROWS_NAMING(sie_loss(Tensor({4, 2}), Tensor({4, 2}), Tensor({4, 3}), Tensor({4, 3}), Tensor({4, 2})),
                      "sie_loss", "[4, 2]", "[4, 3]");
  CHECK_THROWS_NAMING(sie_loss(Tensor({4, 2}), Tensor(), Tensor({4, 3}), Tensor({4, 3}), Tensor({4, 3})),
                      "sie_loss", "one view");
  CHECK_THROWS_NAMING(sie_loss(Tensor({3, 2}), Tensor({3, 2}), Tensor({4, 3}), Tensor({4, 3}), Tensor({4, 3})),
                      "sie_loss", "[3, 2]", "[4, 3]");
}
