// equilab — Warp: an input transform together with its inverse on the output side (feature maps).
//
// FMICON trains with "warp -> network -> unwarp": the network sees a warped image and its feature map is mapped
// back to the original frame, so that features of different augmentations line up pixel by pixel. A Warp carries
// both halves. `inverse` acts on what the network computes from the warped batch, which may have other channels
// and (for the factories that say so) another resolution.
#pragma once
#include <functional>
#include <string>

#include "augment/affine.h"
#include "augment/shift.h"
#include "engine/resize.h"
#include "engine/tensor.h"

namespace eq {

using TensorMap = std::function<Tensor(const Tensor&)>;

struct Warp {
  std::string name;  // "roll", "affine", "rot90(1)", ...: for logs and errors
  TensorMap apply;    // on the input batch [N, C, H, W]
  TensorMap inverse;  // on feature maps computed from apply(x); empty when the warp has no inverse
  bool has_inverse() const { return static_cast<bool>(inverse); }
};

// Per-sample integer shifts of an input of size h x w. The inverse shifts a feature map back by the shift scaled to
// its resolution (shift_at_resolution; sub-pixel when the stride does not divide the shift).
Warp shift_warp(const Shifts& shifts, ShiftPadding padding, int64_t h, int64_t w);
// warp() / unwarp() of an AffineWarp; any resolution (normalised coordinates).
Warp affine_warp(const AffineWarp& warp);
// rot90(x, k); the inverse rotates back by -k, as rotate_p4 on p4 maps [N, C, 4, h, w], as rot90 otherwise.
Warp rot90_warp(int k);
// rotate(x, degrees); the inverse is rotate(., -degrees) at any resolution (content rotated out of the canvas is lost).
Warp rotation_warp(float degrees);
// rescale_about_center(x, factor); the inverse rescales by 1 / factor at any resolution (content cropped by an
// enlargement is lost, a shrunk image comes back blurred).
Warp rescale_warp(float factor, ResizeMode mode = ResizeMode::Bilinear);
// first, then second: apply = second.apply(first.apply(x)), inverse = first.inverse(second.inverse(y)).
Warp compose(const Warp& first, const Warp& second);

// FMICON's augmentation for a batch of n images h x w: random_affine(sigma, inverse with probability 0.5), then a
// circular roll by a uniform random amount in [0, h) rows and [0, w) columns per sample.
Warp fmicon_warp(int64_t n, int64_t h, int64_t w, Rng& rng, float sigma = 0.05f);

}  // namespace eq
