// equilab — pooling over the scale axis, and the glue that runs the usual 2-D layers on [N, C, S, H, W].
//
// ScalePool ends a scale-space network: it collapses the scale axis, [N, C, S, H, W] -> [N, C, H, W], by max (DSS
// and the SESN code: ScaleMaxProjection) or mean (the scale-equivariance study). Shifting the stack along scales
// (the scale action) then leaves the result unchanged except for what enters or leaves at the ends.
//
// The rest of a DSS block needs no new layer:
//   - ReLU and every elementwise op work on any shape.
//   - BatchNorm (layers/batch_norm.h) accepts [N, C, ...]: on [N, C, S, H, W] its statistics are per channel C,
//     shared by all scales (over N, S, H and W), as the DSS code's BatchNorm3d(C). Sharing across scales is what
//     keeps BN scale-equivariant; per-(C, s) statistics (a BatchNorm(C*S) on [N, C*S, H, W]) would not be.
//   - Spatial pooling acts on each scale separately: per_scale_2d() folds S into the channel axis,
//     [N, C, S, H, W] -> [N, C*S, H, W], applies a 2-D op, and unfolds [N, C*S, H', W'] -> [N, C, S, H', W'].
//     ScaleMaxPool2d / ScaleAvgPool2d are max_pool2d / avg_pool2d that way (DSS's MaxPool3d((1, 2, 2))).
#pragma once
#include <functional>

#include "engine/pool.h"
#include "layers/module.h"

namespace eq {

enum class ScalePoolMode { Max, Mean };

// x [N, C, S, H, W] -> [N, C, H, W]; differentiable (max: the gradient goes to the first maximal scale).
Tensor scale_pool(const Tensor& x, ScalePoolMode mode);

class ScalePool : public Module {
 public:
  explicit ScalePool(ScalePoolMode mode = ScalePoolMode::Max) : mode_(mode) {}
  Tensor forward(const Tensor& x) override { return scale_pool(x, mode_); }
  std::string name() const override { return mode_ == ScalePoolMode::Max ? "ScalePool(max)" : "ScalePool(mean)"; }

 private:
  ScalePoolMode mode_;
};

// Applies a per-channel 2-D op f ([M, K, H, W] -> [M, K, H', W'], channels independent) to every scale of
// x [N, C, S, H, W], returning [N, C, S, H', W']. `op` names the caller in errors.
Tensor per_scale_2d(const Tensor& x, const std::function<Tensor(const Tensor&)>& f, const char* op);

// max_pool2d / avg_pool2d on each scale of [N, C, S, H, W].
class ScaleMaxPool2d : public Module {
 public:
  explicit ScaleMaxPool2d(int kernel, int stride = -1, int padding = 0);  // stride -1: = kernel
  Tensor forward(const Tensor& x) override;
  std::string name() const override;

 private:
  Pool2dOptions opt_;
};

class ScaleAvgPool2d : public Module {
 public:
  explicit ScaleAvgPool2d(int kernel, int stride = -1, int padding = 0);
  Tensor forward(const Tensor& x) override;
  std::string name() const override;

 private:
  Pool2dOptions opt_;
};

}  // namespace eq
