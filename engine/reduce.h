// equilab — reductions: sum, mean, max over any set of axes.
//
// Kernels see the input as [outer, reduced, inner] blocks: adjacent reduced axes merge into one, and a set of axes
// that is not one contiguous run is reduced one run at a time (last run first). Sums accumulate in double.
#pragma once
#include <vector>

#include "engine/tensor.h"

namespace eq {

Tensor sum(const Tensor& x);   // all elements -> shape []
Tensor mean(const Tensor& x);  // all elements -> shape []
// Negative axes count from the end; the list must be non-empty and without repeats.
Tensor sum(const Tensor& x, std::vector<int> axes, bool keepdim = false);
Tensor mean(const Tensor& x, std::vector<int> axes, bool keepdim = false);
// Max along one axis; the gradient flows to the first maximal element. NaN wins (it propagates, as in PyTorch).
Tensor max(const Tensor& x, int axis, bool keepdim = false);
Tensor min(const Tensor& x, int axis, bool keepdim = false);
// Index of the maximum along the last axis of a [N, C] tensor (no gradient): predicted classes.
std::vector<int> argmax_rows(const Tensor& x);

// Sum of n contiguous floats with eight independent accumulators (the compiler vectorises it; one running sum is
// one dependent add per element). For kernels' bias gradients; float accumulation, unlike the ops above.
float contiguous_sum(const float* __restrict p, int64_t n);

// Naive reference for tests: one pass over every input element with a full multi-index (no gradient).
Tensor sum_reference(const Tensor& x, std::vector<int> axes, bool keepdim = false);

}  // namespace eq
