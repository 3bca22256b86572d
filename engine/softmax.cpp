#include "engine/softmax.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/autograd.h"
#include "engine/parallel.h"

namespace eq {

namespace {

// Lanes of the inner axis per task; per-lane state lives on the stack.
constexpr int64_t kTile = 64;

struct Blocks {
  int64_t outer, n, inner;
  int64_t base(int64_t o, int64_t i0) const { return o * n * inner + i0; }
};

Blocks blocks_around(const Shape& s, int axis) {
  Blocks b{1, s[static_cast<size_t>(axis)], 1};
  for (int k = 0; k < axis; ++k) b.outer *= s[static_cast<size_t>(k)];
  for (size_t k = static_cast<size_t>(axis) + 1; k < s.size(); ++k) b.inner *= s[k];
  return b;
}

// Calls lane(o, i0, w) for every task, which covers lanes i0 .. i0+w-1 of block o: element r of lane j is at
// base(o, i0) + r * inner + j. With inner == 1 (softmax over the last axis) a task is one row.
template <class Lane>
void for_each_lane_tile(const Blocks& b, Lane lane) {
  const int64_t tiles = (b.inner + kTile - 1) / kTile;
#pragma omp parallel for if (b.outer * b.n * b.inner > kParallelGrain / 4)
  for (int64_t t = 0; t < b.outer * tiles; ++t) {
    const int64_t o = t / tiles, i0 = (t % tiles) * kTile;
    lane(o, i0, std::min(kTile, b.inner - i0));
  }
}

// Per lane: shift = the max (0 if the max is infinite, so that exp never sees inf - inf) and
// sum = sum_r exp(x_r - shift) >= 1. Then softmax = exp(x - shift) / sum and logsumexp = shift + log(sum); keeping
// the two apart (rather than computing exp(x - logsumexp)) avoids the rounding of a large logsumexp.
// When `exps` is given, exp(x_r - shift) is also stored there (same layout as x): softmax then needs no second exp.
void lane_shift_sum(const float* x, int64_t n, int64_t inner, int64_t w, float* shift, double* sum, float* exps) {
  for (int64_t j = 0; j < w; ++j) shift[j] = -std::numeric_limits<float>::infinity(), sum[j] = 0;
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < w; ++j) shift[j] = std::max(shift[j], x[r * inner + j]);
  for (int64_t j = 0; j < w; ++j)
    if (!std::isfinite(shift[j])) shift[j] = 0;
  for (int64_t r = 0; r < n; ++r)
    for (int64_t j = 0; j < w; ++j) {
      const float e = std::exp(x[r * inner + j] - shift[j]);
      sum[j] += e;
      if (exps) exps[r * inner + j] = e;
    }
}

enum class Kind { Softmax, LogSoftmax };

Tensor softmax_family(const Tensor& x, int axis, Kind kind) {
  const char* op = kind == Kind::Softmax ? "softmax" : "log_softmax";
  const int a = normalize_axis(axis, x.shape(), op);
  const Blocks b = blocks_around(x.shape(), a);
  Tensor y(x.shape());
  const float* px = x.data();
  float* py = y.data();
  for_each_lane_tile(b, [&](int64_t o, int64_t i0, int64_t w) {
    const int64_t base = b.base(o, i0);
    float shift[kTile], factor[kTile];  // softmax: 1 / sum; log_softmax: log(sum)
    double sum[kTile];
    const bool soft = kind == Kind::Softmax;
    lane_shift_sum(px + base, b.n, b.inner, w, shift, sum, soft ? py + base : nullptr);
    for (int64_t j = 0; j < w; ++j) factor[j] = static_cast<float>(soft ? 1.0 / sum[j] : std::log(sum[j]));
    for (int64_t r = 0; r < b.n; ++r)
      for (int64_t j = 0; j < w; ++j) {
        const int64_t k = base + r * b.inner + j;
        py[k] = soft ? py[k] * factor[j] : (px[k] - shift[j]) - factor[j];
      }
  });
  if (!any_requires_grad({&x})) return y;
  // softmax:     dx = y * (g - sum_r g y)
  // log_softmax: dx = g - exp(y) * sum_r g
  auto ys = y.impl()->data;
  record(y, op, {x}, [ys, b, kind](const float* g, const std::vector<float*>& gin) {
    const float* vy = ys->data();
    float* gx = gin[0];
    for_each_lane_tile(b, [&](int64_t o, int64_t i0, int64_t w) {
      const int64_t base = b.base(o, i0);
      double dot[kTile] = {};
      for (int64_t r = 0; r < b.n; ++r)
        for (int64_t j = 0; j < w; ++j) {
          const int64_t k = base + r * b.inner + j;
          dot[j] += kind == Kind::Softmax ? g[k] * vy[k] : g[k];
        }
      for (int64_t r = 0; r < b.n; ++r)
        for (int64_t j = 0; j < w; ++j) {
          const int64_t k = base + r * b.inner + j;
          const float d = static_cast<float>(dot[j]);
          gx[k] += kind == Kind::Softmax ? vy[k] * (g[k] - d) : g[k] - std::exp(vy[k]) * d;
        }
    });
  });
  return y;
}

}  // namespace

Tensor softmax(const Tensor& x, int axis) { return softmax_family(x, axis, Kind::Softmax); }
Tensor log_softmax(const Tensor& x, int axis) { return softmax_family(x, axis, Kind::LogSoftmax); }

Tensor logsumexp(const Tensor& x, int axis, bool keepdim) {
  const int a = normalize_axis(axis, x.shape(), "logsumexp");
  const Blocks b = blocks_around(x.shape(), a);
  Shape out_shape = x.shape();
  if (keepdim) out_shape[static_cast<size_t>(a)] = 1;
  else out_shape.erase(out_shape.begin() + a);
  Tensor out(out_shape);  // [outer, inner]
  const float* px = x.data();
  float* po = out.data();
  for_each_lane_tile(b, [&](int64_t o, int64_t i0, int64_t w) {
    float shift[kTile];
    double sum[kTile];
    lane_shift_sum(px + b.base(o, i0), b.n, b.inner, w, shift, sum, nullptr);
    for (int64_t j = 0; j < w; ++j) po[o * b.inner + i0 + j] = static_cast<float>(shift[j] + std::log(sum[j]));
  });
  if (!any_requires_grad({&x})) return out;
  // d lse / dx_r = exp(x_r - lse): the softmax, recomputed from x and the output rather than stored.
  auto xs = x.impl()->data, ls = out.impl()->data;
  record(out, "logsumexp", {x}, [xs, ls, b](const float* g, const std::vector<float*>& gin) {
    const float *vx = xs->data(), *lse = ls->data();
    float* gx = gin[0];
    for_each_lane_tile(b, [&](int64_t o, int64_t i0, int64_t w) {
      const int64_t base = b.base(o, i0), out_base = o * b.inner + i0;
      for (int64_t r = 0; r < b.n; ++r)
        for (int64_t j = 0; j < w; ++j) {
          const int64_t k = base + r * b.inner + j;
          gx[k] += g[out_base + j] * std::exp(vx[k] - lse[out_base + j]);
        }
    });
  });
  return out;
}

}  // namespace eq
