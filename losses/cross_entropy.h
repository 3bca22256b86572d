// equilab — cross-entropy of class logits, fused with log-softmax.
//
// One op, not a chain of small ones: the forward keeps only each row's log-sum-exp, and the backward writes
//     d loss / d logits[i, c] = (softmax(logits)[i, c] - q[i, c]) / N
// directly, with q the target distribution: one-hot, or (1 - s) one-hot + s / C with label smoothing s
// (PyTorch's definition).
#pragma once
#include <vector>

#include "engine/tensor.h"

namespace eq {

// logits [N, C], labels N values in [0, C) -> scalar mean over the batch of -sum_c q[i, c] log softmax(logits)[i, c].
Tensor cross_entropy(const Tensor& logits, const std::vector<int>& labels, float label_smoothing = 0);

// Fraction of rows whose largest logit is at the label (first maximum on ties). No gradient.
double accuracy(const Tensor& logits, const std::vector<int>& labels);

}  // namespace eq
