#include "engine/init.h"

#include <cmath>

namespace eq {

namespace {

// Initialising the output of an op would change values its recorded backward still depends on.
void check_leaf(const Tensor& t, const char* op) {
  if (!t.defined()) fail(op, ": the tensor is undefined");
  if (!t.is_leaf()) fail(op, ": tensor ", t.shape(), " is the output of an op; initialise leaf tensors (parameters)");
}

float kaiming_std(const Tensor& t, float a, FanMode mode, Nonlinearity nonlinearity, const char* op) {
  const Fans fans = compute_fans(t.shape(), op);
  const int64_t fan = mode == FanMode::FanIn ? fans.fan_in : fans.fan_out;
  if (fan == 0) return 0.0f;  // a zero axis: the tensor has no elements to draw
  return calculate_gain(nonlinearity, a) / std::sqrt(static_cast<float>(fan));
}

float xavier_std(const Tensor& t, float gain, const char* op) {
  const Fans fans = compute_fans(t.shape(), op);
  if (fans.fan_in + fans.fan_out == 0) return 0.0f;  // a zero axis: the tensor has no elements to draw
  return gain * std::sqrt(2.0f / static_cast<float>(fans.fan_in + fans.fan_out));
}

}  // namespace

Fans compute_fans(const Shape& shape, const char* op) {
  if (shape.size() < 2)
    fail(op, ": fan in and fan out need a weight of shape [out, in, ...], got ", shape, " (", shape.size(), " axes)");
  int64_t receptive = 1;
  for (size_t i = 2; i < shape.size(); ++i) receptive *= shape[i];
  return {shape[1] * receptive, shape[0] * receptive};
}

float calculate_gain(Nonlinearity nonlinearity, float negative_slope) {
  switch (nonlinearity) {
    case Nonlinearity::Linear:
    case Nonlinearity::Sigmoid: return 1.0f;
    case Nonlinearity::Tanh: return 5.0f / 3.0f;
    case Nonlinearity::Relu: return std::sqrt(2.0f);
    case Nonlinearity::LeakyRelu: return std::sqrt(2.0f / (1.0f + negative_slope * negative_slope));
  }
  fail("calculate_gain: unknown nonlinearity");
}

Tensor& uniform_(Tensor& t, Rng& rng, float lo, float hi) {
  check_leaf(t, "uniform_");
  if (!(lo <= hi)) fail("uniform_: lower bound ", lo, " is above upper bound ", hi, " (tensor ", t.shape(), ")");
  float* p = t.data();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = rng.uniform(lo, hi);
  return t;
}

Tensor& normal_(Tensor& t, Rng& rng, float mean, float std) {
  check_leaf(t, "normal_");
  if (!(std >= 0)) fail("normal_: std must be >= 0, got ", std, " (tensor ", t.shape(), ")");
  float* p = t.data();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = mean + std * rng.normal();
  return t;
}

Tensor& constant_(Tensor& t, float value) {
  check_leaf(t, "constant_");
  float* p = t.data();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = value;
  return t;
}

Tensor& zeros_(Tensor& t) { return constant_(t, 0.0f); }

Tensor& kaiming_uniform_(Tensor& t, Rng& rng, float a, FanMode mode, Nonlinearity nonlinearity) {
  check_leaf(t, "kaiming_uniform_");
  const float bound = std::sqrt(3.0f) * kaiming_std(t, a, mode, nonlinearity, "kaiming_uniform_");
  return uniform_(t, rng, -bound, bound);
}

Tensor& kaiming_normal_(Tensor& t, Rng& rng, float a, FanMode mode, Nonlinearity nonlinearity) {
  check_leaf(t, "kaiming_normal_");
  return normal_(t, rng, 0.0f, kaiming_std(t, a, mode, nonlinearity, "kaiming_normal_"));
}

Tensor& xavier_uniform_(Tensor& t, Rng& rng, float gain) {
  check_leaf(t, "xavier_uniform_");
  const float bound = std::sqrt(3.0f) * xavier_std(t, gain, "xavier_uniform_");
  return uniform_(t, rng, -bound, bound);
}

Tensor& xavier_normal_(Tensor& t, Rng& rng, float gain) {
  check_leaf(t, "xavier_normal_");
  return normal_(t, rng, 0.0f, xavier_std(t, gain, "xavier_normal_"));
}

}  // namespace eq
