// equilab — parameter initialisers, in place, with PyTorch's formulas (torch.nn.init).
//
// Fans come from the shape: a weight [out, in] or [out, in, k1, k2, ...] has
//     fan_in = in * k1 * k2 * ...,   fan_out = out * k1 * k2 * ...
// (a grouped conv's weight [out, in / groups, kh, kw] gives the per-group fan, as in PyTorch).
//     kaiming_uniform_: U(-b, b),  b = gain * sqrt(3 / fan)       kaiming_normal_: N(0, (gain / sqrt(fan))^2)
//     xavier_uniform_:  U(-b, b),  b = gain * sqrt(6 / (fan_in + fan_out))
//     xavier_normal_:   N(0, gain^2 * 2 / (fan_in + fan_out))
// PyTorch's default for Linear and Conv weights is kaiming_uniform_(w, rng, sqrt(5)), i.e. U(-1/sqrt(fan_in),
// 1/sqrt(fan_in)). Values are drawn serially from `rng`, so a seed reproduces them exactly. Only leaf tensors
// (parameters, buffers) can be initialised; each function returns its argument.
#pragma once
#include <cstdint>

#include "engine/rng.h"
#include "engine/tensor.h"

namespace eq {

enum class FanMode { FanIn, FanOut };
enum class Nonlinearity { Linear, Sigmoid, Tanh, Relu, LeakyRelu };

struct Fans {
  int64_t fan_in, fan_out;
};
// Needs at least 2 axes, like PyTorch; names the shape otherwise.
Fans compute_fans(const Shape& shape, const char* op = "compute_fans");

// linear/sigmoid 1, tanh 5/3, relu sqrt(2), leaky_relu sqrt(2 / (1 + negative_slope^2)).
float calculate_gain(Nonlinearity nonlinearity, float negative_slope = 0.01f);

// `a` is the negative slope used when nonlinearity is LeakyRelu (with a = 0 the gain is relu's sqrt(2)).
Tensor& kaiming_uniform_(Tensor& t, Rng& rng, float a = 0, FanMode mode = FanMode::FanIn,
                         Nonlinearity nonlinearity = Nonlinearity::LeakyRelu);
Tensor& kaiming_normal_(Tensor& t, Rng& rng, float a = 0, FanMode mode = FanMode::FanIn,
                        Nonlinearity nonlinearity = Nonlinearity::LeakyRelu);
Tensor& xavier_uniform_(Tensor& t, Rng& rng, float gain = 1);
Tensor& xavier_normal_(Tensor& t, Rng& rng, float gain = 1);
Tensor& uniform_(Tensor& t, Rng& rng, float lo = 0, float hi = 1);  // [lo, hi)
Tensor& normal_(Tensor& t, Rng& rng, float mean = 0, float std = 1);
Tensor& zeros_(Tensor& t);
Tensor& constant_(Tensor& t, float value);

}  // namespace eq
