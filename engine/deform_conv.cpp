#include "engine/deform_conv.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "engine/autograd.h"
#include "engine/matmul.h"
#include "engine/parallel.h"

namespace eq {

namespace {


// Every size the kernels need, derived once from validated inputs.
struct Geometry {
  int64_t N, Cin, H, W;  // input
  int64_t Cout, kh, kw;  // weight
  int64_t Ho, Wo;        // output
  int64_t groups;        // weight groups
  int64_t G;             // offset groups
  DeformConv2dOptions opt;

  int64_t taps() const { return kh * kw; }                      // K
  int64_t pixels() const { return Ho * Wo; }                    // P
  int64_t cin_per_group() const { return Cin / groups; }        // input channels one weight group sees
  int64_t cout_per_group() const { return Cout / groups; }
  int64_t cin_per_offset_group() const { return Cin / G; }      // input channels sharing one offset field
  int64_t padded_h() const { return H + 3; }  // input with a zero border: 1 row above, 2 below (see Tap)
  int64_t padded_w() const { return W + 2; }   // 1 column each side
  int64_t nowhere() const { return (H + 1) * padded_w(); }  // an all-zero 2x2 block, for out-of-range taps
};

// Checks every shape and option; the messages name the op and the shapes at fault.
Geometry check_inputs(const char* op, const Tensor& x, const Tensor& offset, const Tensor& w, const Tensor& b,
                      const Tensor& mask, const DeformConv2dOptions& opt) {
  check(x.defined() && offset.defined() && w.defined(), op, ": input, offset and weight must be defined");
  check(x.dim() == 4, op, ": input must be [N, Cin, H, W], got ", x.shape());
  check(w.dim() == 4, op, ": weight must be [Cout, Cin/groups, kh, kw], got ", w.shape());
  check(offset.dim() == 4, op, ": offset must be [N, 2*offset_groups*kh*kw, Ho, Wo], got ", offset.shape());
  check(opt.stride_h >= 1 && opt.stride_w >= 1 && opt.dilation_h >= 1 && opt.dilation_w >= 1 && opt.pad_h >= 0 &&
            opt.pad_w >= 0 && opt.groups >= 1 && opt.offset_groups >= 1,
        op, ": stride, dilation, groups and offset_groups must be >= 1 and padding >= 0 (stride ", opt.stride_h, "x",
        opt.stride_w, ", dilation ", opt.dilation_h, "x", opt.dilation_w, ", padding ", opt.pad_h, "x", opt.pad_w,
        ", groups ", opt.groups, ", offset_groups ", opt.offset_groups, ")");
  Geometry g{};
  g.N = x.size(0), g.Cin = x.size(1), g.H = x.size(2), g.W = x.size(3);
  g.Cout = w.size(0), g.kh = w.size(2), g.kw = w.size(3);
  g.groups = opt.groups, g.G = opt.offset_groups, g.opt = opt;
  check(x.numel() > 0 && w.numel() > 0, op, ": empty input ", x.shape(), " or weight ", w.shape());
  check(g.Cin % g.groups == 0 && g.Cout % g.groups == 0, op, ": groups ", g.groups,
        " must divide the input channels and the output channels (input ", x.shape(), ", weight ", w.shape(), ")");
  check(w.size(1) * g.groups == g.Cin, op, ": input has ", g.Cin, " channels but weight expects ",
        w.size(1) * g.groups, " (groups ", g.groups, ") (input ", x.shape(), ", weight ", w.shape(), ")");
  check(g.Cin % g.G == 0, op, ": input channels ", g.Cin, " are not divisible by offset_groups ", g.G, " (input ",
        x.shape(), ")");
  g.Ho = (g.H + 2 * opt.pad_h - opt.dilation_h * (g.kh - 1) - 1) / opt.stride_h + 1;
  g.Wo = (g.W + 2 * opt.pad_w - opt.dilation_w * (g.kw - 1) - 1) / opt.stride_w + 1;
  const int64_t padded_h = g.H + 2 * opt.pad_h, padded_w = g.W + 2 * opt.pad_w;
  check(padded_h >= opt.dilation_h * (g.kh - 1) + 1 && padded_w >= opt.dilation_w * (g.kw - 1) + 1, op,
        ": the dilated kernel is larger than the padded input (input ", x.shape(), ", weight ", w.shape(),
        ", padding ", opt.pad_h, "x", opt.pad_w, ", dilation ", opt.dilation_h, "x", opt.dilation_w, ")");
  const Shape want_offset{g.N, 2 * g.G * g.taps(), g.Ho, g.Wo};
  check(offset.size(0) == g.N, op, ": offset batch ", offset.size(0), " differs from input batch ", g.N,
        " (offset ", offset.shape(), ", input ", x.shape(), ")");
  check(offset.size(1) == want_offset[1], op, ": offset has ", offset.size(1),
        " channels but 2*offset_groups*kh*kw = 2*", g.G, "*", g.kh, "*", g.kw, " = ", want_offset[1], " (offset ",
        offset.shape(), ", weight ", w.shape(), ")");
  check(offset.size(2) == g.Ho && offset.size(3) == g.Wo, op, ": offset spatial size ", offset.size(2), "x",
        offset.size(3), " differs from the output size ", g.Ho, "x", g.Wo, " (offset ", offset.shape(), ", input ",
        x.shape(), ", weight ", w.shape(), ")");
  if (mask.defined()) {
    const Shape want_mask{g.N, g.G * g.taps(), g.Ho, g.Wo};
    check(mask.dim() == 4 && mask.size(0) == g.N && mask.size(1) == want_mask[1], op, ": mask ", mask.shape(),
          " must have offset_groups*kh*kw = ", g.G, "*", g.kh, "*", g.kw, " channels: expected ", want_mask,
          " (input ", x.shape(), ", weight ", w.shape(), ")");
    check(mask.size(2) == g.Ho && mask.size(3) == g.Wo, op, ": mask spatial size ", mask.size(2), "x",
          mask.size(3), " differs from the output size ", g.Ho, "x", g.Wo, " (mask ", mask.shape(), ")");
  }
  if (b.defined())
    check(b.dim() == 1 && b.size(0) == g.Cout, op, ": bias ", b.shape(), " must be [", g.Cout, "] (weight ",
          w.shape(), ")");
  return g;
}

// ---------------------------------------------------------------------------------------------------------------
// Fast kernel
//
// The sampling position of (offset group, tap, output pixel) does not depend on the channel, so it is computed
// once per sample into a table of Taps, then applied to the Cin/G channels of the group. Reading from a copy of the
// input with a zero border makes the four neighbours of any in-range point (-1 < y < H, -1 < x < W) addressable
// as base, base+1, base+Wp, base+Wp+1 with no bounds checks. Out-of-range points become a Tap with zero weights,
// fractions and mask that points at a 2x2 block of the border holding only zeros (hence the second zero row at the
// bottom): it adds nothing, even when the image holds inf or NaN (0 * inf would be NaN).
// ---------------------------------------------------------------------------------------------------------------

struct Tap {
  int32_t base;                // index of the top-left neighbour in the padded [Hp, Wp] channel, or nowhere()
  float w00, w01, w10, w11;    // bilinear weights times the mask: top-left, top-right, bottom-left, bottom-right
  float ly, lx;                // fractional parts of y and x (for the derivatives wrt the offsets)
  float m;                     // mask (1 for v1), 0 for an out-of-range point
};

// Per-thread workspaces, grown on demand and kept between calls.
struct Scratch {
  std::vector<float> padded;       // [Cin, Hp, Wp] = [Cin, H+3, W+2]
  std::vector<Tap> taps;           // [G, K, P]
  std::vector<float> cols;         // [Cin*K, P]
  std::vector<float> grad_cols;    // [Cin*K, P]
  std::vector<float> grad_padded;  // [Cin, Hp, Wp]
};
thread_local Scratch scratch;

template <class T>
T* grow(std::vector<T>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(static_cast<size_t>(n));
  return v.data();
}

// x_n [Cin, H, W] -> padded [Cin, H+3, W+2]: the image at row 1, column 1 of a zero canvas.
void pad_sample(const Geometry& g, const float* x_n, float* padded) {
  const int64_t hp = g.padded_h(), wp = g.padded_w();
  std::fill(padded, padded + g.Cin * hp * wp, 0.0f);
  for (int64_t c = 0; c < g.Cin; ++c)
    for (int64_t y = 0; y < g.H; ++y)
      std::copy(x_n + (c * g.H + y) * g.W, x_n + (c * g.H + y + 1) * g.W, padded + (c * hp + y + 1) * wp + 1);
}

// offset_n [2*G*K, P], mask_n [G*K, P] or null -> taps [G, K, P].
void build_taps(const Geometry& g, const float* offset_n, const float* mask_n, Tap* taps) {
  const int64_t K = g.taps(), P = g.pixels(), wp = g.padded_w();
  const DeformConv2dOptions& o = g.opt;
  for (int64_t og = 0; og < g.G; ++og)
    for (int64_t k = 0; k < K; ++k) {
      const int64_t i = k / g.kw, j = k % g.kw;
      const float* dy = offset_n + (og * 2 * K + 2 * k) * P;
      const float* dx = dy + P;
      const float* m = mask_n ? mask_n + (og * K + k) * P : nullptr;
      Tap* t = taps + (og * K + k) * P;
      for (int64_t yo = 0; yo < g.Ho; ++yo)
        for (int64_t xo = 0; xo < g.Wo; ++xo) {
          const int64_t p = yo * g.Wo + xo;
          const float y = static_cast<float>(yo * o.stride_h - o.pad_h + i * o.dilation_h) + dy[p];
          const float x = static_cast<float>(xo * o.stride_w - o.pad_w + j * o.dilation_w) + dx[p];
          Tap tap{static_cast<int32_t>(g.nowhere()), 0, 0, 0, 0, 0, 0, 0};
          if (y > -1 && y < g.H && x > -1 && x < g.W) {  // false for NaN too
            const float yl = std::floor(y), xl = std::floor(x);
            const float ly = y - yl, lx = x - xl, mm = m ? m[p] : 1.0f;
            tap.base = static_cast<int32_t>((static_cast<int64_t>(yl) + 1) * wp + static_cast<int64_t>(xl) + 1);
            tap.w00 = (1 - ly) * (1 - lx) * mm, tap.w01 = (1 - ly) * lx * mm;
            tap.w10 = ly * (1 - lx) * mm, tap.w11 = ly * lx * mm;
            tap.ly = ly, tap.lx = lx, tap.m = mm;
          }
          t[p] = tap;
        }
    }
}

// cols [Cin*K, P], row c*K + k: the (masked) bilinear samples of channel c at tap k for every output pixel.
// Channels innermost, so that each Tap is loaded once for the Cin/G channels that share it.
void deformable_im2col(const Geometry& g, const float* padded, const Tap* taps, float* cols) {
  const int64_t K = g.taps(), P = g.pixels(), hw = g.padded_h() * g.padded_w(), wp = g.padded_w();
  const int64_t per_group = g.cin_per_offset_group();
  for (int64_t og = 0; og < g.G; ++og)
    for (int64_t k = 0; k < K; ++k) {
      const Tap* t = taps + (og * K + k) * P;
      for (int64_t p = 0; p < P; ++p) {
        const Tap e = t[p];
        for (int64_t c = og * per_group; c < (og + 1) * per_group; ++c) {
          const float* v = padded + c * hw + e.base;
          cols[(c * K + k) * P + p] = e.w00 * v[0] + e.w01 * v[1] + e.w10 * v[wp] + e.w11 * v[wp + 1];
        }
      }
    }
}

// The adjoint of deformable_im2col for offset group og, given grad_cols [Cin*K, P]:
//   grad_padded [Cin, Hp, Wp] += scatter of grad_cols through the bilinear weights (channels of og only),
//   grad_offset_n [2*G*K, P] += grad_col * m * d bilinear / d(y, x), summed over the channels of og,
//   grad_mask_n [G*K, P] += grad_col * bilinear, summed likewise.
// and, since it reads the same four neighbours anyway, cols [Cin*K, P] = deformable_im2col's rows for og (what
// grad_w needs), saving a second pass over the input.
// Each pointer may be null. Everything written belongs to (sample, og): callers parallelise over those.
void deformable_col2im(const Geometry& g, int64_t og, const float* padded, const Tap* taps, const float* grad_cols,
                       float* grad_padded, float* grad_offset_n, float* grad_mask_n, float* cols) {
  const int64_t K = g.taps(), P = g.pixels(), hw = g.padded_h() * g.padded_w(), wp = g.padded_w();
  const int64_t c_begin = og * g.cin_per_offset_group(), c_end = c_begin + g.cin_per_offset_group();
  const bool need_values = grad_offset_n || grad_mask_n || cols;
  // Channels innermost: consecutive taps of one channel share neighbours, so a pixel-inner loop would chain its
  // read-modify-writes of grad_padded through memory; across channels they are independent, and the tap and the
  // offset/mask sums stay in registers.
  for (int64_t k = 0; k < K; ++k) {
    const Tap* t = taps + (og * K + k) * P;
    float* gdy = grad_offset_n ? grad_offset_n + (og * 2 * K + 2 * k) * P : nullptr;
    float* gdx = gdy ? gdy + P : nullptr;
    float* gm = grad_mask_n ? grad_mask_n + (og * K + k) * P : nullptr;
    for (int64_t p = 0; p < P; ++p) {
      const Tap e = t[p];
      float sum_dy = 0, sum_dx = 0, sum_m = 0;
      for (int64_t c = c_begin; c < c_end; ++c) {
        const int64_t row = (c * K + k) * P + p;
        const float dv = grad_cols[row];
        if (grad_padded) {
          float* gv = grad_padded + c * hw + e.base;
          gv[0] += dv * e.w00, gv[1] += dv * e.w01, gv[wp] += dv * e.w10, gv[wp + 1] += dv * e.w11;
        }
        if (need_values) {
          const float* v = padded + c * hw + e.base;
          const float v00 = v[0], v01 = v[1], v10 = v[wp], v11 = v[wp + 1];
          if (cols) cols[row] = e.w00 * v00 + e.w01 * v01 + e.w10 * v10 + e.w11 * v11;
          sum_dy += dv * ((1 - e.lx) * (v10 - v00) + e.lx * (v11 - v01));
          sum_dx += dv * ((1 - e.ly) * (v01 - v00) + e.ly * (v11 - v10));
          sum_m += dv * ((1 - e.ly) * ((1 - e.lx) * v00 + e.lx * v01) + e.ly * ((1 - e.lx) * v10 + e.lx * v11));
        }
      }
      if (gdy) gdy[p] += e.m * sum_dy, gdx[p] += e.m * sum_dx;
      if (gm) gm[p] += sum_m;
    }
  }
}

// out [N, Cout, P] = bias + per weight group: w_g [Cout/groups, Cin/groups*K] x cols_g [Cin/groups*K, P].
// Parallel over the batch: one gemm per sample and thread (inside a parallel region the OpenMP build of OpenBLAS
// runs on the calling thread). A single sample, or a problem too small to be worth waking the thread pool, runs
// serially, and then gemm itself may use the threads.
void forward_fast(const Geometry& g, const float* x, const float* offset, const float* mask, const float* w,
                  const float* b, float* out) {
  const int64_t K = g.taps(), P = g.pixels(), cin_g = g.cin_per_group(), cout_g = g.cout_per_group();
#pragma omp parallel for schedule(static) if (g.N > 1 && g.N * g.Cin * g.taps() * g.pixels() > kParallelGrain)
  for (int64_t n = 0; n < g.N; ++n) {
    float* padded = grow(scratch.padded, g.Cin * g.padded_h() * g.padded_w());
    Tap* taps = grow(scratch.taps, g.G * K * P);
    float* cols = grow(scratch.cols, g.Cin * K * P);
    pad_sample(g, x + n * g.Cin * g.H * g.W, padded);
    build_taps(g, offset + n * 2 * g.G * K * P, mask ? mask + n * g.G * K * P : nullptr, taps);
    deformable_im2col(g, padded, taps, cols);
    float* out_n = out + n * g.Cout * P;
    for (int64_t o = 0; o < g.Cout; ++o) std::fill(out_n + o * P, out_n + (o + 1) * P, b ? b[o] : 0.0f);
    for (int64_t wg = 0; wg < g.groups; ++wg)
      gemm(false, false, cout_g, P, cin_g * K, 1.0f, w + wg * cout_g * cin_g * K, cin_g * K,
           cols + wg * cin_g * K * P, P, 1.0f, out_n + wg * cout_g * P, P);
  }
}

// Backward, per sample n (parallel over the batch):
//   grad_cols  = w^T grad_out_n       then deformable_col2im -> grad_x, grad_offset, grad_mask of sample n, and the
//                                     columns cols_n recomputed on the way (plain im2col if only grad_w is needed)
//   grad_w    += grad_out_n cols_n^T  (into a per-thread partial, summed at the end: no races)
// Any grad pointer may be null (that input needs no gradient).
void backward_fast(const Geometry& g, const float* x, const float* offset, const float* mask, const float* w,
                   const float* grad_out, float* grad_x, float* grad_offset, float* grad_mask, float* grad_w,
                   float* grad_b) {
  const int64_t K = g.taps(), P = g.pixels(), cin_g = g.cin_per_group(), cout_g = g.cout_per_group();
  const int64_t hp = g.padded_h(), wp = g.padded_w(), w_numel = g.Cout * cin_g * K;
  const bool need_cols_grad = grad_x || grad_offset || grad_mask;
  const int threads = omp_get_max_threads();
  std::vector<float> partial_grad_w(grad_w ? static_cast<size_t>(threads * w_numel) : 0, 0.0f);

#pragma omp parallel for schedule(static) if (g.N > 1 && g.N * g.Cin * g.taps() * g.pixels() > kParallelGrain)
  for (int64_t n = 0; n < g.N; ++n) {
    float* padded = grow(scratch.padded, g.Cin * hp * wp);
    Tap* taps = grow(scratch.taps, g.G * K * P);
    float* cols = grad_w ? grow(scratch.cols, g.Cin * K * P) : nullptr;
    pad_sample(g, x + n * g.Cin * g.H * g.W, padded);
    build_taps(g, offset + n * 2 * g.G * K * P, mask ? mask + n * g.G * K * P : nullptr, taps);
    const float* grad_out_n = grad_out + n * g.Cout * P;
    if (need_cols_grad) {
      float* grad_cols = grow(scratch.grad_cols, g.Cin * K * P);
      for (int64_t wg = 0; wg < g.groups; ++wg)
        gemm(true, false, cin_g * K, P, cout_g, 1.0f, w + wg * cout_g * cin_g * K, cin_g * K,
             grad_out_n + wg * cout_g * P, P, 0.0f, grad_cols + wg * cin_g * K * P, P);
      float* grad_padded = nullptr;
      if (grad_x) {
        grad_padded = grow(scratch.grad_padded, g.Cin * hp * wp);
        std::fill(grad_padded, grad_padded + g.Cin * hp * wp, 0.0f);
      }
      for (int64_t og = 0; og < g.G; ++og)
        deformable_col2im(g, og, padded, taps, grad_cols, grad_padded,
                          grad_offset ? grad_offset + n * 2 * g.G * K * P : nullptr,
                          grad_mask ? grad_mask + n * g.G * K * P : nullptr, cols);
      if (grad_x) {  // drop the border: gradient that landed there belongs to zero padding
        float* gx_n = grad_x + n * g.Cin * g.H * g.W;
        for (int64_t c = 0; c < g.Cin; ++c)
          for (int64_t y = 0; y < g.H; ++y) {
            const float* src = grad_padded + (c * hp + y + 1) * wp + 1;
            float* dst = gx_n + (c * g.H + y) * g.W;
            for (int64_t xx = 0; xx < g.W; ++xx) dst[xx] += src[xx];
          }
      }
    } else if (grad_w) {
      deformable_im2col(g, padded, taps, cols);
    }
    if (grad_w) {
      float* my_grad_w = partial_grad_w.data() + omp_get_thread_num() * w_numel;
      for (int64_t wg = 0; wg < g.groups; ++wg)
        gemm(false, true, cout_g, cin_g * K, P, 1.0f, grad_out_n + wg * cout_g * P, P, cols + wg * cin_g * K * P, P,
             1.0f, my_grad_w + wg * cout_g * cin_g * K, cin_g * K);
    }
  }

  if (grad_w) {
#pragma omp parallel for schedule(static) if (w_numel * threads > kParallelGrain)
    for (int64_t i = 0; i < w_numel; ++i)
      for (int t = 0; t < threads; ++t) grad_w[i] += partial_grad_w[static_cast<size_t>(t * w_numel + i)];
  }
  if (grad_b) {
#pragma omp parallel for schedule(static) if (g.N * g.Cout * P > kParallelGrain)
    for (int64_t o = 0; o < g.Cout; ++o) {
      double s = 0;
      for (int64_t n = 0; n < g.N; ++n)
        for (int64_t p = 0; p < P; ++p) s += grad_out[(n * g.Cout + o) * P + p];
      grad_b[o] += static_cast<float>(s);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Reference kernel: the formula read literally, with explicit bounds checks per neighbour. Serial.
// ---------------------------------------------------------------------------------------------------------------

// Pixel (yy, xx) of img [H, W], or 0 outside.
float pixel_or_zero(const float* img, int64_t H, int64_t W, int64_t yy, int64_t xx) {
  return yy >= 0 && yy < H && xx >= 0 && xx < W ? img[yy * W + xx] : 0.0f;
}

float bilinear_reference(const float* img, int64_t H, int64_t W, float y, float x) {
  if (!(y > -1 && y < H && x > -1 && x < W)) return 0.0f;
  const int64_t y0 = static_cast<int64_t>(std::floor(y)), x0 = static_cast<int64_t>(std::floor(x));
  const float ly = y - y0, lx = x - x0;
  return (1 - ly) * (1 - lx) * pixel_or_zero(img, H, W, y0, x0) + (1 - ly) * lx * pixel_or_zero(img, H, W, y0, x0 + 1) +
         ly * (1 - lx) * pixel_or_zero(img, H, W, y0 + 1, x0) + ly * lx * pixel_or_zero(img, H, W, y0 + 1, x0 + 1);
}

// For coef = d(loss)/d(bilinear(img, y, x)): grad_img += coef * weights (neighbours inside the image only),
// *grad_y += coef * d bilinear/dy, *grad_x += coef * d bilinear/dx. Any pointer may be null.
void bilinear_reference_backward(const float* img, int64_t H, int64_t W, float y, float x, float coef,
                                 float* grad_img, float* grad_y, float* grad_x) {
  if (!(y > -1 && y < H && x > -1 && x < W)) return;
  const int64_t y0 = static_cast<int64_t>(std::floor(y)), x0 = static_cast<int64_t>(std::floor(x));
  const float ly = y - y0, lx = x - x0;
  const int64_t ys[4] = {y0, y0, y0 + 1, y0 + 1}, xs[4] = {x0, x0 + 1, x0, x0 + 1};
  const float weights[4] = {(1 - ly) * (1 - lx), (1 - ly) * lx, ly * (1 - lx), ly * lx};
  const float dwy[4] = {-(1 - lx), -lx, 1 - lx, lx}, dwx[4] = {-(1 - ly), 1 - ly, -ly, ly};
  for (int q = 0; q < 4; ++q) {
    if (ys[q] < 0 || ys[q] >= H || xs[q] < 0 || xs[q] >= W) continue;
    const float v = img[ys[q] * W + xs[q]];
    if (grad_img) grad_img[ys[q] * W + xs[q]] += coef * weights[q];
    if (grad_y) *grad_y += coef * dwy[q] * v;
    if (grad_x) *grad_x += coef * dwx[q] * v;
  }
}

// Calls body(n, oc, p, c, ci, k, y, x, offset_index, mask_index) for every term of the sum: output channel oc at
// pixel p, input channel c (ci within its weight group), tap k sampled at (y, x); offset_index is the dy entry of
// the offset tensor (dx is + P), mask_index the mask entry.
template <class Body>
void for_each_term(const Geometry& g, const float* offset, Body body) {
  const int64_t K = g.taps(), P = g.pixels(), cin_g = g.cin_per_group(), cout_g = g.cout_per_group();
  const DeformConv2dOptions& o = g.opt;
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t oc = 0; oc < g.Cout; ++oc)
      for (int64_t yo = 0; yo < g.Ho; ++yo)
        for (int64_t xo = 0; xo < g.Wo; ++xo)
          for (int64_t ci = 0; ci < cin_g; ++ci)
            for (int64_t i = 0; i < g.kh; ++i)
              for (int64_t j = 0; j < g.kw; ++j) {
                const int64_t c = (oc / cout_g) * cin_g + ci, k = i * g.kw + j, p = yo * g.Wo + xo;
                const int64_t og = c / g.cin_per_offset_group();
                const int64_t offset_index = ((n * g.G + og) * 2 * K + 2 * k) * P + p;
                const int64_t mask_index = ((n * g.G + og) * K + k) * P + p;
                const float y = static_cast<float>(yo * o.stride_h - o.pad_h + i * o.dilation_h) + offset[offset_index];
                const float x =
                    static_cast<float>(xo * o.stride_w - o.pad_w + j * o.dilation_w) + offset[offset_index + P];
                body(n, oc, p, c, ci, k, y, x, offset_index, mask_index);
              }
}

void forward_reference(const Geometry& g, const float* x, const float* offset, const float* mask, const float* w,
                       const float* b, float* out) {
  const int64_t K = g.taps(), P = g.pixels(), cin_g = g.cin_per_group();
  for (int64_t n = 0; n < g.N; ++n)
    for (int64_t oc = 0; oc < g.Cout; ++oc)
      for (int64_t p = 0; p < P; ++p) out[(n * g.Cout + oc) * P + p] = b ? b[oc] : 0.0f;
  for_each_term(g, offset, [&](int64_t n, int64_t oc, int64_t p, int64_t c, int64_t ci, int64_t k, float y, float xx,
                               int64_t, int64_t mask_index) {
    const float m = mask ? mask[mask_index] : 1.0f;
    const float v = bilinear_reference(x + (n * g.Cin + c) * g.H * g.W, g.H, g.W, y, xx);
    out[(n * g.Cout + oc) * P + p] += w[(oc * cin_g + ci) * K + k] * m * v;
  });
}

void backward_reference(const Geometry& g, const float* x, const float* offset, const float* mask, const float* w,
                        const float* grad_out, float* grad_x, float* grad_offset, float* grad_mask, float* grad_w,
                        float* grad_b) {
  const int64_t K = g.taps(), P = g.pixels(), cin_g = g.cin_per_group();
  for_each_term(g, offset, [&](int64_t n, int64_t oc, int64_t p, int64_t c, int64_t ci, int64_t k, float y, float xx,
                               int64_t offset_index, int64_t mask_index) {
    const float go = grad_out[(n * g.Cout + oc) * P + p];
    const float m = mask ? mask[mask_index] : 1.0f;
    const float wt = w[(oc * cin_g + ci) * K + k];
    const float* img = x + (n * g.Cin + c) * g.H * g.W;
    const float v = bilinear_reference(img, g.H, g.W, y, xx);
    if (grad_w) grad_w[(oc * cin_g + ci) * K + k] += go * m * v;
    if (grad_mask) grad_mask[mask_index] += go * wt * v;
    bilinear_reference_backward(
        img, g.H, g.W, y, xx, go * wt * m, grad_x ? grad_x + (n * g.Cin + c) * g.H * g.W : nullptr,
        grad_offset ? grad_offset + offset_index : nullptr, grad_offset ? grad_offset + offset_index + P : nullptr);
  });
  if (grad_b)
    for (int64_t n = 0; n < g.N; ++n)
      for (int64_t oc = 0; oc < g.Cout; ++oc)
        for (int64_t p = 0; p < P; ++p) grad_b[oc] += grad_out[(n * g.Cout + oc) * P + p];
}

// Shared driver: check, run the forward kernel, record a backward that recomputes the sampling from the kept inputs.
using ForwardKernel = void (*)(const Geometry&, const float*, const float*, const float*, const float*, const float*,
                               float*);
using BackwardKernel = void (*)(const Geometry&, const float*, const float*, const float*, const float*, const float*,
                                float*, float*, float*, float*, float*);

Tensor deform_conv2d_with(const char* op, ForwardKernel forward, BackwardKernel backward, const Tensor& x,
                          const Tensor& offset, const Tensor& w, const Tensor& b, const Tensor& mask,
                          const DeformConv2dOptions& opt) {
  const Geometry g = check_inputs(op, x, offset, w, b, mask, opt);
  Tensor out({g.N, g.Cout, g.Ho, g.Wo});
  forward(g, x.data(), offset.data(), mask.defined() ? mask.data() : nullptr, w.data(),
          b.defined() ? b.data() : nullptr, out.data());
  if (!any_requires_grad({&x, &offset, &w, &b, &mask})) return out;
  // Every input's gradient needs x, offset, mask (to resample) and w (for grad_cols); bias needs nothing.
  Storage sx = x.impl()->data, soff = offset.impl()->data, sw = w.impl()->data;
  Storage smask = mask.defined() ? mask.impl()->data : nullptr;
  record(out, op, {x, offset, w, b, mask},
         [g, backward, sx, soff, sw, smask](const float* grad_out, const std::vector<float*>& gin) {
           backward(g, sx->data(), soff->data(), smask ? smask->data() : nullptr, sw->data(), grad_out, gin[0],
                    gin[1], gin[4], gin[2], gin[3]);
         });
  return out;
}

}  // namespace

Tensor deform_conv2d(const Tensor& x, const Tensor& offset, const Tensor& w, const Tensor& b, const Tensor& mask,
                     const DeformConv2dOptions& opt) {
  return deform_conv2d_with("deform_conv2d", forward_fast, backward_fast, x, offset, w, b, mask, opt);
}

Tensor deform_conv2d_reference(const Tensor& x, const Tensor& offset, const Tensor& w, const Tensor& b,
                               const Tensor& mask, const DeformConv2dOptions& opt) {
  return deform_conv2d_with("deform_conv2d_reference", forward_reference, backward_reference, x, offset, w, b, mask,
                            opt);
}

}  // namespace eq
