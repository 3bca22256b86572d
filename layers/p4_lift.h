// equilab — P4Lift: the first layer of a p4 group CNN (Cohen & Welling 2016), Z2 -> p4.
//
// [N, Cin, H, W] -> [N, Cout, 4, Ho, Wo]: output rotation r is the correlation with the base filter rotated by
// r * 90 degrees counter-clockwise (eq::rot90). Rotating the input by 90 degrees rotates every output map and shifts
// the rotation axis by one: P4Lift(rot90(x))[:, :, r] = rot90(P4Lift(x)[:, :, r-1]).
//
// When the equivariance is exact: the rotation about the image centre must map the set of output positions (the
// centres of the windows the kernel reads) onto itself. Stride 1 with the same padding on every side (any pad
// mode; pad_h = pad_w) does that for any kernel: odd k with padding k/2 keeps the size, even k with padding k/2
// gives H+1 outputs centred on the half-pixel grid, which is symmetric too. It breaks with asymmetric "same"
// padding (even k padded k/2-1 on one side and k/2 on the other: the output grid sits half a pixel off centre) and
// with a stride that does not sample the map symmetrically (stride 2, k 3, pad 1 on 8x8 reads centres 0, 2, 4, 6,
// not symmetric about 3.5; on 9x9 the centres 0..8 step 2 are). Dilation and non-square maps are fine.
#pragma once
#include "engine/conv.h"
#include "engine/rng.h"
#include "layers/module.h"

namespace eq {

class P4Lift : public Module {
 public:
  // Options as Conv2d (default: stride 1, zero padding k/2); groups must be 1. Init as Conv2d:
  // uniform +-1/sqrt(Cin * k * k).
  P4Lift(int in_channels, int out_channels, int kernel, Rng& rng, Conv2dOptions options, bool bias = true);
  P4Lift(int in_channels, int out_channels, int kernel, Rng& rng);
  Tensor forward(const Tensor& x) override;
  std::string name() const override;
  Tensor weight, bias;  // [Cout, Cin, k, k], [Cout] (one bias per filter, shared by its 4 rotations)

 private:
  int in_, out_, kernel_;
  Conv2dOptions opt_;
};

// The checks and name shared by P4Lift and P4Conv.
void check_p4_options(const char* layer, int in, int out, int kernel, const Conv2dOptions& opt);
std::string p4_layer_name(const char* layer, int in, int out, int kernel, const Conv2dOptions& opt);

}  // namespace eq
