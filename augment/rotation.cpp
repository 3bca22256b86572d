#include "augment/rotation.h"

#include <cmath>

#include "augment/affine.h"
#include "engine/shape_ops.h"

namespace eq {

Tensor rotate_p4(const Tensor& y, int k) {
  check(y.defined() && y.dim() == 5 && y.size(2) == 4, "rotate_p4: expected a p4 map [N, C, 4, H, W], got ",
        y.defined() ? y.shape() : Shape{});
  const int shift = ((k % 4) + 4) % 4;
  if (shift == 0) return rot90(y, 0);
  // Cyclic shift of the rotation axis by `shift`: out[r] = y[r - shift], i.e. the last `shift` slices come first.
  const Tensor cycled = concat({slice(y, 2, 4 - shift, 4), slice(y, 2, 0, 4 - shift)}, 2);
  return rot90(cycled, k);
}

Tensor rotation_theta(int64_t n, float degrees, int64_t h, int64_t w) {
  check(n >= 0 && h > 0 && w > 0 && std::isfinite(degrees), "rotation_theta: need n >= 0, h, w > 0 and a finite "
        "angle, got n = ", n, ", ", h, "x", w, ", ", degrees, " degrees");
  // Input position = R(angle) * output position in pixel units about the centre; a pixel is 2 / size wide in
  // normalised coordinates, hence the aspect factors h / w and w / h off the diagonal.
  const double a = degrees * M_PI / 180.0, c = std::cos(a), s = std::sin(a);
  const double hw = static_cast<double>(h) / static_cast<double>(w);
  Tensor theta = Tensor::zeros({n, 2, 3});
  for (int64_t i = 0; i < n; ++i) {
    float* t = theta.data() + i * 6;
    t[0] = static_cast<float>(c), t[1] = static_cast<float>(-s * hw);
    t[3] = static_cast<float>(s / hw), t[4] = static_cast<float>(c);
  }
  return theta;
}

Tensor rotate(const Tensor& x, float degrees, SampleMode mode) {
  check(x.defined() && x.dim() >= 3, "rotate: input must be [N, ..., H, W] with rank >= 3, got ",
        x.defined() ? x.shape() : Shape{});
  GridSampleOptions opt;
  opt.mode = mode;
  return warp_affine(x, rotation_theta(x.size(0), degrees, x.size(-2), x.size(-1)), opt);
}

}  // namespace eq
