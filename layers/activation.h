// equilab — activation and reshaping layers without parameters: ReLU, LeakyReLU, GELU, Tanh, Sigmoid, Flatten.
#pragma once
#include "engine/elementwise.h"
#include "engine/shape_ops.h"
#include "layers/module.h"

namespace eq {

class ReLU : public Module {
 public:
  Tensor forward(const Tensor& x) override { return relu(x); }
  std::string name() const override { return "ReLU"; }
};

class LeakyReLU : public Module {
 public:
  explicit LeakyReLU(float slope = 0.01f) : slope_(slope) {}
  Tensor forward(const Tensor& x) override { return leaky_relu(x, slope_); }
  std::string name() const override { return "LeakyReLU(" + std::to_string(slope_) + ")"; }

 private:
  float slope_;
};

class GELU : public Module {
 public:
  Tensor forward(const Tensor& x) override { return gelu(x); }
  std::string name() const override { return "GELU"; }
};

class Tanh : public Module {
 public:
  Tensor forward(const Tensor& x) override { return tanh(x); }
  std::string name() const override { return "Tanh"; }
};

class Sigmoid : public Module {
 public:
  Tensor forward(const Tensor& x) override { return sigmoid(x); }
  std::string name() const override { return "Sigmoid"; }
};

// [N, d1, d2, ...] -> [N, d1 * d2 * ...]
class Flatten : public Module {
 public:
  Tensor forward(const Tensor& x) override { return flatten(x, 1); }
  std::string name() const override { return "Flatten"; }
};

}  // namespace eq
