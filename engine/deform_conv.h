// equilab — deformable convolution v1 (Dai et al. 2017) and v2 (Zhu et al. 2019), torchvision semantics.
//
// A 3x3 convolution reads its 9 taps at fixed places around each output pixel; a deformable one moves every tap
// by a learnt fractional offset (dy, dx), read by bilinear interpolation, and (v2) scales it by a learnt mask m:
//
//   y = yo*stride_h - pad_h + i*dilation_h + dy,   x = xo*stride_w - pad_w + j*dilation_w + dx
//   out[n, o, yo, xo] = bias[o] + sum_{c, i, j} w[o, c, i, j] * m * bilinear(input[n, c], y, x)
//
// bilinear() is 0 when y <= -1 or y >= H (same for x); inside that range neighbours outside the image count as 0.
// Offsets and masks are per output pixel and per tap, shared by the input channels of one "offset group":
//   offset [N, 2*G*kh*kw, Ho, Wo]: channel g*2*kh*kw + 2k is dy and +1 is dx for tap k = i*kw + j of group g;
//   mask   [N, G*kh*kw, Ho, Wo]:   channel g*kh*kw + k.
// Input channels split into G contiguous offset groups (independently of the weight's `groups`).
// Gradients flow to input, offset, mask, weight and bias.
#pragma once
#include "engine/tensor.h"

namespace eq {

struct DeformConv2dOptions {
  int stride_h = 1, stride_w = 1;
  int pad_h = 0, pad_w = 0;  // zero padding only (it is what "out-of-image neighbours count zero" means)
  int dilation_h = 1, dilation_w = 1;
  int groups = 1;         // weight groups, as in conv2d: w is [Cout, Cin/groups, kh, kw]
  int offset_groups = 1;  // G above; Cin must be divisible by it
};

// x [N, Cin, H, W], offset [N, 2*G*kh*kw, Ho, Wo], w [Cout, Cin/groups, kh, kw], b [Cout] or undefined,
// mask [N, G*kh*kw, Ho, Wo] or undefined (v1: m = 1) -> [N, Cout, Ho, Wo],
// Ho = (H + 2 pad_h - dilation_h (kh - 1) - 1) / stride_h + 1 (Wo likewise).
// Fast path: a "deformable im2col" (columns [Cin*kh*kw, Ho*Wo] per sample) followed by one sgemm per sample and
// weight group; OpenMP over the batch.
Tensor deform_conv2d(const Tensor& x, const Tensor& offset, const Tensor& w, const Tensor& b, const Tensor& mask,
                     const DeformConv2dOptions& opt);

// Direct loops over (n, o, yo, xo, c, i, j), same semantics and the same autograd inputs, for tests. Slow.
Tensor deform_conv2d_reference(const Tensor& x, const Tensor& offset, const Tensor& w, const Tensor& b,
                               const Tensor& mask, const DeformConv2dOptions& opt);

}  // namespace eq
