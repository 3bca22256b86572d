// equilab — anti-aliased downsampling (Zhang, "Making Convolutional Networks Shift-Invariant Again", ICML 2019):
// a depthwise binomial low-pass filter followed by subsampling, fused in one separable strided kernel.
//
// Why: a stride-s subsampling keeps only the pixels on one lattice, so a 1-pixel shift of the input can change the
// output completely (aliasing). Blurring first removes most of the frequencies that alias, so the output changes
// smoothly with the shift. The blur is fixed (not learnt) and acts on every [H, W] plane on its own.
//
// Taps (REFERENCES.md section 1): row k-1 of Pascal's triangle, [1], [1,1], [1,2,1], [1,3,3,1], ... up to k = 7; the
// 2-D filter is the outer product, normalised to sum 1. Before the strided blur the plane is padded by
//   top/left = floor((k-1)/2),  bottom/right = ceil((k-1)/2)
// (asymmetric for even k), so Ho = ceil(H / stride) whatever k is, and k = 1 is plain subsampling x[::s, ::s].
#pragma once
#include <vector>

#include "engine/shape_ops.h"
#include "engine/tensor.h"

namespace eq {

// The 1-D binomial taps of length filter_size (1..7), normalised to sum 1: 3 -> [1/4, 1/2, 1/4].
std::vector<float> binomial_taps(int filter_size);

// Padding before / after the blur along each axis: floor((k-1)/2) and ceil((k-1)/2).
inline int blur_pad_before(int filter_size) { return (filter_size - 1) / 2; }
inline int blur_pad_after(int filter_size) { return filter_size / 2; }

// x [..., H, W] (rank >= 2) -> [..., ceil(H/stride), ceil(W/stride)]:
//   out[i, j] = sum_{a,b} t[a] t[b] x[pad(i*stride + a - before), pad(j*stride + b - before)]
// with t = binomial_taps(filter_size) and `pad` the border rule (shape_ops.h). Reflect needs the after-pad to be
// smaller than H and W (as PyTorch's ReflectionPad2d); Circular makes the op commute with shifts by multiples of
// the stride. Differentiable in x.
Tensor blur_pool2d(const Tensor& x, int filter_size = 4, int stride = 2, PadMode pad = PadMode::Reflect);
// The 2-D filter applied directly, one output element at a time (no separability, no index tables): for tests.
Tensor blur_pool2d_reference(const Tensor& x, int filter_size, int stride, PadMode pad);

}  // namespace eq
