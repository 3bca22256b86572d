// equilab — Conv2d layer: [N, Cin, H, W] -> [N, Cout, Ho, Wo] (see engine/conv.h for the op and its options).
#pragma once
#include "engine/conv.h"
#include "engine/rng.h"
#include "layers/module.h"

namespace eq {

class Conv2d : public Module {
 public:
  // A square kernel; options carry stride, padding (and its mode), dilation, groups.
  // PyTorch's default initialisation: W and b uniform in +-1/sqrt(Cin/groups * k * k).
  Conv2d(int in_channels, int out_channels, int kernel, Rng& rng, Conv2dOptions options = {}, bool bias = true);
  Tensor forward(const Tensor& x) override;
  std::string name() const override;
  const Conv2dOptions& options() const { return opt_; }
  Tensor weight, bias;  // [Cout, Cin/groups, k, k], [Cout]

 private:
  int in_, out_, kernel_;
  Conv2dOptions opt_;
};

// Options for the common "same" case: stride 1, padding k/2 (odd k keeps the size).
Conv2dOptions same_padding(int kernel, PadMode mode = PadMode::Zeros);

}  // namespace eq
