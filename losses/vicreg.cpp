// equilab — VICReg and SIE losses (see vicreg.h), composed of differentiable engine ops.
#include "losses/vicreg.h"

#include "engine/elementwise.h"
#include "engine/error.h"
#include "engine/matmul.h"
#include "engine/reduce.h"
#include "engine/shape_ops.h"
#include "losses/mse.h"

namespace eq {

namespace {

constexpr float kVarianceEps = 1e-4f;  // the reference's sqrt(var + 0.0001): keeps d sqrt / d var finite at 0

void check_embeddings(const Tensor& z, const char* op) {
  check(z.defined(), op, ": undefined embeddings");
  if (z.dim() != 2 || z.size(0) < 2 || z.size(1) < 1)
    fail(op, ": expects embeddings [N, D] with N >= 2 rows (a variance needs two samples), got ", z.shape());
}

// z - its batch mean, [N, D].
Tensor centered(const Tensor& z) { return z - mean(z, {0}, /*keepdim=*/true); }

}  // namespace

Tensor variance_hinge(const Tensor& z) {
  check_embeddings(z, "variance_hinge");
  const float n = static_cast<float>(z.size(0));
  Tensor var = sum(square(centered(z)), {0}) / (n - 1);  // [D], unbiased as torch.var
  return mean(relu(1.0f + neg(sqrt(var + kVarianceEps))));
}

Tensor covariance_penalty(const Tensor& z) {
  check_embeddings(z, "covariance_penalty");
  const int64_t n = z.size(0), d = z.size(1);
  Tensor zc = centered(z);
  Tensor cov = matmul(transpose(zc, 0, 1), zc) / static_cast<float>(n - 1);  // [D, D]
  // Zero the diagonal with a constant mask rather than subtracting the squared variances: exact, and the
  // gradient of the diagonal is then exactly 0.
  Tensor off_diagonal_mask = Tensor::ones({d, d});
  for (int64_t i = 0; i < d; ++i) off_diagonal_mask.data()[i * d + i] = 0;
  return sum(square(cov * off_diagonal_mask)) / static_cast<float>(d);
}

Tensor invariance_loss(const Tensor& a, const Tensor& b) {
  check(a.defined() && b.defined(), "invariance_loss: undefined embeddings");
  if (a.shape() != b.shape()) fail("invariance_loss: embeddings ", a.shape(), " and ", b.shape(), " differ");
  return mse_loss(a, b);
}

VicregTerms vicreg_loss(const Tensor& z1, const Tensor& z2, const VicregWeights& w) {
  check_embeddings(z1, "vicreg_loss");
  if (z1.shape() != z2.shape()) fail("vicreg_loss: the two views' embeddings ", z1.shape(), " and ", z2.shape(),
                                     " differ");
  VicregTerms t;
  t.invariance = invariance_loss(z1, z2);
  t.variance = (variance_hinge(z1) + variance_hinge(z2)) * 0.5f;
  t.covariance = covariance_penalty(z1) + covariance_penalty(z2);
  t.loss = t.invariance * w.invariance + t.variance * w.variance + t.covariance * w.covariance;
  return t;
}

SieTerms sie_loss(const Tensor& inv1, const Tensor& inv2, const Tensor& equi1, const Tensor& equi2,
                  const Tensor& pred2, const SieWeights& w) {
  check(equi1.defined() && equi2.defined() && pred2.defined(), "sie_loss: undefined equivariant embeddings");
  check_embeddings(equi1, "sie_loss");
  if (equi2.shape() != equi1.shape() || pred2.shape() != equi1.shape())
    fail("sie_loss: equivariant embeddings of view 1 ", equi1.shape(), ", view 2 ", equi2.shape(),
         " and prediction ", pred2.shape(), " must have one shape");
  const bool split = inv1.defined() || inv2.defined();
  SieTerms t;
  Tensor x = equi1, y = equi2;
  if (split) {
    check(inv1.defined() && inv2.defined(), "sie_loss: only one view has an invariant part");
    if (inv1.dim() != 2 || inv1.shape() != inv2.shape() || inv1.size(0) != equi1.size(0))
      fail("sie_loss: invariant embeddings ", inv1.shape(), " and ", inv2.shape(), " must be [N, Di] with N = ",
           equi1.size(0), " (equivariant ", equi1.shape(), ")");
    t.invariance = invariance_loss(inv1, inv2);
    x = concat({inv1, equi1}, 1);
    y = concat({inv2, equi2}, 1);
  } else {
    t.invariance = Tensor::scalar(0);
  }
  t.equivariance = mse_loss(pred2, equi2);
  t.variance = (variance_hinge(x) + variance_hinge(y)) * 0.5f;
  t.prediction_variance = w.prediction_variance ? variance_hinge(pred2) * 0.5f : Tensor::scalar(0);
  t.covariance = covariance_penalty(x) + covariance_penalty(y);
  t.loss = t.invariance * w.invariance + t.equivariance * (w.equi_factor * w.invariance) +
           (t.variance + t.prediction_variance) * w.variance + t.covariance * w.covariance;
  return t;
}

}  // namespace eq
