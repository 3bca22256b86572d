// equilab — separable, depthwise Gaussian blur of [..., H, W] (every plane blurred on its own).
//
// The kernel is the SAMPLED Gaussian, g[k] = exp(-k^2 / (2 sigma^2)) for k = -radius .. radius, normalised to sum 1
// — not Lindeberg's discrete Gaussian (modified Bessel functions, REFERENCES.md section 2). For sigma >= ~0.8 the
// two agree closely; for small sigma the sampled one is too narrow (its variance is below sigma^2), so scale-space
// code that needs exact semigroup behaviour at tiny scales should keep that in mind.
#pragma once
#include <vector>

#include "engine/shape_ops.h"
#include "engine/tensor.h"

namespace eq {

// Default radius: ceil(3 sigma), which keeps all but ~0.3% of the mass.
int gaussian_radius(float sigma);

// The 1-D kernel, length 2 radius + 1, centre at index radius, summing to 1. sigma = 0 gives the delta [.., 0, 1,
// 0, ..] whatever the radius. radius < 0 means gaussian_radius(sigma). Throws for sigma < 0, non-finite or
// absurdly large (> 2^20) sigma.
std::vector<float> gaussian_kernel1d(float sigma, int radius = -1);

// x [..., H, W] (rank >= 2) -> same shape; out = blur along H of blur along W, with `pad` deciding what lies
// beyond the border (shape_ops.h): Zeros loses mass near the edges, Circular keeps it and commutes with roll,
// Reflect mirrors repeatedly (any radius works; a size-1 axis reads its single value), Replicate repeats the edge.
// sigma = 0 is the identity (still differentiable). Differentiable in x.
Tensor gaussian_blur(const Tensor& x, float sigma, int radius = -1, PadMode pad = PadMode::Reflect);

}  // namespace eq
