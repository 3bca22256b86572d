// equilab — DeformConv2d layer (deformable convolution v1 and, with `modulated`, v2; see engine/deform_conv.h).
//
// [N, Cin, H, W] -> [N, Cout, Ho, Wo]. A plain Conv2d, the "offset conv", looks at the same input with the same
// stride, padding and dilation as the main convolution and predicts, per output pixel, the tap offsets
// (2*G*k*k channels, interleaved (dy, dx) per tap, in input pixels) and for v2 the tap masks (G*k*k more channels
// through a sigmoid). Its weight and bias start at zero, so a fresh layer samples the regular grid: v1 is then
// exactly a Conv2d with the same weight and bias, v2 the same with every tap scaled by sigmoid(0) = 0.5
// (torchvision's / mmcv's DCNv2 initialisation). The offsets are learnt from there through the bilinear sampling.
#pragma once
#include <memory>

#include "engine/deform_conv.h"
#include "engine/rng.h"
#include "layers/conv2d.h"
#include "layers/module.h"

namespace eq {

class DeformConv2d : public Module {
 public:
  // opt: stride, padding, dilation, weight groups and offset_groups G (Cin divisible by G). Weight and bias drawn
  // as Conv2d's (uniform +-1/sqrt(Cin/groups * k * k), in that order from rng).
  DeformConv2d(int in_channels, int out_channels, int kernel, Rng& rng, DeformConv2dOptions options = {},
               bool modulated = false, bool bias = true);
  Tensor forward(const Tensor& x) override;
  std::string name() const override;

  // The offsets [N, 2*G*k*k, Ho, Wo] and (v2) masks [N, G*k*k, Ho, Wo] the layer would use for x (mask undefined
  // for v1): for inspection and plots.
  std::pair<Tensor, Tensor> offsets_and_mask(const Tensor& x);

  const DeformConv2dOptions& options() const { return opt_; }
  bool modulated() const { return modulated_; }

  Tensor weight, bias;                  // [Cout, Cin/groups, k, k], [Cout] (undefined without bias)
  std::shared_ptr<Conv2d> offset_conv;  // Cin -> (2 or 3)*G*k*k channels, child "offset_conv", zero-initialised

 private:
  int in_, out_, kernel_;
  DeformConv2dOptions opt_;
  bool modulated_;
};

}  // namespace eq
