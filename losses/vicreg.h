// equilab — VICReg (Bardes et al., ICLR 2022) and the SIE loss (Garrido et al., ICML 2023): REFERENCES.md section 7.
//
// All terms act on embeddings z [N, D] (a batch of N >= 2 rows) and are composed of differentiable engine ops
// (mean, sum, sqrt, relu, matmul), so gradients need no hand-written backward. With zc = z - mean over the batch:
//   variance_hinge(z)     = mean_d relu(1 - sqrt(var_d + 1e-4)),  var_d = sum_n zc[n, d]^2 / (N - 1)   (unbiased,
//                           as torch.var): 1 when every row is the same vector (collapse), 0 once every std >= ~1.
//   covariance_penalty(z) = sum_{i != j} C_ij^2 / D,  C = zc^T zc / (N - 1): pushes the dimensions to decorrelate.
//   invariance_loss(a, b) = mean (a - b)^2 (MSE over every element).
// VICReg on two views: w_inv * MSE(z1, z2) + w_var * (vh(z1) + vh(z2)) / 2 + w_cov * (cp(z1) + cp(z2)), with the
// reference weights 25 / 25 / 1.
//
// SIE (the reference's "SIE" model; its "SIENoVar" when prediction_variance is off). The embeddings of view 1 and
// view 2 come in an invariant part (inv1, inv2 [N, Di]) and an equivariant part (equi1, equi2 [N, De]); pred2 is
// the predictor's guess of equi2 from equi1 and the relative group element. With x = [inv1, equi1] and
// y = [inv2, equi2] (concatenated along the features, so that the covariance also decorrelates the invariant
// part from the equivariant one):
//   loss = w_inv MSE(inv1, inv2) + equi_factor w_inv MSE(pred2, equi2) + w_var (vh(x) + vh(y)) / 2
//          + w_var vh(pred2) / 2 + w_cov (cp(x) + cp(y))
// with weights 10 / 10 / 1 and equi_factor 0.45 (the reference README command). Without an invariant part (inv1,
// inv2 undefined: the reference's "SIEOnlyEqui", the hypernetwork predictor without the split) x = equi1,
// y = equi2 and the invariance term is 0; the reference then weighs the prediction by w_inv alone (equi_factor 1).
#pragma once
#include "engine/tensor.h"

namespace eq {

// Each needs z [N, D] with N >= 2 (a variance needs two samples); errors name the function and the shape.
Tensor variance_hinge(const Tensor& z);
Tensor covariance_penalty(const Tensor& z);
Tensor invariance_loss(const Tensor& a, const Tensor& b);  // same shapes

struct VicregWeights {
  float invariance = 25, variance = 25, covariance = 1;
};

// The weighted total and its unweighted terms (each a differentiable scalar; backward from `loss`).
struct VicregTerms {
  Tensor loss, invariance, variance, covariance;
};

// z1, z2 [N, D]: the embeddings of the two views of N objects.
VicregTerms vicreg_loss(const Tensor& z1, const Tensor& z2, const VicregWeights& weights = {});

struct SieWeights {
  float invariance = 10, variance = 10, covariance = 1;
  float equi_factor = 0.45f;        // weight of the prediction term relative to `invariance`
  bool prediction_variance = true;  // the variance hinge on pred2 (off: the collapse-prone ablation)
};

// Unweighted terms; `variance` = (vh(x) + vh(y)) / 2, `prediction_variance` = vh(pred2) / 2 (0 when off).
struct SieTerms {
  Tensor loss, invariance, equivariance, variance, prediction_variance, covariance;
};

// inv1, inv2 [N, Di] (both undefined without the split), equi1, equi2, pred2 [N, De].
SieTerms sie_loss(const Tensor& inv1, const Tensor& inv2, const Tensor& equi1, const Tensor& equi2,
                  const Tensor& pred2, const SieWeights& weights = {});

}  // namespace eq
