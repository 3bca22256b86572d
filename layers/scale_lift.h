// equilab — Gaussian scale-space lifting, the first layer of Deep Scale-Spaces (Worrall & Welling 2019, DSS v1).
//
// [N, C, H, W] -> [N, C, S, H, W]. Scale 0 is the input itself; scale k is the input blurred by a Gaussian of
// variance t_k = sigma0^2 (b^{2k} - 1), i.e. sigma_k = sigma0 sqrt(b^{2k} - 1). No subsampling: every scale keeps
// H x W, and the coarseness of scale k is handled downstream by convolutions dilated by b^k (scale_conv.h).
//
// Why these variances: if the input already carries an inherent blur sigma0^2, scale k has total variance
// sigma0^2 b^{2k}, i.e. width sigma0 b^k — a geometric ladder. Downscaling the image by b (blur by t_1, then keep
// every b-th pixel) turns scale k+1 into scale k: D_b(lift(x)_{k+1}) = lift(D_b(blur_{t_1} x))_k, because
// b^2 t_k + t_1 = t_{k+1}. That is the discrete scale equivariance the scale convolution preserves (tested).
// Note that "blur by t_1 then lift" shifts the stack by one scale only at k = 0: t_k + t_1 != t_{k+1} for k >= 1
// when b > 1; the shift needs the subsampling.
//
// The kernel is the sampled Gaussian of engine/blur.h (normalised, radius ceil(4 sigma) so the truncation keeps
// the variance to 0.1%), not Lindeberg's discrete (Bessel) Gaussian of the DSS code; the two agree for
// sigma >~ 1. Borders follow `pad`: Zeros (default) is the DSS code's zero-padded blur and matches the
// zero-padded convolutions after it; Circular and Reflect keep the semigroup property exact up to the kernels.
#pragma once
#include <vector>

#include "engine/shape_ops.h"
#include "layers/module.h"

namespace eq {

// sigma_k = sigma0 sqrt(b^{2k} - 1) for k = 0 .. scales-1 (sigma_0 = 0). Throws unless scales >= 1, base > 1 and
// sigma0 > 0 (all finite).
std::vector<float> scale_space_sigmas(int scales, float base, float sigma0);

// The lifting as a function: x [N, C, H, W] -> [N, C, scales, H, W]; differentiable in x.
Tensor gaussian_scale_lift(const Tensor& x, int scales, float base, float sigma0, PadMode pad = PadMode::Zeros);

class ScaleLift : public Module {
 public:
  // DSS on MNIST-scale (the SESN reimplementation): base 2, sigma0 0.25, 2 scales.
  ScaleLift(int scales, float base, float sigma0, PadMode pad = PadMode::Zeros);
  Tensor forward(const Tensor& x) override;
  std::string name() const override;
  const std::vector<float>& sigmas() const { return sigmas_; }

 private:
  int scales_;
  float base_, sigma0_;
  PadMode pad_;
  std::vector<float> sigmas_;
};

}  // namespace eq
