// equilab — pooling layers: MaxPool2d, AvgPool2d, GlobalAvgPool2d (no parameters).
#pragma once
#include "engine/pool.h"
#include "layers/module.h"

namespace eq {

class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(int kernel, int stride = -1, int padding = 0);  // stride -1: = kernel
  Tensor forward(const Tensor& x) override { return max_pool2d(x, opt_); }
  std::string name() const override;

 private:
  Pool2dOptions opt_;
};

class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(int kernel, int stride = -1, int padding = 0);
  Tensor forward(const Tensor& x) override { return avg_pool2d(x, opt_); }
  std::string name() const override;

 private:
  Pool2dOptions opt_;
};

// [N, C, H, W] -> [N, C]
class GlobalAvgPool2d : public Module {
 public:
  Tensor forward(const Tensor& x) override { return global_avg_pool2d(x); }
  std::string name() const override { return "GlobalAvgPool2d"; }
};

}  // namespace eq
