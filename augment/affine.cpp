#include "augment/affine.h"

#include <cmath>

#include "engine/shape_ops.h"

namespace eq {

Tensor identity_theta(int64_t n) {
  check(n >= 0, "identity_theta: negative batch size ", n);
  Tensor theta = Tensor::zeros({n, 2, 3});
  for (int64_t s = 0; s < n; ++s) theta.data()[s * 6 + 0] = theta.data()[s * 6 + 4] = 1.0f;
  return theta;
}

namespace {

void check_theta(const Tensor& theta, const char* op) {
  check(theta.defined() && theta.dim() == 3 && theta.size(1) == 2 && theta.size(2) == 3, op,
        ": theta must be [N, 2, 3], got ", theta.defined() ? theta.shape() : Shape{});
}

}  // namespace

Tensor invert_affine(const Tensor& theta) {
  check_theta(theta, "invert_affine");
  const int64_t n = theta.size(0);
  Tensor inv({n, 2, 3});
  for (int64_t s = 0; s < n; ++s) {
    // [A | t]^-1 = [A^-1 | -A^-1 t], in double so that a near-identity map inverts to float precision.
    const float* m = theta.data() + s * 6;
    const double a = m[0], b = m[1], t0 = m[2], c = m[3], d = m[4], t1 = m[5];
    const double det = a * d - b * c;
    check(std::fabs(det) >= 1e-12, "invert_affine: sample ", s, " has a singular 2x2 part (det ", det,
          ", theta ", theta.shape(), ")");
    const double ia = d / det, ib = -b / det, ic = -c / det, id = a / det;
    float* o = inv.data() + s * 6;
    o[0] = static_cast<float>(ia), o[1] = static_cast<float>(ib), o[2] = static_cast<float>(-(ia * t0 + ib * t1));
    o[3] = static_cast<float>(ic), o[4] = static_cast<float>(id), o[5] = static_cast<float>(-(ic * t0 + id * t1));
  }
  return inv;
}

Tensor warp_affine(const Tensor& x, const Tensor& theta, const GridSampleOptions& opt) {
  check(x.defined() && x.dim() >= 3, "warp_affine: input must be [N, ..., H, W] with rank >= 3, got ",
        x.defined() ? x.shape() : Shape{});
  check_theta(theta, "warp_affine");
  check(theta.size(0) == x.size(0), "warp_affine: theta ", theta.shape(), " has ", theta.size(0),
        " transforms for a batch of ", x.size(0), " (input ", x.shape(), ")");
  const int64_t n = x.size(0), h = x.size(-2), w = x.size(-1);
  // grid_sample takes [N, C, H, W]: the middle axes (channels, rotations, scales) warp alike, so merge them.
  const Tensor planes = reshape(x, {n, -1, h, w});
  const Tensor warped = grid_sample(planes, affine_grid(theta, n, h, w, opt.align_corners), opt);
  return reshape(warped, x.shape());
}

AffineWarp random_affine(int64_t n, Rng& rng, float sigma, float inverse_probability) {
  check(n >= 0 && sigma >= 0 && std::isfinite(sigma) && inverse_probability >= 0 && inverse_probability <= 1,
        "random_affine: need n >= 0, finite sigma >= 0 and inverse_probability in [0, 1], got n = ", n,
        ", sigma = ", sigma, ", inverse_probability = ", inverse_probability);
  Tensor theta = identity_theta(n);
  for (int64_t i = 0; i < n * 6; ++i) theta.data()[i] += sigma * rng.normal();
  Tensor inverse = invert_affine(theta);
  // With probability p the sample's forward map is the drawn map's inverse (and its inverse the drawn map).
  for (int64_t s = 0; s < n; ++s) {
    if (!rng.bernoulli(inverse_probability)) continue;
    for (int k = 0; k < 6; ++k) std::swap(theta.data()[s * 6 + k], inverse.data()[s * 6 + k]);
  }
  return {theta, inverse};
}

}  // namespace eq
