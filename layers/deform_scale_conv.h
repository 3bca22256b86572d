// equilab — DeformScaleConv: the scale convolution of scale_conv.h with deformable per-scale convolutions
// ("deformable DSS" of the scale-equivariance study, its section 2.2). [N, Cin, S, H, W] -> [N, Cout, S, H, W].
//
// Output scale s is deform_conv2d (engine/deform_conv.h) of the same channel window as ScaleConv (input scales
// s .. s+n-1 side by side, n = min(Ks, S - s)) with the weight slice [Cout, Cin*n, k, k], dilation b^s and padding
// b^s (k/2), the taps moved by learnt offsets (and, with `modulated`, scaled by learnt masks).
//
// The offsets come from a parallel branch, itself a ScaleConv (child "offset_conv": Cin -> (2 or 3)*G*k*k channels,
// same k, Ks and base), i.e. one offset predictor whose weights are tied across scales just like the main weights
// and which sees, at scale s, the same window with the same dilation b^s. Its raw output at scale s is multiplied by
// b^s before use: offsets are predicted in units of the dilated grid's step, so a raw offset of 1 moves a tap by one
// step of that scale's grid (b^s pixels). This is the choice that keeps the layer scale-equivariant: the feature at
// scale s+1 is a b-times larger version of the one at scale s, so its taps must move b times further (with integer
// offsets the equivariance of ScaleConv holds exactly; tested). Without the factor, coarse scales could only make
// sub-step adjustments while fine scales make whole-step ones. The masks (sigmoid of the last G*k*k channels) are
// not scaled. Offset groups split the Cin*n window channels into G contiguous runs, i.e. G groups of input channels,
// each with all its scales (Cin must be divisible by G).
//
// The offset branch starts at zero (weight and bias), so a fresh layer equals ScaleConv with the same weights (v1),
// or with every tap halved (v2, mask sigmoid(0) = 0.5).
#pragma once
#include <memory>

#include "engine/rng.h"
#include "layers/module.h"
#include "layers/scale_conv.h"

namespace eq {

class DeformScaleConv : public Module {
 public:
  // Weight and bias initialised as ScaleConv's (drawn first from rng), then the offset branch (zeroed).
  DeformScaleConv(int in_channels, int out_channels, int kernel, int interaction, float base, Rng& rng,
                  int offset_groups = 1, bool modulated = false, bool bias = true);
  Tensor forward(const Tensor& x) override;
  std::string name() const override;

  Tensor weight, bias;                     // [Cout, Cin, Ks, k, k], [Cout]
  std::shared_ptr<ScaleConv> offset_conv;  // predicts [N, (2 or 3)*G*k*k, S, H, W]; zero-initialised

 private:
  int in_, out_, kernel_, interaction_, offset_groups_;
  float base_;
  bool modulated_;
};

}  // namespace eq
