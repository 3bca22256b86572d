// equilab — ops that move values without arithmetic: reshape, permute, slice, concat, pad.
#pragma once
#include <vector>

#include "engine/tensor.h"

namespace eq {

// How values beyond the border are made up (padding, convolution, pooling, resampling):
//   Zeros      0 ... | a b c | ... 0
//   Reflect    c b | a b c | b a        (mirror without repeating the edge; needs pad < size)
//   Replicate  a a | a b c | c c
//   Circular   b c | a b c | a b        (wraps around: the padding that makes convolution commute with roll)
enum class PadMode { Zeros, Reflect, Replicate, Circular };
const char* pad_mode_name(PadMode mode);
PadMode parse_pad_mode(const std::string& name);  // "zeros", "reflect", "replicate", "circular"

Tensor reshape(const Tensor& x, Shape shape);  // shares storage; one axis may be -1
Tensor flatten(const Tensor& x, int start_axis = 1);
Tensor unsqueeze(const Tensor& x, int axis);
Tensor squeeze(const Tensor& x, int axis);
Tensor permute(const Tensor& x, std::vector<int> order);
Tensor transpose(const Tensor& x, int axis_a, int axis_b);
// Elements start, start+step, ... < end along `axis` (negative start/end count from the end).
Tensor slice(const Tensor& x, int axis, int64_t start, int64_t end, int64_t step = 1);
Tensor concat(const std::vector<Tensor>& xs, int axis);
Tensor stack(const std::vector<Tensor>& xs, int axis);
// Pads the last two axes ([..., H, W]) by top/bottom/left/right with the given mode (value for Zeros is 0).
Tensor pad2d(const Tensor& x, int64_t top, int64_t bottom, int64_t left, int64_t right, PadMode mode);
// Pads one axis.
Tensor pad(const Tensor& x, int axis, int64_t before, int64_t after, PadMode mode);

}  // namespace eq
