#include "layers/batch_norm.h"

#include "engine/norm.h"

namespace eq {

BatchNorm::BatchNorm(int64_t c, float momentum, float eps) : channels_(c), momentum_(momentum), eps_(eps) {
  check(c > 0, "BatchNorm: channel count must be positive (got ", c, ")");
  weight = register_parameter("weight", Tensor::ones({c}));
  bias = register_parameter("bias", Tensor::zeros({c}));
  running_mean = register_buffer("running_mean", Tensor::zeros({c}));
  running_var = register_buffer("running_var", Tensor::ones({c}));
}

Tensor BatchNorm::forward(const Tensor& x) {
  if (x.dim() < 2 || x.size(1) != channels_)
    fail("BatchNorm(", channels_, "): expects input [N, ", channels_, ", ...] but got ", x.shape());
  return batch_norm(x, weight, bias, running_mean, running_var, is_training(), momentum_, eps_);
}

}  // namespace eq
