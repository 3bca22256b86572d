#include "layers/linear.h"

#include <cmath>

#include "engine/matmul.h"

namespace eq {

Linear::Linear(int64_t in, int64_t out, Rng& rng, bool with_bias) : in_(in), out_(out) {
  check(in > 0 && out > 0, "Linear: feature counts must be positive (got in ", in, ", out ", out, ")");
  const float bound = 1.0f / std::sqrt(static_cast<float>(in));
  weight = register_parameter("weight", Tensor::uniform({out, in}, rng, -bound, bound));
  if (with_bias) bias = register_parameter("bias", Tensor::uniform({out}, rng, -bound, bound));
}

Tensor Linear::forward(const Tensor& x) {
  if (x.dim() != 2 || x.size(1) != in_)
    fail("Linear(", in_, ", ", out_, "): expects input [N, ", in_, "] but got ", x.shape());
  return linear(x, weight, bias);
}

std::string Linear::name() const { return "Linear(" + std::to_string(in_) + ", " + std::to_string(out_) + ")"; }

}  // namespace eq
