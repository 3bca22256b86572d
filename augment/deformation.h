// equilab — smooth deformations D_tau x(p) = x(p - tau(p)) and the size of their gradient ||grad tau||.
//
// Mallat's deformation-stability bound reads ||f(x) - f(D_tau x)|| <~ C ||grad tau|| ||x||: a model is stable when
// the change it sees grows with how far tau is from a constant shift, not with the size of the shift. The lecture
// (sources/001) states it as ||f(x) - f(D_tau x)|| ~ ||grad tau||; apps plot the ratio against ||grad tau||.
//
// A displacement field tau is [N, H, W, 2] in PIXEL units, (tau_x, tau_y) per pixel in grid_sample's order (x along
// W, y along H). The content at p moves (approximately, for small tau) to p + tau(p).
#pragma once
#include <vector>

#include "engine/resample.h"
#include "engine/rng.h"
#include "engine/tensor.h"

namespace eq {

// ||grad tau|| of each sample: the maximum over pixels of the Frobenius norm of the 2x2 Jacobian
// d tau_a / d p_b in pixel units (central differences inside, one-sided at the border, 0 along a size-1 axis).
// A constant field (a translation) has norm 0; the norm is linear in the field's amplitude; for small tau the
// deformation is a local affine map I - grad tau, so 0.1 means ~10% local stretch/shear/rotation. Data only.
std::vector<float> displacement_gradient_norm(const Tensor& tau);

// Random smooth fields: white noise N(0, 1) per component, Gaussian-blurred with std `smoothness` pixels (reflect
// border), then scaled per sample so that displacement_gradient_norm is exactly `max_gradient_norm` (0 gives the
// zero field). Larger smoothness = lower spatial frequency = larger displacements for the same gradient norm.
Tensor smooth_random_field(int64_t n, int64_t h, int64_t w, float smoothness, float max_gradient_norm, Rng& rng);

// x [N, ..., H, W] (rank >= 3; middle axes deform alike) warped by tau [N, H, W, 2]:
// out(p) = x(p - tau(p)), sampled with grid_sample's options (default bilinear, zeros outside; align_corners must
// stay false, the convention in which p's pixel centre is converted). Differentiable in x and in tau.
Tensor deform(const Tensor& x, const Tensor& tau, const GridSampleOptions& opt = {});

}  // namespace eq
