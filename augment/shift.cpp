#include "augment/shift.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "augment/affine.h"
#include "engine/autograd.h"
#include "engine/elementwise.h"
#include "engine/parallel.h"
#include "engine/resample.h"

namespace eq {

const char* shift_padding_name(ShiftPadding padding) {
  return padding == ShiftPadding::Circular ? "circular" : "zeros";
}

ShiftPadding parse_shift_padding(const std::string& name) {
  if (name == "circular") return ShiftPadding::Circular;
  if (name == "zeros") return ShiftPadding::Zeros;
  fail("parse_shift_padding: unknown shift padding '", name, "' (expected circular or zeros)");
}

namespace {

// Checks x [N, ..., H, W] against per-sample shift vectors and returns N.
template <class T>
int64_t check_per_sample(const Tensor& x, const std::vector<T>& dy, const std::vector<T>& dx, const char* op) {
  check(x.defined(), op, ": input is undefined");
  check(x.dim() >= 3, op, ": input must be [N, ..., H, W] with rank >= 3, got ", x.shape());
  const int64_t n = x.size(0);
  check(static_cast<int64_t>(dy.size()) == n && static_cast<int64_t>(dx.size()) == n, op, ": ", dy.size(),
        " dy and ", dx.size(), " dx shifts for a batch of ", n, " (input ", x.shape(), ")");
  return n;
}

// Zeros-border translation of plane-major data: src has N * planes planes of [H, W]; sample n's planes move by
// (sign * dy[n], sign * dx[n]). out is accumulated into (+=), which serves both the forward (into zeros) and the
// backward (sign = -1 moves the gradient back, into grad_in).
void translate_zeros_kernel(const float* src, float* out, int64_t n, int64_t planes, int64_t h, int64_t w,
                            const std::vector<int>& dy, const std::vector<int>& dx, int sign) {
#pragma omp parallel for if (n * planes * h * w > kParallelGrain)
  for (int64_t p = 0; p < n * planes; ++p) {
    const int64_t s = p / planes;
    const int64_t sy = sign * dy[static_cast<size_t>(s)], sx = sign * dx[static_cast<size_t>(s)];
    const int64_t j0 = std::max<int64_t>(0, sx), j1 = std::min<int64_t>(w, w + sx);
    if (j0 >= j1) continue;
    for (int64_t i = std::max<int64_t>(0, sy); i < std::min<int64_t>(h, h + sy); ++i) {
      const float* from = src + (p * h + (i - sy)) * w + (j0 - sx);
      float* to = out + (p * h + i) * w + j0;
      for (int64_t j = 0; j < j1 - j0; ++j) to[j] += from[j];
    }
  }
}

// Per-sample weights [N, 1, ..., 1] of x's rank, for blending.
Tensor per_sample(const std::vector<float>& values, int rank) {
  Shape shape(static_cast<size_t>(rank), 1);
  shape[0] = static_cast<int64_t>(values.size());
  return Tensor::from(shape, values);
}

bool all_integer(const std::vector<float>& v) {
  return std::all_of(v.begin(), v.end(), [](float d) { return d == std::floor(d); });
}

std::vector<int> as_int(const std::vector<float>& v) {
  std::vector<int> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = static_cast<int>(std::lround(v[i]));
  return out;
}

// Circular sub-pixel shift along one axis (the other's shift is 0): (1 - f) roll(k) + f roll(k + 1).
Tensor circular_blend(const Tensor& x, const std::vector<float>& d, bool along_y) {
  const size_t n = d.size();
  std::vector<int> k(n), k1(n), zero(n, 0);
  std::vector<float> keep(n), next(n);
  for (size_t i = 0; i < n; ++i) {
    const float f = std::floor(d[i]);
    k[i] = static_cast<int>(f), k1[i] = k[i] + 1;
    next[i] = d[i] - f, keep[i] = 1.0f - next[i];
  }
  const Tensor a = along_y ? roll(x, k, zero) : roll(x, zero, k);
  const Tensor b = along_y ? roll(x, k1, zero) : roll(x, zero, k1);
  return a * per_sample(keep, x.dim()) + b * per_sample(next, x.dim());
}

}  // namespace

Tensor translate_int(const Tensor& x, const std::vector<int>& dy, const std::vector<int>& dx, ShiftPadding padding) {
  const int64_t n = check_per_sample(x, dy, dx, "translate_int");
  if (padding == ShiftPadding::Circular) return roll(x, dy, dx);
  const int64_t h = x.size(-2), w = x.size(-1);
  const int64_t planes = n == 0 || h * w == 0 ? 0 : x.numel() / (n * h * w);
  Tensor out = Tensor::zeros(x.shape());
  translate_zeros_kernel(x.data(), out.data(), n, planes, h, w, dy, dx, +1);
  if (!any_requires_grad({&x})) return out;
  record(out, "translate_int", {x}, [n, planes, h, w, dy, dx](const float* g, const std::vector<float*>& gin) {
    translate_zeros_kernel(g, gin[0], n, planes, h, w, dy, dx, -1);
  });
  return out;
}

Tensor translate_int_reference(const Tensor& x, const std::vector<int>& dy, const std::vector<int>& dx) {
  const int64_t n = check_per_sample(x, dy, dx, "translate_int_reference");
  const int64_t h = x.size(-2), w = x.size(-1);
  const int64_t planes = n == 0 || h * w == 0 ? 0 : x.numel() / (n * h * w);
  Tensor out = Tensor::zeros(x.shape());
  for (int64_t s = 0; s < n; ++s)
    for (int64_t p = 0; p < planes; ++p)
      for (int64_t i = 0; i < h; ++i)
        for (int64_t j = 0; j < w; ++j) {
          const int64_t si = i - dy[static_cast<size_t>(s)], sj = j - dx[static_cast<size_t>(s)];
          if (si >= 0 && si < h && sj >= 0 && sj < w)
            out.data()[((s * planes + p) * h + i) * w + j] = x.data()[((s * planes + p) * h + si) * w + sj];
        }
  return out;
}

Tensor translate(const Tensor& x, const std::vector<float>& dy, const std::vector<float>& dx, ShiftPadding padding) {
  const int64_t n = check_per_sample(x, dy, dx, "translate");
  for (size_t i = 0; i < dy.size(); ++i)
    check(std::isfinite(dy[i]) && std::isfinite(dx[i]), "translate: shift (", dy[i], ", ", dx[i], ") of sample ", i,
          " is not finite (input ", x.shape(), ")");
  if (all_integer(dy) && all_integer(dx)) return translate_int(x, as_int(dy), as_int(dx), padding);
  if (padding == ShiftPadding::Circular) {
    const Tensor moved_y = all_integer(dy) ? roll(x, as_int(dy), std::vector<int>(dy.size(), 0))
                                           : circular_blend(x, dy, true);
    return all_integer(dx) ? roll(moved_y, std::vector<int>(dx.size(), 0), as_int(dx))
                           : circular_blend(moved_y, dx, false);
  }
  // out(p) = x(p - d): in normalised coordinates (align_corners = false) a pixel is 2 / size wide.
  const int64_t h = x.size(-2), w = x.size(-1);
  Tensor theta = identity_theta(n);
  for (int64_t s = 0; s < n; ++s) {
    theta.data()[s * 6 + 2] = -2.0f * dx[static_cast<size_t>(s)] / static_cast<float>(w);
    theta.data()[s * 6 + 5] = -2.0f * dy[static_cast<size_t>(s)] / static_cast<float>(h);
  }
  return warp_affine(x, theta);
}

Shifts random_shifts(int64_t n, int max_shift, Rng& rng) {
  check(n >= 0 && max_shift >= 0, "random_shifts: need n >= 0 and max_shift >= 0, got n = ", n,
        ", max_shift = ", max_shift);
  Shifts s;
  s.dy.resize(static_cast<size_t>(n));
  s.dx.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    s.dy[static_cast<size_t>(i)] = static_cast<int>(rng.randint(2 * max_shift + 1)) - max_shift;
    s.dx[static_cast<size_t>(i)] = static_cast<int>(rng.randint(2 * max_shift + 1)) - max_shift;
  }
  return s;
}

Tensor random_translate(const Tensor& x, int max_shift, ShiftPadding padding, Rng& rng, Shifts* drawn) {
  check(x.defined() && x.dim() >= 3, "random_translate: input must be [N, ..., H, W] with rank >= 3, got ",
        x.defined() ? x.shape() : Shape{});
  Shifts s = random_shifts(x.size(0), max_shift, rng);
  Tensor out = translate_int(x, s.dy, s.dx, padding);
  if (drawn) *drawn = std::move(s);
  return out;
}

float shift_at_resolution(float shift, int64_t input_size, int64_t feature_size) {
  check(input_size > 0 && feature_size > 0, "shift_at_resolution: sizes must be positive, got input ", input_size,
        " and feature map ", feature_size);
  if (feature_size == input_size) return shift;
  if (feature_size < input_size)
    return shift / static_cast<float>(std::lround(static_cast<double>(input_size) / feature_size));
  return shift * static_cast<float>(std::lround(static_cast<double>(feature_size) / input_size));
}

}  // namespace eq
