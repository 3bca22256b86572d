// equilab — P4Conv: a p4 -> p4 group convolution (Cohen & Welling 2016).
//
// [N, Cin, 4, H, W] -> [N, Cout, 4, Ho, Wo]. Base filters w [Cout, Cin, 4, k, k]; the filter for output rotation r is
// w spatially rotated by r * 90 degrees counter-clockwise AND with its input-rotation axis cyclically shifted by r
// (engine/p4_weights.h). Equivariance: P4Conv(g x) = g P4Conv(x), where g rotates every map (rot90 on H, W) and
// shifts the rotation axis by one. The same conditions as P4Lift keep it exact (see layers/p4_lift.h).
//
// Speed: the input is viewed as [N, Cin*4, H, W], the bank expanded to [Cout*4, Cin*4, k, k] (a cheap gather,
// differentiable), and ONE conv2d does the work — as fast as a plain convolution with 4x the channels.
#pragma once
#include "engine/conv.h"
#include "engine/rng.h"
#include "layers/module.h"

namespace eq {

class P4Conv : public Module {
 public:
  // Options as Conv2d (default: stride 1, zero padding k/2); groups must be 1.
  // Init: uniform +-1/sqrt(Cin * 4 * k * k) (the fan-in of one output channel).
  P4Conv(int in_channels, int out_channels, int kernel, Rng& rng, Conv2dOptions options, bool bias = true);
  P4Conv(int in_channels, int out_channels, int kernel, Rng& rng);
  Tensor forward(const Tensor& x) override;
  std::string name() const override;
  Tensor weight, bias;  // [Cout, Cin, 4, k, k], [Cout]

 private:
  int in_, out_, kernel_;
  Conv2dOptions opt_;
};

}  // namespace eq
