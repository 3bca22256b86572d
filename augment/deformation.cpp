#include "augment/deformation.h"

#include <algorithm>
#include <cmath>

#include "augment/affine.h"
#include "engine/autograd.h"
#include "engine/blur.h"
#include "engine/elementwise.h"
#include "engine/shape_ops.h"

namespace eq {

namespace {

void check_field(const Tensor& tau, const char* op) {
  check(tau.defined() && tau.dim() == 4 && tau.size(3) == 2, op, ": displacement field must be [N, H, W, 2], got ",
        tau.defined() ? tau.shape() : Shape{});
}

}  // namespace

std::vector<float> displacement_gradient_norm(const Tensor& tau) {
  check_field(tau, "displacement_gradient_norm");
  const int64_t n = tau.size(0), h = tau.size(1), w = tau.size(2);
  const float* t = tau.data();
  auto at = [&](int64_t s, int64_t i, int64_t j, int c) {
    return static_cast<double>(t[((s * h + i) * w + j) * 2 + c]);
  };
  // d/d(axis) by central differences, one-sided at the ends, 0 on a size-1 axis.
  auto diff = [](auto value, int64_t k, int64_t size) {
    if (size == 1) return 0.0;
    if (k == 0) return value(1) - value(0);
    if (k == size - 1) return value(size - 1) - value(size - 2);
    return 0.5 * (value(k + 1) - value(k - 1));
  };
  std::vector<float> norms(static_cast<size_t>(n), 0.0f);
  for (int64_t s = 0; s < n; ++s) {
    double worst = 0;
    for (int64_t i = 0; i < h; ++i)
      for (int64_t j = 0; j < w; ++j) {
        double frob = 0;
        for (int c = 0; c < 2; ++c) {
          const double along_x = diff([&](int64_t jj) { return at(s, i, jj, c); }, j, w);
          const double along_y = diff([&](int64_t ii) { return at(s, ii, j, c); }, i, h);
          frob += along_x * along_x + along_y * along_y;
        }
        worst = std::max(worst, frob);
      }
    norms[static_cast<size_t>(s)] = static_cast<float>(std::sqrt(worst));
  }
  return norms;
}

Tensor smooth_random_field(int64_t n, int64_t h, int64_t w, float smoothness, float max_gradient_norm, Rng& rng) {
  check(n >= 0 && h > 0 && w > 0 && smoothness >= 0 && std::isfinite(smoothness) && max_gradient_norm >= 0 &&
            std::isfinite(max_gradient_norm),
        "smooth_random_field: need n >= 0, h, w > 0, finite smoothness >= 0 and max_gradient_norm >= 0, got n = ", n,
        ", ", h, "x", w, ", smoothness ", smoothness, ", max_gradient_norm ", max_gradient_norm);
  NoGrad no_grad;
  const Tensor noise = gaussian_blur(Tensor::randn({n, 2, h, w}, rng), smoothness, -1, PadMode::Reflect);
  Tensor tau = permute(noise, {0, 2, 3, 1});  // [N, H, W, 2]
  const std::vector<float> norms = displacement_gradient_norm(tau);
  const int64_t per_sample = h * w * 2;
  for (int64_t s = 0; s < n; ++s) {
    const float g = norms[static_cast<size_t>(s)];
    const float scale = g > 0 ? max_gradient_norm / g : 0.0f;
    float* p = tau.data() + s * per_sample;
    for (int64_t i = 0; i < per_sample; ++i) p[i] *= scale;
  }
  return tau;
}

Tensor deform(const Tensor& x, const Tensor& tau, const GridSampleOptions& opt) {
  check(x.defined() && x.dim() >= 3, "deform: input must be [N, ..., H, W] with rank >= 3, got ",
        x.defined() ? x.shape() : Shape{});
  check_field(tau, "deform");
  const int64_t n = x.size(0), h = x.size(-2), w = x.size(-1);
  check(tau.size(0) == n && tau.size(1) == h && tau.size(2) == w, "deform: field ", tau.shape(),
        " does not match input ", x.shape(), " (expected [", n, ", ", h, ", ", w, ", 2])");
  check(!opt.align_corners, "deform: align_corners must be false (input ", x.shape(), ")");
  // Sample at p - tau(p): a pixel is 2 / size wide in normalised coordinates.
  const Tensor to_normalised = Tensor::from({2}, {-2.0f / static_cast<float>(w), -2.0f / static_cast<float>(h)});
  const Tensor grid = affine_grid(identity_theta(n), n, h, w, false) + tau * to_normalised;
  const Tensor planes = reshape(x, {n, -1, h, w});
  return reshape(grid_sample(planes, grid, opt), x.shape());
}

}  // namespace eq
