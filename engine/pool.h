// equilab — max and average pooling over [N, C, H, W].
#pragma once
#include "engine/tensor.h"

namespace eq {

struct Pool2dOptions {
  int kernel_h = 2, kernel_w = 2;
  int stride_h = 2, stride_w = 2;
  int pad_h = 0, pad_w = 0;  // max: padded cells never win; avg: padded cells count as zeros (PyTorch default)
};

Tensor max_pool2d(const Tensor& x, const Pool2dOptions& opt);
Tensor avg_pool2d(const Tensor& x, const Pool2dOptions& opt);
Tensor global_avg_pool2d(const Tensor& x);  // [N, C, H, W] -> [N, C]

}  // namespace eq
