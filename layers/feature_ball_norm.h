// equilab — FeatureBallNorm: put every pixel's feature vector on a sphere of trainable radius (FMICON,
// REFERENCES.md section 6).
//
//   y[n, :, h, w] = r * x[n, :, h, w] / max(||x[n, :, h, w]||_2, eps)        x [N, D, H, W] (or any [N, D, ...])
//
// Dot products of such features are cosine similarities times r^2, so r acts as a learnt inverse temperature for
// a softmax over similarities (init 12, as in the reference code). eps keeps all-zero vectors finite: below it the
// map is the linear r * x / eps.
#pragma once
#include "layers/module.h"

namespace eq {

// The fused op: x [N, D, ...] (rank >= 2, channel axis 1), radius a one-element tensor. Differentiable in x and
// radius: with s = ||x|| > eps and u = x / s, dx = r / s * (g - u <u, g>) and dr = sum <g, u>.
Tensor feature_ball_norm(const Tensor& x, const Tensor& radius, float eps = 1e-6f);

class FeatureBallNorm : public Module {
 public:
  explicit FeatureBallNorm(float radius_init = 12.0f, bool trainable = true, float eps = 1e-6f);
  Tensor forward(const Tensor& x) override { return feature_ball_norm(x, radius, eps_); }
  std::string name() const override;
  Tensor radius;  // shape [1]; a parameter when trainable, else a buffer (saved, not trained)

 private:
  bool trainable_;
  float eps_;
};

}  // namespace eq
