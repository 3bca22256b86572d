// equilab — batch normalisation and dropout.
#pragma once
#include "engine/rng.h"
#include "engine/tensor.h"

namespace eq {

// x [N, C] or [N, C, H, W] (any trailing axes); statistics per channel C over all other axes.
// training: normalise with batch statistics (biased variance) and update running_mean/var in place (momentum as
// PyTorch: running = (1 - momentum) running + momentum batch, unbiased variance for the running estimate).
// eval: normalise with the running statistics. gamma/beta [C] (may be undefined: affine off).
// running_mean/var may both be undefined (PyTorch's track_running_stats=False): batch statistics in both modes.
// Batch statistics need more than one value per channel (N * H * W > 1).
// Gradients flow to x, gamma and beta; the running statistics are buffers and get none.
Tensor batch_norm(const Tensor& x, const Tensor& gamma, const Tensor& beta, Tensor& running_mean, Tensor& running_var,
                  bool training, float momentum = 0.1f, float eps = 1e-5f);

// Inverted dropout: in training zeroes each value with probability p and scales the rest by 1/(1-p); the mask is
// drawn from rng. In eval (or with p = 0) it returns x itself. p outside [0, 1) is an error.
Tensor dropout(const Tensor& x, float p, bool training, Rng& rng);

}  // namespace eq
