// equilab — softmax, log-softmax and log-sum-exp along any axis, computed stably (max subtracted first).
#pragma once
#include "engine/tensor.h"

namespace eq {

Tensor softmax(const Tensor& x, int axis);
Tensor log_softmax(const Tensor& x, int axis);
Tensor logsumexp(const Tensor& x, int axis, bool keepdim = false);

}  // namespace eq
