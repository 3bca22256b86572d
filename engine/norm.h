// equilab — batch normalisation and dropout.
#pragma once
#include "engine/rng.h"
#include "engine/tensor.h"

namespace eq {

// x [N, C] or [N, C, H, W] (any trailing axes); statistics per channel C over all other axes.
// training: normalise with batch statistics and update running_mean/var in place (momentum as PyTorch:
// running = (1 - momentum) running + momentum batch, unbiased variance for the running estimate).
// eval: normalise with the running statistics. gamma/beta [C] (may be undefined: affine off).
Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& running_mean, Tensor& running_var,
                  bool training, float momentum = 0.1f, float eps = 1e-5f);

// Inverted dropout: in training zeroes each value with probability p and scales the rest by 1/(1-p).
Tensor dropout(const Tensor& x, float p, bool training, Rng& rng);

}  // namespace eq
