// equilab — translations of images and feature maps, one shift per sample: integer (exact) or sub-pixel.
//
// Convention (torch.roll's): shifting by (dy, dx) moves content DOWN by dy rows and RIGHT by dx columns,
//     out[n, ..., i + dy, j + dx] = x[n, ..., i, j].
// Two borders: Circular wraps around (roll; a circular-padding conv commutes with it exactly) and Zeros lets content
// leave the canvas and fills the vacated border with 0 (what a real camera shift with a black background does).
// Tensors are [N, ..., H, W] (rank >= 3): [N, C, H, W] images, [N, C, 4, H, W] p4 maps, [N, C, S, H, W] scale maps;
// every plane of sample n moves by that sample's shift. All functions are differentiable in x.
#pragma once
#include <string>
#include <vector>

#include "engine/rng.h"
#include "engine/tensor.h"

namespace eq {

enum class ShiftPadding { Circular, Zeros };
const char* shift_padding_name(ShiftPadding padding);        // "circular", "zeros"
ShiftPadding parse_shift_padding(const std::string& name);   // inverse of the above; throws on anything else

// Integer shifts, exact. dy, dx have one entry per sample (length N). Circular is eq::roll; Zeros copies rows.
Tensor translate_int(const Tensor& x, const std::vector<int>& dy, const std::vector<int>& dx, ShiftPadding padding);
// Zeros padding one element at a time, for tests.
Tensor translate_int_reference(const Tensor& x, const std::vector<int>& dy, const std::vector<int>& dx);

// Real-valued shifts in pixels, bilinear between the two neighbouring integer shifts on each axis. When every shift
// is an integer this is translate_int (exact). Otherwise:
//   Zeros     affine_grid (a pure translation, align_corners = false) + grid_sample (bilinear, zeros outside);
//             float rounding of the grid coordinates costs ~1e-6 relative.
//   Circular  (1 - f) roll(x, k) + f roll(x, k + 1) along each axis, k = floor(d), f = d - k — exactly the bilinear
//             interpolation of the periodic image (grid_sample has no circular border).
Tensor translate(const Tensor& x, const std::vector<float>& dy, const std::vector<float>& dx, ShiftPadding padding);

// One integer shift per sample, each coordinate uniform in [-max_shift, max_shift].
struct Shifts {
  std::vector<int> dy, dx;
};
Shifts random_shifts(int64_t n, int max_shift, Rng& rng);

// x shifted by random_shifts(N, max_shift, rng); `drawn` (optional) receives the shifts used.
Tensor random_translate(const Tensor& x, int max_shift, ShiftPadding padding, Rng& rng, Shifts* drawn = nullptr);

// The shift that a shift of `shift` pixels on an axis of `input_size` becomes on a feature map of `feature_size`
// computed from it: shift * ratio, with ratio = 1 / round(input_size / feature_size) when the map is smaller (its
// stride product: 28 -> 14 and 28 -> 13 are both stride 2), round(feature_size / input_size) when larger (an
// upsampling decoder) and 1 when equal. Inferring the stride from sizes is exact for "same"-padded layers; after
// unpadded ("valid") convolutions the size ratio only approximates it.
float shift_at_resolution(float shift, int64_t input_size, int64_t feature_size);

}  // namespace eq
