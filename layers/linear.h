// equilab — Linear: y = x W^T + b, x [N, in] -> [N, out].
#pragma once
#include "engine/rng.h"
#include "layers/module.h"

namespace eq {

class Linear : public Module {
 public:
  // PyTorch's default initialisation: W and b uniform in +-1/sqrt(in).
  Linear(int64_t in_features, int64_t out_features, Rng& rng, bool bias = true);
  Tensor forward(const Tensor& x) override;
  std::string name() const override;
  Tensor weight, bias;  // [out, in], [out] (bias undefined when off)

 private:
  int64_t in_, out_;
};

}  // namespace eq
