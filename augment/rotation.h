// equilab — rotations of images and feature maps: exact quarter turns (plain and p4) and arbitrary angles.
//
// Angles are counter-clockwise as the image is displayed (row 0 at the top), the sense of eq::rot90, about the
// image centre ((H - 1) / 2, (W - 1) / 2 in pixel coordinates).
#pragma once
#include "engine/resample.h"
#include "engine/tensor.h"

namespace eq {

// The action of a rotation by k * 90 degrees on a p4 feature map y [N, C, 4, H, W] (Cohen & Welling): every map is
// rotated by rot90(., k) and the rotation axis shifts cyclically by k, out[:, :, r] = rot90(y[:, :, r - k], k).
// A p4-equivariant layer L satisfies L(rot90(x, k)) = rotate_p4(L(x), k). Differentiable.
Tensor rotate_p4(const Tensor& y, int k);

// [N, 2, 3] thetas (affine_grid, align_corners = false) rotating an H x W canvas by `degrees` about its centre in
// pixel units (the aspect ratio is accounted for, so a non-square image rotates rigidly).
Tensor rotation_theta(int64_t n, float degrees, int64_t h, int64_t w);

// x [N, ..., H, W] (rank >= 3) rotated by `degrees` about the centre, canvas kept: bilinear (or nearest), zeros
// outside. On a square canvas rotate(x, 90) equals rot90(x, 1) up to interpolation rounding (~1e-5). Differentiable.
Tensor rotate(const Tensor& x, float degrees, SampleMode mode = SampleMode::Bilinear);

}  // namespace eq
