// equilab — ops that move values without arithmetic: reshape, permute, slice, concat, pad.
//
// Kernels see the input as [outer, n, inner] around the axis they act on and copy whole inner runs; permute first
// merges axes that stay adjacent. Backward passes accumulate: pad's backward adds every output cell that a
// Reflect/Replicate/Circular border read from an input cell back onto that cell.
#pragma once
#include <string>
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

// Which cell of an axis of `size` cells the padded coordinate i (any integer: < 0 or >= size is in the border)
// reads from, or -1 for a Zeros border. Reflect and Circular are periodic, so any i is valid (size >= 1); ops that
// follow PyTorch (pad, pad2d) additionally limit the pad width. For kernels that pad on the fly (conv, pooling).
int64_t pad_source_index(int64_t i, int64_t size, PadMode mode);

Tensor reshape(const Tensor& x, Shape shape);  // shares storage; one axis may be -1
Tensor flatten(const Tensor& x, int start_axis = 1);  // axes start_axis.. merged into one
Tensor unsqueeze(const Tensor& x, int axis);          // axis in [-(rank+1), rank]
Tensor squeeze(const Tensor& x, int axis);            // the axis must have size 1
Tensor permute(const Tensor& x, std::vector<int> order);  // output axis k is input axis order[k]
Tensor transpose(const Tensor& x, int axis_a, int axis_b);
// Elements start, start+step, ... < end along `axis` (negative start/end count from the end; out-of-range
// start/end are clamped as in Python; step >= 1).
Tensor slice(const Tensor& x, int axis, int64_t start, int64_t end, int64_t step = 1);
Tensor concat(const std::vector<Tensor>& xs, int axis);
Tensor stack(const std::vector<Tensor>& xs, int axis);  // axis in [-(rank+1), rank] of the inputs
// Pads the last two axes ([..., H, W]) by top/bottom/left/right with the given mode (value for Zeros is 0).
Tensor pad2d(const Tensor& x, int64_t top, int64_t bottom, int64_t left, int64_t right, PadMode mode);
// Pads one axis.
Tensor pad(const Tensor& x, int axis, int64_t before, int64_t after, PadMode mode);

// Naive references for tests: one output element at a time through a full multi-index (no gradient).
Tensor permute_reference(const Tensor& x, const std::vector<int>& order);
Tensor pad_reference(const Tensor& x, int axis, int64_t before, int64_t after, PadMode mode);

}  // namespace eq
