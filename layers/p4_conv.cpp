#include "layers/p4_conv.h"

#include <cmath>

#include "engine/p4_weights.h"
#include "engine/shape_ops.h"
#include "layers/conv2d.h"
#include "layers/p4_lift.h"

namespace eq {

P4Conv::P4Conv(int in, int out, int kernel, Rng& rng, Conv2dOptions opt, bool with_bias)
    : in_(in), out_(out), kernel_(kernel), opt_(opt) {
  check_p4_options("P4Conv", in, out, kernel, opt);
  const float bound = 1.0f / std::sqrt(static_cast<float>(in * 4 * kernel * kernel));
  weight = register_parameter("weight", Tensor::uniform({out, in, 4, kernel, kernel}, rng, -bound, bound));
  if (with_bias) bias = register_parameter("bias", Tensor::uniform({out}, rng, -bound, bound));
}

P4Conv::P4Conv(int in, int out, int kernel, Rng& rng) : P4Conv(in, out, kernel, rng, same_padding(kernel)) {}

Tensor P4Conv::forward(const Tensor& x) {
  check(x.dim() == 5 && x.size(1) == in_ && x.size(2) == 4, name(), ": expected a p4 feature map [N, ", in_,
        ", 4, H, W], got ", x.shape());
  Tensor flat = reshape(x, {x.size(0), in_ * 4, x.size(3), x.size(4)});  // channel ci*4 + s
  Tensor y = conv2d(flat, p4_group_weights(weight), bias.defined() ? p4_expand_bias(bias) : Tensor(), opt_);
  return reshape(y, {y.size(0), out_, 4, y.size(2), y.size(3)});
}

std::string P4Conv::name() const { return p4_layer_name("P4Conv", in_, out_, kernel_, opt_); }

}  // namespace eq
