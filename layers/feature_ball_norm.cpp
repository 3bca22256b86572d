// Per-pixel norms over the channel axis. Layout [N, D, P] (P = pixels, contiguous), work split into tasks of
// (sample n, a block of pixels): each task reduces over d for its own pixels, so every output element and every
// entry of the per-pixel scale belongs to exactly one task; the radius gradient is an OpenMP sum reduction.
#include "layers/feature_ball_norm.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <sstream>

#include "engine/autograd.h"
#include "engine/parallel.h"

namespace eq {

namespace {

constexpr int64_t kPixelBlock = 512;

struct BallGeometry {
  int64_t N, D, P;
  int64_t blocks() const { return (P + kPixelBlock - 1) / kPixelBlock; }
};

}  // namespace

Tensor feature_ball_norm(const Tensor& x, const Tensor& radius, float eps) {
  check(x.dim() >= 2, "feature_ball_norm: expected x [N, D, ...] (rank >= 2), got ", x.shape());
  check(radius.numel() == 1, "feature_ball_norm: radius must have one element, got ", radius.shape(), " (x ",
        x.shape(), ")");
  check(eps > 0, "feature_ball_norm: eps must be > 0, got ", eps);
  int64_t pixels = 1;
  for (int axis = 2; axis < x.dim(); ++axis) pixels *= x.size(axis);
  const BallGeometry g{x.size(0), x.size(1), pixels};
  const float r = radius.data()[0];
  // 1 / max(||x||, eps) per (n, pixel): all the backward needs besides x and r.
  auto inv_scale = std::make_shared<std::vector<float>>(static_cast<size_t>(g.N * g.P));
  Tensor y(x.shape());
  const float* px = x.data();
  float* py = y.data();
  float* pinv = inv_scale->data();
  const int64_t tasks = g.N * g.blocks();
#pragma omp parallel for if (x.numel() > kParallelGrain)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t n = t / g.blocks(), p0 = (t % g.blocks()) * kPixelBlock, p1 = std::min(g.P, p0 + kPixelBlock);
    float* inv = pinv + n * g.P;
    std::fill(inv + p0, inv + p1, 0.0f);
    for (int64_t d = 0; d < g.D; ++d) {
      const float* xr = px + (n * g.D + d) * g.P;
      for (int64_t p = p0; p < p1; ++p) inv[p] += xr[p] * xr[p];
    }
    for (int64_t p = p0; p < p1; ++p) inv[p] = 1.0f / std::max(std::sqrt(inv[p]), eps);
    for (int64_t d = 0; d < g.D; ++d) {
      const float* xr = px + (n * g.D + d) * g.P;
      float* yr = py + (n * g.D + d) * g.P;
      for (int64_t p = p0; p < p1; ++p) yr[p] = r * xr[p] * inv[p];
    }
  }
  if (!any_requires_grad({&x, &radius})) return y;

  record(y, "feature_ball_norm", {x, radius},
         [xs = x.impl()->data, inv_scale, g, r, eps, tasks](const float* grad, const std::vector<float*>& gin) {
           const float* px = xs->data();
           const float* pinv = inv_scale->data();
           float *gx = gin[0], *gr = gin[1];
           double radius_grad = 0;
#pragma omp parallel for reduction(+ : radius_grad) if (g.N * g.D * g.P > kParallelGrain)
           for (int64_t t = 0; t < tasks; ++t) {
             const int64_t n = t / g.blocks(), p0 = (t % g.blocks()) * kPixelBlock;
             const int64_t p1 = std::min(g.P, p0 + kPixelBlock);
             float dot[kPixelBlock];  // <x, g> per pixel of this block
             std::fill(dot, dot + (p1 - p0), 0.0f);
             for (int64_t d = 0; d < g.D; ++d) {
               const float *xr = px + (n * g.D + d) * g.P, *gout = grad + (n * g.D + d) * g.P;
               for (int64_t p = p0; p < p1; ++p) dot[p - p0] += xr[p] * gout[p];
             }
             const float* inv = pinv + n * g.P;
             for (int64_t p = p0; p < p1; ++p) radius_grad += double(dot[p - p0]) * inv[p];
             if (!gx) continue;
             // Clamped pixels (||x|| <= eps: the forward stored exactly 1/eps) are linear: no projection term.
             const float clamped_inv = 1.0f / eps;
             for (int64_t p = p0; p < p1; ++p)
               dot[p - p0] = inv[p] >= clamped_inv ? 0.0f : dot[p - p0] * inv[p] * inv[p];
             for (int64_t d = 0; d < g.D; ++d) {
               const float *xr = px + (n * g.D + d) * g.P, *gout = grad + (n * g.D + d) * g.P;
               float* gxr = gx + (n * g.D + d) * g.P;
               for (int64_t p = p0; p < p1; ++p) gxr[p] += r * inv[p] * (gout[p] - xr[p] * dot[p - p0]);
             }
           }
           if (gr) gr[0] += static_cast<float>(radius_grad);
         });
  return y;
}

FeatureBallNorm::FeatureBallNorm(float radius_init, bool trainable, float eps) : trainable_(trainable), eps_(eps) {
  check(eps > 0, "FeatureBallNorm: eps must be > 0, got ", eps);
  Tensor r = Tensor::full({1}, radius_init);
  radius = trainable ? register_parameter("radius", r) : register_buffer("radius", r);
}

std::string FeatureBallNorm::name() const {
  std::ostringstream os;
  os << "FeatureBallNorm(radius=" << radius.data()[0] << (trainable_ ? ", trainable" : ", fixed") << ")";
  return os.str();
}

}  // namespace eq
