// equilab — reductions: sum, mean, max over any set of axes.
#pragma once
#include <vector>

#include "engine/tensor.h"

namespace eq {

Tensor sum(const Tensor& x);   // all elements -> shape []
Tensor mean(const Tensor& x);  // all elements -> shape []
Tensor sum(const Tensor& x, std::vector<int> axes, bool keepdim = false);
Tensor mean(const Tensor& x, std::vector<int> axes, bool keepdim = false);
// Max along one axis; the gradient flows to the first maximal element.
Tensor max(const Tensor& x, int axis, bool keepdim = false);
Tensor min(const Tensor& x, int axis, bool keepdim = false);
// Index of the maximum along the last axis of a [N, C] tensor (no gradient): predicted classes.
std::vector<int> argmax_rows(const Tensor& x);

}  // namespace eq
