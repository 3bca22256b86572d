#include "engine/resize.h"

#include <algorithm>
#include <cmath>

#include "engine/autograd.h"
#include "engine/parallel.h"

namespace eq {

// ---------------------------------------------------------------------------------------------------------------
// The separable kernel. For P planes of [H, W]:
//   forward   tmp[p, h, q] = sum_u cols(q, u) x[p, h, u]          [P, H, Wo]   parallel over rows (p, h)
//             out[p, o, q] = sum_t rows(o, t) tmp[p, t, q]        [P, Ho, Wo]  parallel over output rows (p, o)
//   backward  gtmp[p, t, :] += rows(o, t) g[p, o, :]               scatter inside plane p: parallel over planes
//             gx[p, h, u]   += cols(q, u) gtmp[p, h, q]            scatter inside row (p, h): parallel over rows
// ---------------------------------------------------------------------------------------------------------------

namespace {

void check_taps(const AxisTaps& taps, int64_t size, const char* op, const char* axis, const Shape& shape) {
  check(taps.in_size == size, op, ": ", axis, " map expects an axis of ", taps.in_size, " but the input is ",
        shape);
  check(!taps.begin.empty() && taps.begin.front() == 0 && taps.begin.back() == static_cast<int64_t>(taps.index.size()) &&
            taps.index.size() == taps.weight.size(),
        op, ": malformed ", axis, " map (input ", shape, ")");
  for (int64_t i : taps.index) check(i >= 0 && i < size, op, ": ", axis, " map reads index ", i, " outside ", size);
}

// Along W: dst row q = sum of taps of src row. rows = P * H rows of length in/out.
void map_last_axis(const float* src, float* dst, int64_t rows, int64_t in, const AxisTaps& taps) {
  const int64_t out = taps.out_size();
#pragma omp parallel for if (rows * out > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const float* s = src + r * in;
    float* d = dst + r * out;
    for (int64_t q = 0; q < out; ++q) {
      float v = 0;
      for (int64_t t = taps.begin[q]; t < taps.begin[q + 1]; ++t) v += taps.weight[t] * s[taps.index[t]];
      d[q] = v;
    }
  }
}

// Transpose of map_last_axis, accumulated: src rows of length out, dst rows of length in.
void map_last_axis_transposed(const float* src, float* dst, int64_t rows, int64_t in, const AxisTaps& taps) {
  const int64_t out = taps.out_size();
#pragma omp parallel for if (rows * out > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const float* s = src + r * out;
    float* d = dst + r * in;
    for (int64_t q = 0; q < out; ++q)
      for (int64_t t = taps.begin[q]; t < taps.begin[q + 1]; ++t) d[taps.index[t]] += taps.weight[t] * s[q];
  }
}

// Along H of [P, in, L] planes -> [P, out, L]: whole rows combined, so the inner loop runs over L contiguously.
void map_middle_axis(const float* src, float* dst, int64_t planes, int64_t in, int64_t L, const AxisTaps& taps) {
  const int64_t out = taps.out_size();
#pragma omp parallel for if (planes * out * L > kParallelGrain)
  for (int64_t r = 0; r < planes * out; ++r) {
    const int64_t p = r / out, o = r % out;
    float* d = dst + r * L;
    std::fill(d, d + L, 0.0f);
    for (int64_t t = taps.begin[o]; t < taps.begin[o + 1]; ++t) {
      const float w = taps.weight[t];
      const float* s = src + (p * in + taps.index[t]) * L;
      for (int64_t q = 0; q < L; ++q) d[q] += w * s[q];
    }
  }
}

void map_middle_axis_transposed(const float* src, float* dst, int64_t planes, int64_t in, int64_t L,
                                const AxisTaps& taps) {
  const int64_t out = taps.out_size();
#pragma omp parallel for if (planes * out * L > kParallelGrain)
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t o = 0; o < out; ++o) {
      const float* s = src + (p * out + o) * L;
      for (int64_t t = taps.begin[o]; t < taps.begin[o + 1]; ++t) {
        const float w = taps.weight[t];
        float* d = dst + (p * in + taps.index[t]) * L;
        for (int64_t q = 0; q < L; ++q) d[q] += w * s[q];
      }
    }
}

}  // namespace

Tensor apply_separable(const Tensor& x, const AxisTaps& rows, const AxisTaps& cols, const char* op) {
  check(x.dim() >= 2, op, ": input must have at least 2 axes [..., H, W], got ", x.shape());
  const int64_t H = x.size(-2), W = x.size(-1);
  check_taps(rows, H, op, "row", x.shape());
  check_taps(cols, W, op, "column", x.shape());
  const int64_t Ho = rows.out_size(), Wo = cols.out_size();
  const int64_t planes = H * W == 0 ? 0 : x.numel() / (H * W);
  Shape out_shape = x.shape();
  out_shape[out_shape.size() - 2] = Ho;
  out_shape[out_shape.size() - 1] = Wo;
  Tensor out(out_shape);
  if (planes == 0 || Ho * Wo == 0) return out;

  thread_local std::vector<float> tmp;  // [P, H, Wo], reused between calls
  tmp.resize(static_cast<size_t>(planes * H * Wo));
  map_last_axis(x.data(), tmp.data(), planes * H, W, cols);
  map_middle_axis(tmp.data(), out.data(), planes, H, Wo, rows);
  if (!any_requires_grad({&x})) return out;

  auto maps = std::make_shared<std::pair<AxisTaps, AxisTaps>>(rows, cols);
  record(out, op, {x}, [maps, planes, H, W, Wo](const float* g, const std::vector<float*>& gin) {
    std::vector<float> gtmp(static_cast<size_t>(planes * H * Wo), 0.0f);
    map_middle_axis_transposed(g, gtmp.data(), planes, H, Wo, maps->first);
    map_last_axis_transposed(gtmp.data(), gin[0], planes * H, W, maps->second);
  });
  return out;
}

Tensor apply_separable_reference(const Tensor& x, const AxisTaps& rows, const AxisTaps& cols) {
  const int64_t H = x.size(-2), W = x.size(-1), Ho = rows.out_size(), Wo = cols.out_size();
  const int64_t planes = H * W == 0 ? 0 : x.numel() / (H * W);
  Shape out_shape = x.shape();
  out_shape[out_shape.size() - 2] = Ho;
  out_shape[out_shape.size() - 1] = Wo;
  Tensor out(out_shape);
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t o = 0; o < Ho; ++o)
      for (int64_t q = 0; q < Wo; ++q) {
        double v = 0;
        for (int64_t t = rows.begin[o]; t < rows.begin[o + 1]; ++t)
          for (int64_t u = cols.begin[q]; u < cols.begin[q + 1]; ++u)
            v += static_cast<double>(rows.weight[t]) * cols.weight[u] *
                 x.data()[(p * H + rows.index[t]) * W + cols.index[u]];
        out.data()[(p * Ho + o) * Wo + q] = static_cast<float>(v);
      }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Building the per-axis maps.
// ---------------------------------------------------------------------------------------------------------------

namespace {

double triangle(double t) { return std::max(0.0, 1.0 - std::fabs(t)); }

// Keys' cubic convolution kernel with parameter a; support [-2, 2], sums to 1 over integer shifts.
double cubic(double t, double a) {
  t = std::fabs(t);
  if (t <= 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
  if (t < 2) return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a;
  return 0;
}

// What happens to filter taps that fall outside [0, in):
//   Clamp        read the edge pixel (plain resize, as PyTorch)
//   Renormalise  dropped; the remaining weights are rescaled to sum 1 (antialiased resize, as PyTorch / PIL)
//   Zero         dropped; they read the zero canvas (rescale_about_center)
enum class Edge { Clamp, Renormalise, Zero };

// Taps of a filter f with support [-radius, radius], stretched by `stretch` >= 1, centred on src(o) for each o.
// A stretched filter is normalised to sum 1 (over all taps for Zero, over the inside ones for Renormalise); an
// unstretched triangle or cubic already sums to 1.
template <class Filter, class Source>
AxisTaps filter_taps(int64_t in, int64_t out, Source src, Filter f, double radius, double stretch, Edge edge) {
  AxisTaps taps;
  taps.in_size = in;
  std::vector<std::pair<int64_t, double>> row;
  for (int64_t o = 0; o < out; ++o) {
    const double c = src(o);
    row.clear();
    double total = 0, inside = 0;
    for (int64_t j = static_cast<int64_t>(std::ceil(c - radius * stretch));
         j <= static_cast<int64_t>(std::floor(c + radius * stretch)); ++j) {
      const double w = f((static_cast<double>(j) - c) / stretch);
      if (w == 0) continue;
      total += w;
      const bool in_range = j >= 0 && j < in;
      if (in_range) inside += w;
      if (in_range || edge == Edge::Clamp) row.push_back({std::clamp<int64_t>(j, 0, in - 1), w});
    }
    double norm = 1;
    if (edge == Edge::Renormalise && inside != 0) norm = inside;
    else if (stretch > 1 && total != 0) norm = total;
    for (auto& [j, w] : row) taps.add(j, static_cast<float>(w / norm));
    taps.end_row();
  }
  return taps;
}

AxisTaps area_taps(int64_t in, int64_t out) {
  AxisTaps taps;
  taps.in_size = in;
  for (int64_t o = 0; o < out; ++o) {
    const int64_t start = o * in / out, end = ((o + 1) * in + out - 1) / out;
    for (int64_t j = start; j < end; ++j) taps.add(j, 1.0f / static_cast<float>(end - start));
    taps.end_row();
  }
  return taps;
}

AxisTaps resize_taps(int64_t in, int64_t out, const ResizeOptions& opt) {
  if (opt.mode == ResizeMode::Area) return area_taps(in, out);
  // Source-pixel distance between neighbouring output pixels, and the source coordinate of output pixel o.
  const double step = opt.align_corners ? (out > 1 ? static_cast<double>(in - 1) / static_cast<double>(out - 1) : 0.0)
                                        : static_cast<double>(in) / static_cast<double>(out);
  const bool align = opt.align_corners;
  auto src = [step, align](int64_t o) { return align ? o * step : (o + 0.5) * step - 0.5; };
  const bool stretched = opt.antialias && step > 1;
  const double stretch = stretched ? step : 1.0;
  const Edge edge = stretched ? Edge::Renormalise : Edge::Clamp;
  if (opt.mode == ResizeMode::Bilinear) return filter_taps(in, out, src, triangle, 1.0, stretch, edge);
  const double a = stretched ? -0.5 : -0.75;
  return filter_taps(in, out, src, [a](double t) { return cubic(t, a); }, 2.0, stretch, edge);
}

const char* resize_mode_name(ResizeMode mode) {
  switch (mode) {
    case ResizeMode::Bilinear: return "bilinear";
    case ResizeMode::Bicubic: return "bicubic";
    default: return "area";
  }
}

}  // namespace

Tensor resize(const Tensor& x, int64_t out_h, int64_t out_w, const ResizeOptions& opt) {
  check(x.dim() >= 2, "resize: input must have at least 2 axes [..., H, W], got ", x.shape());
  check(x.size(-2) > 0 && x.size(-1) > 0, "resize: input has an empty spatial axis ", x.shape());
  check(out_h > 0 && out_w > 0, "resize: output size must be positive, got ", out_h, " x ", out_w, " (input ",
        x.shape(), ", mode ", resize_mode_name(opt.mode), ")");
  return apply_separable(x, resize_taps(x.size(-2), out_h, opt), resize_taps(x.size(-1), out_w, opt), "resize");
}

Tensor rescale_about_center(const Tensor& x, float factor, ResizeMode mode, bool antialias) {
  check(x.dim() >= 2, "rescale_about_center: input must have at least 2 axes [..., H, W], got ", x.shape());
  check(std::isfinite(factor) && factor > 0, "rescale_about_center: factor must be positive and finite, got ",
        factor, " (input ", x.shape(), ")");
  check(mode != ResizeMode::Area, "rescale_about_center: mode area is not supported (use bilinear or bicubic; input ",
        x.shape(), ")");
  const double stretch = antialias && factor < 1 ? 1.0 / factor : 1.0;
  auto axis = [&](int64_t n) {
    const double half = static_cast<double>(n) / 2;
    auto src = [half, factor](int64_t o) { return (o + 0.5 - half) / factor + half - 0.5; };
    if (mode == ResizeMode::Bilinear) return filter_taps(n, n, src, triangle, 1.0, stretch, Edge::Zero);
    return filter_taps(n, n, src, [](double t) { return cubic(t, -0.75); }, 2.0, stretch, Edge::Zero);
  };
  return apply_separable(x, axis(x.size(-2)), axis(x.size(-1)), "rescale_about_center");
}

}  // namespace eq
