// equilab — mean squared error, one fused op: mean over all elements of (a - b)^2.
#pragma once
#include "engine/tensor.h"

namespace eq {

// a and b must have exactly the same shape (no broadcasting: a silent broadcast would hide a shape bug).
// Gradients flow to both inputs: d/da = 2 (a - b) / n, d/db = -2 (a - b) / n.
Tensor mse_loss(const Tensor& a, const Tensor& b);

}  // namespace eq
