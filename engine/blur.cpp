#include "engine/blur.h"

#include <cmath>

#include "engine/resize.h"

namespace eq {

// Keeps ceil(3 sigma) and the kernel length far from int overflow; far beyond any image size in use.
constexpr int kMaxSigma = 1 << 20;

int gaussian_radius(float sigma) {
  check(std::isfinite(sigma) && sigma >= 0 && sigma <= kMaxSigma, "gaussian_radius: sigma must be in [0, ", kMaxSigma,
        "], got ", sigma);
  return static_cast<int>(std::ceil(3.0f * sigma));
}

std::vector<float> gaussian_kernel1d(float sigma, int radius) {
  check(std::isfinite(sigma) && sigma >= 0, "gaussian_kernel1d: sigma must be >= 0 and finite, got ", sigma);
  check(sigma <= kMaxSigma, "gaussian_kernel1d: sigma ", sigma, " is too large (at most ", kMaxSigma, ")");
  if (radius < 0) radius = gaussian_radius(sigma);
  check(radius <= 3 * kMaxSigma, "gaussian_kernel1d: radius ", radius, " is too large (at most ", 3 * kMaxSigma, ")");
  std::vector<float> k(static_cast<size_t>(2 * radius + 1), 0.0f);
  if (sigma == 0) {
    k[radius] = 1;
    return k;
  }
  double total = 0;
  std::vector<double> w(k.size());
  for (int i = -radius; i <= radius; ++i) total += w[i + radius] = std::exp(-0.5 * i * i / (double(sigma) * sigma));
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<float>(w[i] / total);
  return k;
}

namespace {

// Index in [0, n) that padded position p (any integer) reads, or -1 for a zero.
int64_t padded_source(int64_t p, int64_t n, PadMode pad) {
  if (p >= 0 && p < n) return p;
  switch (pad) {
    case PadMode::Zeros: return -1;
    case PadMode::Replicate: return p < 0 ? 0 : n - 1;
    case PadMode::Circular: return ((p % n) + n) % n;
    case PadMode::Reflect: {
      if (n == 1) return 0;
      const int64_t period = 2 * (n - 1);  // mirror without repeating the edge: 0 1 .. n-1 n-2 .. 1 | 0 1 ..
      const int64_t m = ((p % period) + period) % period;
      return m < n ? m : period - m;
    }
  }
  return -1;
}

// The blur along one axis of size n as a sparse map: out[o] = sum_k kernel[k] x[source(o + k - radius)].
AxisTaps blur_taps(int64_t n, const std::vector<float>& kernel, PadMode pad) {
  const int64_t radius = static_cast<int64_t>(kernel.size() / 2);
  AxisTaps taps;
  taps.in_size = n;
  for (int64_t o = 0; o < n; ++o) {
    for (int64_t k = -radius; k <= radius; ++k) {
      const int64_t src = padded_source(o + k, n, pad);
      if (src >= 0 && kernel[k + radius] != 0) taps.add(src, kernel[k + radius]);
    }
    taps.end_row();
  }
  return taps;
}

}  // namespace

Tensor gaussian_blur(const Tensor& x, float sigma, int radius, PadMode pad) {
  check(x.dim() >= 2, "gaussian_blur: input must have at least 2 axes [..., H, W], got ", x.shape());
  check(std::isfinite(sigma) && sigma >= 0 && sigma <= kMaxSigma, "gaussian_blur: sigma must be in [0, ", kMaxSigma,
        "], got ", sigma, " (input ", x.shape(), ")");
  check(radius >= -1, "gaussian_blur: radius must be >= 0 (or -1 for ceil(3 sigma)), got ", radius, " (input ",
        x.shape(), ")");
  const std::vector<float> kernel = gaussian_kernel1d(sigma, radius);
  return apply_separable(x, blur_taps(x.size(-2), kernel, pad), blur_taps(x.size(-1), kernel, pad), "gaussian_blur");
}

}  // namespace eq
