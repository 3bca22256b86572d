#include "layers/p4_lift.h"

#include <cmath>

#include "engine/p4_weights.h"
#include "engine/shape_ops.h"
#include "layers/conv2d.h"

namespace eq {

void check_p4_options(const char* layer, int in, int out, int kernel, const Conv2dOptions& opt) {
  check(in > 0 && out > 0 && kernel > 0, layer, ": channels and kernel must be positive (got in ", in, ", out ", out,
        ", kernel ", kernel, ")");
  check(opt.groups == 1, layer, ": groups must be 1 (got ", opt.groups,
        "): the rotation channels of one filter must see the same inputs");
}

std::string p4_layer_name(const char* layer, int in, int out, int kernel, const Conv2dOptions& opt) {
  std::string s = std::string(layer) + "(" + std::to_string(in) + ", " + std::to_string(out) +
                  ", k=" + std::to_string(kernel);
  if (opt.stride_h != 1) s += ", stride=" + std::to_string(opt.stride_h);
  if (opt.pad_h) s += ", pad=" + std::to_string(opt.pad_h) + " " + pad_mode_name(opt.pad_mode);
  if (opt.dilation_h != 1) s += ", dilation=" + std::to_string(opt.dilation_h);
  return s + ")";
}

P4Lift::P4Lift(int in, int out, int kernel, Rng& rng, Conv2dOptions opt, bool with_bias)
    : in_(in), out_(out), kernel_(kernel), opt_(opt) {
  check_p4_options("P4Lift", in, out, kernel, opt);
  const float bound = 1.0f / std::sqrt(static_cast<float>(in * kernel * kernel));
  weight = register_parameter("weight", Tensor::uniform({out, in, kernel, kernel}, rng, -bound, bound));
  if (with_bias) bias = register_parameter("bias", Tensor::uniform({out}, rng, -bound, bound));
}

P4Lift::P4Lift(int in, int out, int kernel, Rng& rng) : P4Lift(in, out, kernel, rng, same_padding(kernel)) {}

Tensor P4Lift::forward(const Tensor& x) {
  check(x.dim() == 4 && x.size(1) == in_, name(), ": expected input [N, ", in_, ", H, W], got ", x.shape());
  Tensor y = conv2d(x, p4_lift_weights(weight), bias.defined() ? p4_expand_bias(bias) : Tensor(), opt_);
  return reshape(y, {y.size(0), out_, 4, y.size(2), y.size(3)});  // channel co*4 + r -> [co, r]
}

std::string P4Lift::name() const { return p4_layer_name("P4Lift", in_, out_, kernel_, opt_); }

}  // namespace eq
