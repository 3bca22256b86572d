// equilab — 2-D convolution (cross-correlation, as in PyTorch) by im2col + sgemm.
#pragma once
#include "engine/shape_ops.h"
#include "engine/tensor.h"

namespace eq {

struct Conv2dOptions {
  int stride_h = 1, stride_w = 1;
  int pad_h = 0, pad_w = 0;
  int dilation_h = 1, dilation_w = 1;
  int groups = 1;
  PadMode pad_mode = PadMode::Zeros;
};

// x [N, Cin, H, W], w [Cout, Cin/groups, kh, kw], b [Cout] or undefined -> [N, Cout, Ho, Wo],
// Ho = (H + 2 pad_h - dilation_h (kh - 1) - 1) / stride_h + 1.
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dOptions& opt);
// Direct seven-loop convolution, same semantics, for tests.
Tensor conv2d_reference(const Tensor& x, const Tensor& w, const Tensor& b, const Conv2dOptions& opt);

}  // namespace eq
