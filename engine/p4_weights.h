// equilab — the p4 filter banks (Cohen & Welling, ICML 2016; REFERENCES.md section 5), expanded so that a whole
// group convolution is ONE ordinary conv2d.
//
// p4 = translations and rotations by multiples of 90 degrees. A p4 feature map is [N, C, 4, H, W]: axis 2 is the
// rotation r of the filter that produced it. Viewed as [N, C*4, H, W] (channel c*4 + r), a p4 layer is a plain
// convolution whose filter bank is built from the base filters by rotating (eq::rot90, counter-clockwise) and, for
// p4 -> p4, cyclically shifting the input-rotation axis:
//   lifting   bank[co*4 + r, ci]          = rot90(w[co, ci], r)                  w [Cout, Cin, k, k]
//   group     bank[co*4 + r, ci*4 + s]    = rot90(w[co, ci, (s - r) mod 4], r)   w [Cout, Cin, 4, k, k]
// Why this is equivariant: rotating the input rotates every response by 90 degrees and turns "filter rotated by
// r-1" into "filter rotated by r", so the output's rotation axis shifts by one (out'[:, :, r] = rot90(out[:, :, r-1])).
// The expansions are gathers: every bank entry copies one base weight, every base weight appears 4 times (lifting)
// or 16 times (group), and the backward adds those copies' gradients back onto it.
#pragma once
#include "engine/tensor.h"

namespace eq {

// w [Cout, Cin, k, k] -> [Cout*4, Cin, k, k]. Differentiable in w.
Tensor p4_lift_weights(const Tensor& w);
// w [Cout, Cin, 4, k, k] -> [Cout*4, Cin*4, k, k]. Differentiable in w.
Tensor p4_group_weights(const Tensor& w);
// b [Cout] -> [Cout*4]: one bias per base filter, shared by its 4 rotations. Differentiable in b.
Tensor p4_expand_bias(const Tensor& b);

// The same banks composed from rot90, slice and concat (differentiable through those ops): for tests.
Tensor p4_lift_weights_reference(const Tensor& w);
Tensor p4_group_weights_reference(const Tensor& w);

}  // namespace eq
