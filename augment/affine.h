// equilab — affine warps in normalised coordinates, and FMICON's random affine augmentation.
//
// theta [N, 2, 3] maps OUTPUT normalised coordinates (x, y, 1) to INPUT ones, as affine_grid (engine/resample.h):
// out(p) = x(theta p). Coordinates are normalised with align_corners = false, so the image is the square [-1, 1]^2
// whatever its resolution: the same theta warps a 64x64 image and its 16x16 feature map consistently, which is
// what "warp the input, unwarp the feature map" needs. On a non-square canvas a rotation in these coordinates is
// stretched by the aspect ratio (use rotation.h for true rotations).
#pragma once
#include "engine/resample.h"
#include "engine/rng.h"
#include "engine/tensor.h"

namespace eq {

// [N, 2, 3] identity transforms.
Tensor identity_theta(int64_t n);
// The inverse of each 2x3 affine map seen as a 3x3 matrix with last row (0, 0, 1). Data only (no gradient).
// Throws naming the sample when a 2x2 part is singular (|det| < 1e-12).
Tensor invert_affine(const Tensor& theta);

// x [N, ..., H, W] (rank >= 3; middle axes are warped alike) -> same shape, out(p) = x(theta[n] p) with
// grid_sample's options (default bilinear, zeros outside, align_corners = false). Differentiable in x and theta.
Tensor warp_affine(const Tensor& x, const Tensor& theta, const GridSampleOptions& opt = {});

// One random affine warp per sample and its inverse. warp() applies theta to an input batch; unwarp() applies the
// inverse to anything computed from it at any resolution (feature maps [N, C, h, w], p4 maps [N, C, 4, h, w]), so
// unwarp(f(warp(x))) is f(x) for a warp-equivariant f, up to interpolation and the content lost at the borders.
struct AffineWarp {
  Tensor theta;          // [N, 2, 3]
  Tensor inverse_theta;  // [N, 2, 3]
  Tensor warp(const Tensor& x) const { return warp_affine(x, theta); }
  Tensor unwarp(const Tensor& y) const { return warp_affine(y, inverse_theta); }
};

// FMICON's augmentation: theta = [I | 0] + sigma * N(0, 1) on all six entries; with probability
// inverse_probability the sample uses theta^-1 instead (so zooms in and out, and both rotation senses, are equally
// likely). sigma 0.05 is the reference value.
AffineWarp random_affine(int64_t n, Rng& rng, float sigma = 0.05f, float inverse_probability = 0.5f);

}  // namespace eq
