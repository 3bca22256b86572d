// equilab — elementwise ops: arithmetic with NumPy broadcasting, and unary functions (activations and math).
//
// Broadcasting follows NumPy: shapes are aligned at the last axis; an axis of size 1 (or a missing leading axis)
// stretches to match. The backward of a broadcast input sums the output gradient over the stretched axes.
#pragma once
#include "engine/tensor.h"

namespace eq {

// The broadcast result shape of a and b, or an error naming `op` and both shapes.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

// Accumulates grad (shaped `from`) into out (shaped `to`), summing over the axes that broadcasting stretched.
// `to` must broadcast to `from`. Used by every op whose input was broadcast.
void sum_to_shape_accumulate(const float* grad, const Shape& from, const Shape& to, float* out);

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, float s);
Tensor mul(const Tensor& a, float s);
Tensor neg(const Tensor& a);

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator+(const Tensor& a, float s) { return add(a, s); }
inline Tensor operator-(const Tensor& a, float s) { return add(a, -s); }
inline Tensor operator*(const Tensor& a, float s) { return mul(a, s); }
inline Tensor operator/(const Tensor& a, float s) { return mul(a, 1.0f / s); }
inline Tensor operator*(float s, const Tensor& a) { return mul(a, s); }
inline Tensor operator+(float s, const Tensor& a) { return add(a, s); }
inline Tensor operator-(const Tensor& a) { return neg(a); }

// Activations. gelu is the exact (erf) form, as PyTorch's default.
Tensor relu(const Tensor& x);
Tensor leaky_relu(const Tensor& x, float negative_slope = 0.01f);
Tensor gelu(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);

// Math. log and sqrt of non-positive values give -inf/nan as in IEEE arithmetic; callers add their own epsilon.
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor pow(const Tensor& x, float exponent);
Tensor abs(const Tensor& x);
Tensor square(const Tensor& x);

}  // namespace eq
