// equilab — blur-pool: separable strided binomial blur, forward and backward, plus the direct 2-D reference.
//
// Per [H, W] plane (planes are independent: one OpenMP task each, no races):
//   forward   tmp [H, Wo] = horizontal taps at columns j*stride + b - before   (all H rows)
//             y   [Ho, Wo] = vertical taps of tmp at rows i*stride + a - before
//   backward  gtmp [H, Wo] += t[a] * gy[i, :]          into the row each vertical tap read
//             gx   [H, W]  += t[b] * gtmp[h, j]        into the column each horizontal tap read
// Border rules become index tables (padded position -> source index, or -1 for a zero), built once per call, so
// every pad mode runs the same loops and the backward folds padded reads back onto their source cells.
#include "engine/blur_pool.h"

#include <algorithm>

#include "engine/autograd.h"
#include "engine/parallel.h"

namespace eq {

std::vector<float> binomial_taps(int filter_size) {
  check(filter_size >= 1 && filter_size <= 7, "binomial_taps: filter_size must be in 1..7, got ", filter_size);
  // Pascal's triangle row filter_size - 1: C(n, i) by the multiplicative rule, exact in double.
  const int n = filter_size - 1;
  std::vector<double> c(static_cast<size_t>(filter_size), 1.0);
  for (int i = 1; i <= n; ++i) c[i] = c[i - 1] * (n - i + 1) / i;
  double total = 0;
  for (double v : c) total += v;
  std::vector<float> taps(c.size());
  for (size_t i = 0; i < c.size(); ++i) taps[i] = static_cast<float>(c[i] / total);
  return taps;
}

namespace {

void check_blur_pool(const Tensor& x, int filter_size, int stride, PadMode pad) {
  const char* op = "blur_pool2d";
  check(x.dim() >= 2, op, ": input must have at least 2 axes [..., H, W], got ", x.shape());
  check(filter_size >= 1 && filter_size <= 7, op, ": filter_size must be in 1..7, got ", filter_size, " (input ",
        x.shape(), ")");
  check(stride >= 1, op, ": stride must be >= 1, got ", stride, " (input ", x.shape(), ")");
  const int64_t H = x.size(-2), W = x.size(-1);
  check(H >= 1 && W >= 1, op, ": input has an empty spatial axis ", x.shape());
  const int after = blur_pad_after(filter_size);
  if (pad == PadMode::Reflect)
    check(after < H && after < W, op, ": reflect padding (top/left ", blur_pad_before(filter_size),
          ", bottom/right ", after, ") for filter_size ", filter_size, " needs maps larger than ", after,
          " pixels, but input ", x.shape(), " has ", H, "x", W, " maps (use a smaller filter, or Replicate/Zeros)");
}

// Source index of padded tap position o*stride + k - before along an axis of `size`, for every (o, k):
// table[o * taps + k], -1 where the tap reads a zero.
std::vector<int64_t> tap_sources(int64_t size, int64_t n_out, int filter_size, int stride, PadMode pad) {
  std::vector<int64_t> table(static_cast<size_t>(n_out * filter_size));
  const int before = blur_pad_before(filter_size);
  for (int64_t o = 0; o < n_out; ++o)
    for (int k = 0; k < filter_size; ++k)
      table[o * filter_size + k] = pad_source_index(o * stride + k - before, size, pad);
  return table;
}

float* grow(std::vector<float>& buffer, int64_t n) {
  if (static_cast<int64_t>(buffer.size()) < n) buffer.resize(static_cast<size_t>(n));
  return buffer.data();
}

Shape pooled_shape(const Shape& in, int stride) {
  Shape out = in;
  out[out.size() - 2] = (in[in.size() - 2] + stride - 1) / stride;
  out[out.size() - 1] = (in[in.size() - 1] + stride - 1) / stride;
  return out;
}

}  // namespace

Tensor blur_pool2d(const Tensor& x, int filter_size, int stride, PadMode pad) {
  check_blur_pool(x, filter_size, stride, pad);
  const int64_t H = x.size(-2), W = x.size(-1);
  const int64_t Ho = (H + stride - 1) / stride, Wo = (W + stride - 1) / stride;
  const int64_t planes = x.numel() / (H * W);
  const int k = filter_size;
  auto taps = std::make_shared<const std::vector<float>>(binomial_taps(k));
  auto rows = std::make_shared<const std::vector<int64_t>>(tap_sources(H, Ho, k, stride, pad));
  auto cols = std::make_shared<const std::vector<int64_t>>(tap_sources(W, Wo, k, stride, pad));

  Tensor out(pooled_shape(x.shape(), stride));
  const float* px = x.data();
  float* py = out.data();
#pragma omp parallel for if (x.numel() > kParallelGrain)
  for (int64_t p = 0; p < planes; ++p) {
    thread_local std::vector<float> scratch;
    float* tmp = grow(scratch, H * Wo);
    const float* t = taps->data();
    const int64_t *rs = rows->data(), *cs = cols->data();
    const float* xp = px + p * H * W;
    for (int64_t h = 0; h < H; ++h) {
      const float* xr = xp + h * W;
      float* tr = tmp + h * Wo;
      for (int64_t j = 0; j < Wo; ++j) {
        float acc = 0;
        for (int b = 0; b < k; ++b) {
          const int64_t src = cs[j * k + b];
          if (src >= 0) acc += t[b] * xr[src];
        }
        tr[j] = acc;
      }
    }
    float* yp = py + p * Ho * Wo;
    for (int64_t i = 0; i < Ho; ++i) {
      float* yr = yp + i * Wo;
      std::fill(yr, yr + Wo, 0.0f);
      for (int a = 0; a < k; ++a) {
        const int64_t src = rs[i * k + a];
        if (src < 0) continue;
        const float* tr = tmp + src * Wo;
        const float ta = t[a];
        for (int64_t j = 0; j < Wo; ++j) yr[j] += ta * tr[j];
      }
    }
  }
  if (!any_requires_grad({&x})) return out;

  record(out, "blur_pool2d", {x},
         [taps, rows, cols, planes, H, W, Ho, Wo, k](const float* g, const std::vector<float*>& gin) {
           float* gx = gin[0];
#pragma omp parallel for if (planes * H * W > kParallelGrain)
           for (int64_t p = 0; p < planes; ++p) {
             thread_local std::vector<float> scratch;
             float* gtmp = grow(scratch, H * Wo);
             std::fill(gtmp, gtmp + H * Wo, 0.0f);
             const float* t = taps->data();
             const int64_t *rs = rows->data(), *cs = cols->data();
             const float* gp = g + p * Ho * Wo;
             for (int64_t i = 0; i < Ho; ++i)
               for (int a = 0; a < k; ++a) {
                 const int64_t src = rs[i * k + a];
                 if (src < 0) continue;
                 float* tr = gtmp + src * Wo;
                 const float ta = t[a];
                 for (int64_t j = 0; j < Wo; ++j) tr[j] += ta * gp[i * Wo + j];
               }
             float* gxp = gx + p * H * W;
             for (int64_t h = 0; h < H; ++h) {
               const float* tr = gtmp + h * Wo;
               float* gr = gxp + h * W;
               for (int64_t j = 0; j < Wo; ++j)
                 for (int b = 0; b < k; ++b) {
                   const int64_t src = cs[j * k + b];
                   if (src >= 0) gr[src] += t[b] * tr[j];
                 }
             }
           }
         });
  return out;
}

Tensor blur_pool2d_reference(const Tensor& x, int filter_size, int stride, PadMode pad) {
  check_blur_pool(x, filter_size, stride, pad);
  const std::vector<float> t = binomial_taps(filter_size);
  const int64_t H = x.size(-2), W = x.size(-1);
  const int64_t Ho = (H + stride - 1) / stride, Wo = (W + stride - 1) / stride;
  const int64_t planes = x.numel() / (H * W), before = blur_pad_before(filter_size);
  Tensor out(pooled_shape(x.shape(), stride));
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t i = 0; i < Ho; ++i)
      for (int64_t j = 0; j < Wo; ++j) {
        double acc = 0;
        for (int a = 0; a < filter_size; ++a)
          for (int b = 0; b < filter_size; ++b) {
            const int64_t r = pad_source_index(i * stride + a - before, H, pad);
            const int64_t c = pad_source_index(j * stride + b - before, W, pad);
            if (r >= 0 && c >= 0) acc += double(t[a]) * t[b] * x.data()[(p * H + r) * W + c];
          }
        out.data()[(p * Ho + i) * Wo + j] = static_cast<float>(acc);
      }
  return out;
}

}  // namespace eq
