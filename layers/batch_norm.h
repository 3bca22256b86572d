// equilab — BatchNorm: per-channel normalisation of [N, C] or [N, C, H, W] with running statistics for eval.
#pragma once
#include "layers/module.h"

namespace eq {

class BatchNorm : public Module {
 public:
  explicit BatchNorm(int64_t channels, float momentum = 0.1f, float eps = 1e-5f);
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "BatchNorm(" + std::to_string(channels_) + ")"; }
  Tensor weight, bias;              // gamma = 1, beta = 0 at start
  Tensor running_mean, running_var;  // buffers: saved in checkpoints, not trained

 private:
  int64_t channels_;
  float momentum_, eps_;
};

// PyTorch's names for the same layer on [N, C, H, W] and on [N, C].
using BatchNorm2d = BatchNorm;
using BatchNorm1d = BatchNorm;

}  // namespace eq
