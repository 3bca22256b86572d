// equilab — bilinear scale lifting ("DSS v2" of the scale-equivariance study, its section 2.1).
//
// [N, C, H, W] -> [N, C, S, H, W]. Scale k is the input bilinearly downscaled by b^k (to floor(H / b^k) x
// floor(W / b^k), at least 1x1; half-pixel centres, PyTorch's align_corners = false), then bilinearly resized back
// to H x W. Scale 0 is the input itself. Compared with the Gaussian lifting (scale_lift.h) the low-pass filter is
// whatever bilinear downscaling does: without `antialias` it is a 2-tap average that aliases for b^k > 2, which is
// what F.interpolate(scale_factor=1/b^k) does; with `antialias` the triangle filter is stretched by b^k
// (PIL / torchvision antialias=True) and the result is close to a blur of width ~b^k.
//
// The study KEPT the smaller maps (one tensor per scale, H/b^k x W/b^k) and, before the fully connected layer,
// max-pooled every scale down to the smallest map's size so that they could be concatenated. We do NOT keep them:
// we resize each scale back to H x W so that the lifted stack is a single [N, C, S, H, W] tensor and the scale
// convolution (scale_conv.h), whose weights are tied across scales and whose dilation b^s already accounts for the
// coarser sampling, applies unchanged, as do BN, ReLU and pooling. The price is S full-size maps instead of a
// pyramid (about S times the pixels of scale 0 instead of ~1.33x) and a bilinear upsampling that smooths the coarse
// scales a little more; the information content is the same, since upsampling adds none.
#pragma once
#include "layers/module.h"

namespace eq {

// x [N, C, H, W] -> [N, C, scales, H, W]; differentiable in x. Throws unless scales >= 1 and base > 1.
Tensor bilinear_scale_lift(const Tensor& x, int scales, float base, bool antialias = false);

class BilinearScaleLift : public Module {
 public:
  BilinearScaleLift(int scales, float base, bool antialias = false);
  Tensor forward(const Tensor& x) override { return bilinear_scale_lift(x, scales_, base_, antialias_); }
  std::string name() const override;

 private:
  int scales_;
  float base_;
  bool antialias_;
};

}  // namespace eq
