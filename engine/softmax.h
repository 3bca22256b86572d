// equilab — softmax, log-softmax and log-sum-exp along any axis, computed stably (max subtracted first).
//
// Kernels see the input as [outer, n, inner] with n the softmax axis. A slice that is all -inf gives
// logsumexp = -inf and log_softmax/softmax = nan, as in PyTorch.
#pragma once
#include "engine/tensor.h"

namespace eq {

Tensor softmax(const Tensor& x, int axis);
Tensor log_softmax(const Tensor& x, int axis);
Tensor logsumexp(const Tensor& x, int axis, bool keepdim = false);

}  // namespace eq
