#include "augment/warp.h"

#include <cmath>
#include <string>

#include "augment/rotation.h"
#include "engine/resample.h"

namespace eq {

namespace {

void check_spatial(const Tensor& y, const char* op) {
  check(y.defined() && y.dim() >= 3, op, ": expected a map [N, ..., H, W] with rank >= 3, got ",
        y.defined() ? y.shape() : Shape{});
}

}  // namespace

Warp shift_warp(const Shifts& shifts, ShiftPadding padding, int64_t h, int64_t w) {
  check(shifts.dy.size() == shifts.dx.size() && h > 0 && w > 0, "shift_warp: ", shifts.dy.size(), " dy and ",
        shifts.dx.size(), " dx shifts for an input of ", h, "x", w);
  Warp warp;
  warp.name = std::string("shift(") + shift_padding_name(padding) + ")";
  warp.apply = [shifts, padding](const Tensor& x) { return translate_int(x, shifts.dy, shifts.dx, padding); };
  warp.inverse = [shifts, padding, h, w](const Tensor& y) {
    check_spatial(y, "shift_warp inverse");
    std::vector<float> dy(shifts.dy.size()), dx(shifts.dx.size());
    for (size_t i = 0; i < dy.size(); ++i) {
      dy[i] = -shift_at_resolution(static_cast<float>(shifts.dy[i]), h, y.size(-2));
      dx[i] = -shift_at_resolution(static_cast<float>(shifts.dx[i]), w, y.size(-1));
    }
    return translate(y, dy, dx, padding);
  };
  return warp;
}

Warp affine_warp(const AffineWarp& affine) {
  return {"affine", [affine](const Tensor& x) { return affine.warp(x); },
          [affine](const Tensor& y) { return affine.unwarp(y); }};
}

Warp rot90_warp(int k) {
  return {"rot90(" + std::to_string(k) + ")", [k](const Tensor& x) { return rot90(x, k); },
          [k](const Tensor& y) { return y.dim() == 5 ? rotate_p4(y, -k) : rot90(y, -k); }};
}

Warp rotation_warp(float degrees) {
  return {"rotate(" + std::to_string(degrees) + ")", [degrees](const Tensor& x) { return rotate(x, degrees); },
          [degrees](const Tensor& y) { return rotate(y, -degrees); }};
}

Warp rescale_warp(float factor, ResizeMode mode) {
  check(factor > 0 && std::isfinite(factor), "rescale_warp: factor must be positive and finite, got ", factor);
  return {"rescale(" + std::to_string(factor) + ")",
          [factor, mode](const Tensor& x) { return rescale_about_center(x, factor, mode); },
          [factor, mode](const Tensor& y) { return rescale_about_center(y, 1.0f / factor, mode); }};
}

Warp compose(const Warp& first, const Warp& second) {
  Warp warp;
  warp.name = first.name + " then " + second.name;
  warp.apply = [first, second](const Tensor& x) { return second.apply(first.apply(x)); };
  if (first.has_inverse() && second.has_inverse())
    warp.inverse = [first, second](const Tensor& y) { return first.inverse(second.inverse(y)); };
  return warp;
}

Warp fmicon_warp(int64_t n, int64_t h, int64_t w, Rng& rng, float sigma) {
  check(n >= 0 && h > 0 && w > 0, "fmicon_warp: need n >= 0 and a positive size, got n = ", n, ", ", h, "x", w);
  const AffineWarp affine = random_affine(n, rng, sigma);
  Shifts roll_by;
  for (int64_t s = 0; s < n; ++s) {
    roll_by.dy.push_back(static_cast<int>(rng.randint(h)));
    roll_by.dx.push_back(static_cast<int>(rng.randint(w)));
  }
  Warp warp = compose(affine_warp(affine), shift_warp(roll_by, ShiftPadding::Circular, h, w));
  warp.name = "fmicon";
  return warp;
}

}  // namespace eq
