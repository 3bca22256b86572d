#include "layers/pixel_center.h"

#include "engine/autograd.h"
#include "engine/elementwise.h"
#include "engine/reduce.h"
#include "engine/shape_ops.h"

namespace eq {

PixelCenter::PixelCenter(int64_t channels, int64_t height, int64_t width, float momentum)
    : channels_(channels), height_(height), width_(width), momentum_(momentum) {
  check(channels > 0 && height > 0 && width > 0, "PixelCenter: channels, height and width must be positive (got ",
        channels, ", ", height, ", ", width, ")");
  check(momentum >= 0 && momentum <= 1, "PixelCenter: momentum must be in [0, 1], got ", momentum);
  running_mean = register_buffer("running_mean", Tensor::zeros({channels, height, width}));
}

Tensor PixelCenter::forward(const Tensor& x) {
  check(x.dim() == 4 && x.size(1) == channels_ && x.size(2) == height_ && x.size(3) == width_, name(),
        ": expected input [N, ", channels_, ", ", height_, ", ", width_, "], got ", x.shape());
  if (!is_training()) return x - reshape(running_mean, {1, channels_, height_, width_});
  check(x.size(0) >= 1, name(), ": training needs a non-empty batch, got ", x.shape());
  Tensor batch_mean = mean(x, {0}, /*keepdim=*/true);  // [1, C, H, W]
  {
    NoGrad no_grad;
    const float* m = batch_mean.data();
    float* run = running_mean.data();
    for (int64_t i = 0; i < running_mean.numel(); ++i) run[i] = (1 - momentum_) * run[i] + momentum_ * m[i];
  }
  return x - batch_mean;
}

std::string PixelCenter::name() const {
  return "PixelCenter(" + std::to_string(channels_) + ", " + std::to_string(height_) + "x" + std::to_string(width_) +
         ")";
}

}  // namespace eq
