// equilab — anti-aliased downsampling layers (Zhang, ICML 2019; REFERENCES.md section 1):
//   BlurPool     fixed depthwise binomial blur + subsampling; replaces AvgPool2d(2, 2) and strided subsampling
//   MaxBlurPool  MaxPool(kernel, stride 1) then BlurPool(stride): replaces MaxPool2d(2, 2)
//   conv_blur_pool  Conv2d(stride 1) -> BatchNorm -> ReLU -> BlurPool(stride): replaces a strided Conv2d
// The blur filter is fixed (binomial taps, engine/blur_pool.h), has no parameters and is not stored in checkpoints:
// it is recomputed from filter_size. Gradients flow through the blur and through the max.
#pragma once
#include <memory>
#include <string>

#include "engine/blur_pool.h"
#include "engine/rng.h"
#include "layers/sequential.h"

namespace eq {

// [N, C, H, W] -> [N, C, ceil(H/stride), ceil(W/stride)]. filter_size 1..7 (1 = plain subsampling x[::s, ::s]).
// pad: Reflect (the reference default), Replicate, Zeros, or Circular (exact shift-commuting borders).
class BlurPool : public Module {
 public:
  explicit BlurPool(int channels, int filter_size = 4, int stride = 2, PadMode pad = PadMode::Reflect);
  Tensor forward(const Tensor& x) override;
  std::string name() const override;
  int filter_size() const { return filter_size_; }
  int stride() const { return stride_; }

 private:
  int channels_, filter_size_, stride_;
  PadMode pad_;
};

// [N, C, H, W] -> max over kernel x kernel windows at stride 1 ([N, C, H-kernel+1, W-kernel+1]) -> BlurPool.
class MaxBlurPool : public Module {
 public:
  explicit MaxBlurPool(int channels, int kernel = 2, int filter_size = 4, int stride = 2,
                       PadMode pad = PadMode::Reflect);
  Tensor forward(const Tensor& x) override;
  std::string name() const override;

 private:
  int kernel_;
  BlurPool blur_;
};

// The anti-aliased strided convolution: Conv2d(in, out, kernel, stride 1, zero "same" padding, no bias when
// batch_norm) -> BatchNorm2d (optional) -> ReLU -> BlurPool(out, filter_size, stride). Children "0", "1", ...
std::shared_ptr<Sequential> conv_blur_pool(int in_channels, int out_channels, int kernel, Rng& rng, int stride = 2,
                                           int filter_size = 4, bool batch_norm = true,
                                           PadMode pad = PadMode::Reflect);

}  // namespace eq
