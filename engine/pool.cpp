// equilab — max, average and global average pooling over [N, C, H, W]. Every (n, c) plane is independent, so
// forward and backward are parallel over planes and each thread owns its planes' gradients (no races).
//
// Windows start at oy * stride - pad; output size Ho = (H + 2 pad - kernel) / stride + 1 (floor, PyTorch's
// ceil_mode=False). As in PyTorch, pad <= kernel / 2, so every window holds at least one real cell.
#include "engine/pool.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "engine/autograd.h"
#include "engine/parallel.h"

namespace eq {

namespace {

struct PoolGeometry {
  int64_t planes, H, W, Ho, Wo;
};

PoolGeometry pool_geometry(const Tensor& x, const Pool2dOptions& o, const char* op) {
  check(x.dim() == 4, op, ": expected input [N, C, H, W], got ", x.shape());
  check(o.kernel_h >= 1 && o.kernel_w >= 1 && o.stride_h >= 1 && o.stride_w >= 1 && o.pad_h >= 0 && o.pad_w >= 0,
        op, ": kernel and stride must be >= 1 and padding >= 0 (kernel ", o.kernel_h, "x", o.kernel_w, ", stride ",
        o.stride_h, "x", o.stride_w, ", padding ", o.pad_h, "x", o.pad_w, ", input ", x.shape(), ")");
  check(2 * o.pad_h <= o.kernel_h && 2 * o.pad_w <= o.kernel_w, op, ": padding ", o.pad_h, "x", o.pad_w,
        " must be at most half the kernel ", o.kernel_h, "x", o.kernel_w, " (input ", x.shape(), ")");
  const int64_t H = x.size(2), W = x.size(3);
  check(H + 2 * o.pad_h >= o.kernel_h && W + 2 * o.pad_w >= o.kernel_w, op, ": kernel ", o.kernel_h, "x",
        o.kernel_w, " is larger than the padded input ", H + 2 * o.pad_h, "x", W + 2 * o.pad_w, " (input ",
        x.shape(), ", padding ", o.pad_h, "x", o.pad_w, ")");
  PoolGeometry g;
  g.planes = x.size(0) * x.size(1), g.H = H, g.W = W;
  g.Ho = (H + 2 * o.pad_h - o.kernel_h) / o.stride_h + 1;
  g.Wo = (W + 2 * o.pad_w - o.kernel_w) / o.stride_w + 1;
  return g;
}

// The window of output (oy, ox), clipped to the real input: rows [y0, y1), columns [x0, x1).
struct Window {
  int64_t y0, y1, x0, x1;
};
inline Window window(int64_t oy, int64_t ox, const PoolGeometry& g, const Pool2dOptions& o) {
  const int64_t ys = oy * o.stride_h - o.pad_h, xs = ox * o.stride_w - o.pad_w;
  return {std::max<int64_t>(ys, 0), std::min<int64_t>(ys + o.kernel_h, g.H), std::max<int64_t>(xs, 0),
          std::min<int64_t>(xs + o.kernel_w, g.W)};
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------
// max_pool2d: forward records, per output, the index (h * W + w within its plane) of the winning input cell; the
// backward sends the whole output gradient there. Ties go to the first cell in row-major order; NaN wins (as in
// PyTorch) so that it propagates.
// ---------------------------------------------------------------------------------------------------------------

Tensor max_pool2d(const Tensor& x, const Pool2dOptions& opt) {
  const PoolGeometry g = pool_geometry(x, opt, "max_pool2d");
  Tensor y({x.size(0), x.size(1), g.Ho, g.Wo});
  const int64_t in_plane = g.H * g.W, out_plane = g.Ho * g.Wo;
  const bool need_grad = any_requires_grad({&x});
  auto argmax = std::make_shared<std::vector<int32_t>>(need_grad ? static_cast<size_t>(y.numel()) : 0);
  const float* px = x.data();
  float* py = y.data();
  int32_t* pa = argmax->data();
#pragma omp parallel for schedule(static) if (g.planes * in_plane > kParallelGrain)
  for (int64_t p = 0; p < g.planes; ++p) {
    const float* plane = px + p * in_plane;
    for (int64_t oy = 0; oy < g.Ho; ++oy)
      for (int64_t ox = 0; ox < g.Wo; ++ox) {
        const Window win = window(oy, ox, g, opt);
        float best = -std::numeric_limits<float>::infinity();
        int64_t best_at = win.y0 * g.W + win.x0;
        for (int64_t iy = win.y0; iy < win.y1; ++iy)
          for (int64_t ix = win.x0; ix < win.x1; ++ix) {
            const float v = plane[iy * g.W + ix];
            if (v > best || (std::isnan(v) && !std::isnan(best))) best = v, best_at = iy * g.W + ix;
          }
        const int64_t o = p * out_plane + oy * g.Wo + ox;
        py[o] = best;
        if (need_grad) pa[o] = static_cast<int32_t>(best_at);
      }
  }
  if (!need_grad) return y;
  record(y, "max_pool2d", {x}, [argmax, g, in_plane, out_plane](const float* gy, const std::vector<float*>& gin) {
    float* gx = gin[0];
    const int32_t* pa = argmax->data();
#pragma omp parallel for schedule(static) if (g.planes * in_plane > kParallelGrain)
    for (int64_t p = 0; p < g.planes; ++p)
      for (int64_t i = 0; i < out_plane; ++i) gx[p * in_plane + pa[p * out_plane + i]] += gy[p * out_plane + i];
  });
  return y;
}

// ---------------------------------------------------------------------------------------------------------------
// avg_pool2d: count_include_pad (PyTorch's default) — the divisor is always kernel_h * kernel_w, padded cells
// counting as zeros. Backward: each real cell of a window gets grad / (kernel_h * kernel_w).
// ---------------------------------------------------------------------------------------------------------------

Tensor avg_pool2d(const Tensor& x, const Pool2dOptions& opt) {
  const PoolGeometry g = pool_geometry(x, opt, "avg_pool2d");
  Tensor y({x.size(0), x.size(1), g.Ho, g.Wo});
  const int64_t in_plane = g.H * g.W, out_plane = g.Ho * g.Wo;
  const float scale = 1.0f / static_cast<float>(opt.kernel_h * opt.kernel_w);
  const float* px = x.data();
  float* py = y.data();
#pragma omp parallel for schedule(static) if (g.planes * in_plane > kParallelGrain)
  for (int64_t p = 0; p < g.planes; ++p) {
    const float* plane = px + p * in_plane;
    for (int64_t oy = 0; oy < g.Ho; ++oy)
      for (int64_t ox = 0; ox < g.Wo; ++ox) {
        const Window win = window(oy, ox, g, opt);
        float sum = 0;
        for (int64_t iy = win.y0; iy < win.y1; ++iy)
          for (int64_t ix = win.x0; ix < win.x1; ++ix) sum += plane[iy * g.W + ix];
        py[p * out_plane + oy * g.Wo + ox] = sum * scale;
      }
  }
  record(y, "avg_pool2d", {x}, [g, opt, scale, in_plane, out_plane](const float* gy, const std::vector<float*>& gin) {
    float* gx = gin[0];
#pragma omp parallel for schedule(static) if (g.planes * in_plane > kParallelGrain)
    for (int64_t p = 0; p < g.planes; ++p)
      for (int64_t oy = 0; oy < g.Ho; ++oy)
        for (int64_t ox = 0; ox < g.Wo; ++ox) {
          const Window win = window(oy, ox, g, opt);
          const float share = gy[p * out_plane + oy * g.Wo + ox] * scale;
          for (int64_t iy = win.y0; iy < win.y1; ++iy)
            for (int64_t ix = win.x0; ix < win.x1; ++ix) gx[p * in_plane + iy * g.W + ix] += share;
        }
  });
  return y;
}

// ---------------------------------------------------------------------------------------------------------------
// global_avg_pool2d: [N, C, H, W] -> [N, C], the mean of each plane. Backward spreads grad / (H W) evenly.
// ---------------------------------------------------------------------------------------------------------------

Tensor global_avg_pool2d(const Tensor& x) {
  check(x.dim() == 4, "global_avg_pool2d: expected input [N, C, H, W], got ", x.shape());
  const int64_t planes = x.size(0) * x.size(1), plane = x.size(2) * x.size(3);
  check(plane > 0, "global_avg_pool2d: input ", x.shape(), " has no spatial cells to average");
  Tensor y({x.size(0), x.size(1)});
  const float* px = x.data();
  float* py = y.data();
#pragma omp parallel for schedule(static) if (planes * plane > kParallelGrain)
  for (int64_t p = 0; p < planes; ++p) {
    double sum = 0;
    for (int64_t i = 0; i < plane; ++i) sum += px[p * plane + i];
    py[p] = static_cast<float>(sum / static_cast<double>(plane));
  }
  record(y, "global_avg_pool2d", {x}, [planes, plane](const float* gy, const std::vector<float*>& gin) {
    float* gx = gin[0];
    const float scale = 1.0f / static_cast<float>(plane);
#pragma omp parallel for schedule(static) if (planes * plane > kParallelGrain)
    for (int64_t p = 0; p < planes; ++p)
      for (int64_t i = 0; i < plane; ++i) gx[p * plane + i] += gy[p] * scale;
  });
  return y;
}

}  // namespace eq
