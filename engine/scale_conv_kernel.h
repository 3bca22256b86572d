// equilab — the raw kernels of the scale convolution (layers/scale_conv.h): forward and backward on plain float
// arrays, with no copy of the scale windows and no stacking of per-scale outputs. The naive loops are kept next
// to the fast ones (llm.c style) so tests can compare every direction.
//
//   x [N, Cin, S, H, W], w [Cout, Cin, Ks, kh, kw] (kh, kw odd), b [Cout] or null -> y [N, Cout, S, H, W]
//   y[n, o, s] = b[o] + sum_{j < min(Ks, S - s)} sum_c conv2d(x[n, c, s + j], w[o, c, j], dilation d_s,
//                                                             zero padding d_s (k/2))
//
// Fast path: direct convolutions (engine/direct_conv.h: registers hold blocks of output channels x pixels, the input
// is read in place from a zero-padded copy, no im2col and no GEMM, which for 16 output channels per scale spent as
// long copying columns as multiplying), in jobs spread over the threads:
//   forward, job n:       every plane x[n, c, t] padded once (for the largest dilation that reads it), then per
//                         output scale s: y[n, :, s] = b + conv(x[n, :, s .. s+m-1], w[:, :, :m]) at dilation d_s,
//                         m = min(Ks, S - s) (the zero padding of the scale axis is skipped, not multiplied)
//   dx, job n:            every plane dy[n, o, s] padded once, then per input scale t:
//                         dx[n, :, t] += sum_{j <= t, j < Ks} conv(dy[n, :, s], flip(w[:, :, j])^T) at d_s, s = t - j
//                         (gathered per input scale: a job owns its planes, no races)
//   dw, job (n, s):       per-pixel outer products dy[n, :, s](p) x the taps of x[n, :, s .. s+m-1] at p, summed per
//                         fixed run of jobs and then in run order: bit-identical for any thread count
// Jobs per sample keep a sample's padded planes in cache and pad each once; a batch smaller than the thread count
// leaves threads idle in the forward and dx (the scale study runs batches of 32 to 256).
#pragma once
#include <cstdint>
#include <vector>

namespace eq {

struct ScaleConvShape {
  int64_t N, Cin, Cout, S, H, W, Ks, kh, kw;
  std::vector<int64_t> dilation;  // [S]: d_s of output scale s (b^s in the layer)
};

// y = the convolution above (y is overwritten).
void scale_conv_forward(const ScaleConvShape& g, const float* x, const float* w, const float* b, float* y);
// dx += dL/dx, dw += dL/dw, db += dL/db given dy = dL/dy; any of dx, dw, db may be null (skipped). x is needed only
// for dw, w only for dx.
void scale_conv_backward(const ScaleConvShape& g, const float* x, const float* w, const float* dy, float* dx,
                         float* dw, float* db);

// The definition, one output element at a time (double accumulators), and its backward by the same loops.
void scale_conv_forward_reference(const ScaleConvShape& g, const float* x, const float* w, const float* b, float* y);
void scale_conv_backward_reference(const ScaleConvShape& g, const float* x, const float* w, const float* dy,
                                   float* dx, float* dw, float* db);

}  // namespace eq
