// equilab — direct convolution micro-kernels for thin layers: stride 1, "same" zero padding d (k/2), dilation d.
//
// Why not im2col + sgemm here: with few output channels (the 16 per scale of a scale convolution, the 16 input
// channels its input gradient writes) a GEMM reuses each gathered column only Cout times, so copying the columns out
// and packing them costs as much as the multiply. These kernels read zero-padded copies of the input planes in
// place and keep blocks of accumulators in vector registers until each sum is complete.
//
//   forward-type   out[r](p) (+)= bias[r] + sum_i sum_{ki, kj} w[r, i, ki, kj] * in_i(y + (ki - kh/2) d,
//                                                                              x + (kj - kw/2) d),  p = (y, x)
//                  (zero outside the plane). Registers hold RB output rows x 2 vectors of consecutive pixels of the
//                  flattened plane, so no lane is wasted at row ends; each input vector loaded feeds RB FMAs.
//   weight-type    dw[r, i, ki, kj] += sum_p g_r(p) * in_i(tap (ki, kj) of p)
//                  (an outer product per pixel: a vector of g over r times each tap, broadcast)
//
// The forward-type kernel is both a convolution (w as is) and the input gradient of one (w spatially flipped and
// channel-swapped, g as the input); the weight-type kernel is the weight gradient. Tests compare both with naive
// loops (tests/test_direct_conv.cpp). Every entry point checks the sizes (positive, odd kernel) and throws eq::Error
// naming itself.
//
// Two padded layouts of a plane [H, W]:
//   flat    (forward-type input, flat_plane() floats): the rows at stride W between ph = d (kh/2) zero rows above
//           and below, plus zero margins before and after. A tap's vector of 16 consecutive pixels is one load;
//           lanes whose tap crosses the left or right edge read the neighbouring row and are masked to zero.
//   framed  (weight-type input, framed_plane() floats): every row framed by pw = d (kw/2) zeros on both sides
//           (stride W + 2 pw) and ph zero rows above and below, so each tap is one scalar read, no mask.
#pragma once
#include <cstdint>

namespace eq {

struct DirectConvShape {
  int64_t H, W;   // output plane = input plane
  int64_t kh, kw; // odd
  int64_t d;      // dilation >= 1
  int64_t pad_h() const { return d * (kh / 2); }
  int64_t pad_w() const { return d * (kw / 2); }
  int64_t flat_plane() const;  // floats of one flat padded plane
  int64_t framed_width() const { return W + 2 * pad_w(); }
  int64_t framed_plane() const { return (H + 2 * pad_h()) * framed_width(); }
};

// dst = src [H, W] in the flat layout (flat_plane() floats, every one written).
void direct_conv_pad_flat(const DirectConvShape& g, const float* src, float* dst);
// dst = src [H, W] in the framed layout (framed_plane() floats, every one written).
void direct_conv_pad_framed(const DirectConvShape& g, const float* src, float* dst);

// w [R, I, kh, kw] -> the layout the forward-type kernel reads ([R, I, kh, kw] regrouped by blocks of rows).
// packed holds R*I*kh*kw floats.
void direct_conv_pack_weight(const DirectConvShape& g, int64_t R, int64_t I, const float* w, float* packed);

// A plane padded in the flat layout of `padded_for` (same plane and kernel, dilation >= g.d) read as g's flat layout:
// the pointer to pass for it. One padded copy then serves every smaller dilation (its extra zero rows and margin are
// never read past).
const float* direct_conv_flat_view(const DirectConvShape& padded_for, const float* plane, const DirectConvShape& g);

// The forward-type kernel for output rows y0 .. y1-1 of every plane: in[i] = input plane i in g's flat layout (a
// plane from direct_conv_pad_flat, or a direct_conv_flat_view of one), i < I; packed from direct_conv_pack_weight;
// out[r] = output plane r [H, W]; bias (R) may be null. accumulate: out += (bias ignored), else out = bias + sum.
// Runs on the calling thread.
void direct_conv_forward(const DirectConvShape& g, const float* const* in, int64_t I, const float* packed, int64_t R,
                         const float* bias, float* const* out, bool accumulate, int64_t y0, int64_t y1);

// The weight-type kernel reads I framed planes (in, one after another) and the output gradient transposed, gt [H*W, padded_rows(R)] (pixel-major, rows padded
// with zeros to whole vectors: direct_conv_transpose_grad from R planes [H, W]), and accumulates into
// acc [I*kh*kw, padded_rows(R)] (acc[(i, ki, kj)][r] += dw[r, i, ki, kj]), so that many calls add up before one
// direct_conv_gather_weight_grad. Runs on the calling thread.
int64_t direct_conv_padded_rows(int64_t R);
void direct_conv_transpose_grad(const DirectConvShape& g, const float* const* grad, int64_t R, float* gt);
void direct_conv_weight_grad(const DirectConvShape& g, const float* in, int64_t I, const float* gt, int64_t R,
                             float* acc);
// dw [R, I, kh, kw] += acc (as above).
void direct_conv_gather_weight_grad(const DirectConvShape& g, const float* acc, int64_t R, int64_t I, float* dw);

}  // namespace eq
