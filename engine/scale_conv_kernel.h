// equilab — the raw kernels of the scale convolution (layers/scale_conv.h): forward and backward on plain float
// arrays, with no copy of the scale windows and no stacking of per-scale outputs. The naive loops are kept next
// to the fast ones (llm.c style) so tests can compare every direction.
//
//   x [N, Cin, S, H, W], w [Cout, Cin, Ks, kh, kw] (kh, kw odd), b [Cout] or null -> y [N, Cout, S, H, W]
//   y[n, o, s] = b[o] + sum_{j < min(Ks, S - s)} sum_c conv2d(x[n, c, s + j], w[o, c, j], dilation d_s,
//                                                             zero padding d_s (k/2))
//
// Fast path, per sample (OpenMP over the batch) and per run of output scales with the same number of terms m:
//   col [Cin*m*kh*kw, tile]  = taps read straight from x[n, :, s .. s+m-1] with dilation d_s (im2col from the
//                              5-D tensor: row (c, j, ki, kj) reads plane (c, s + j))
//   y[n, :, tile]            = W_m [Cout, Cin*m*kh*kw] x col  (one sgemm, row stride S*H*W: written in place)
// A tile is a run of (scale, output row) pairs: in [N, C, S, H, W] the rows of consecutive scales of one channel
// are contiguous, so several scales that share a weight matrix (m = Ks for every s <= S - Ks) form ONE wider GEMM.
// W_m is w itself when m = Ks, else a compact copy of w[:, :, :m] (the top scales: the zero padding of the scale
// axis is skipped, not multiplied).
// Backward:
//   db += sums of dy;  dW_m += dy[n, :, tile] x col^T (col recomputed; per-thread partials, summed in thread order
//   after the loop, then scattered into dw);
//   dx: per output scale s, the gradient of its window x[:, :, s .. s+m-1] is one transposed convolution of
//   dy[:, :, s] (dilation d_s, weight flipped and channel-swapped: [Cin*m, Cout*kh*kw]), tiled the same way; its
//   Cin*m rows are added into the m input scales (no col2im; threads own whole samples, so no races).
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
