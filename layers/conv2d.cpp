#include "layers/conv2d.h"

#include <cmath>

namespace eq {

Conv2dOptions same_padding(int kernel, PadMode mode) {
  Conv2dOptions o;
  o.pad_h = o.pad_w = kernel / 2;
  o.pad_mode = mode;
  return o;
}

Conv2d::Conv2d(int in, int out, int kernel, Rng& rng, Conv2dOptions opt, bool with_bias)
    : in_(in), out_(out), kernel_(kernel), opt_(opt) {
  check(in > 0 && out > 0 && kernel > 0, "Conv2d: channels and kernel must be positive (got in ", in, ", out ", out,
        ", kernel ", kernel, ")");
  check(opt.groups >= 1 && in % opt.groups == 0 && out % opt.groups == 0, "Conv2d: groups ", opt.groups,
        " must divide both in_channels ", in, " and out_channels ", out);
  const int64_t fan_in = static_cast<int64_t>(in / opt.groups) * kernel * kernel;
  const float bound = 1.0f / std::sqrt(static_cast<float>(fan_in));
  weight = register_parameter("weight", Tensor::uniform({out, in / opt.groups, kernel, kernel}, rng, -bound, bound));
  if (with_bias) bias = register_parameter("bias", Tensor::uniform({out}, rng, -bound, bound));
}

Tensor Conv2d::forward(const Tensor& x) { return conv2d(x, weight, bias, opt_); }

std::string Conv2d::name() const {
  std::string s = "Conv2d(" + std::to_string(in_) + ", " + std::to_string(out_) + ", k=" + std::to_string(kernel_);
  if (opt_.stride_h != 1) s += ", stride=" + std::to_string(opt_.stride_h);
  if (opt_.pad_h) s += ", pad=" + std::to_string(opt_.pad_h) + " " + pad_mode_name(opt_.pad_mode);
  if (opt_.dilation_h != 1) s += ", dilation=" + std::to_string(opt_.dilation_h);
  if (opt_.groups != 1) s += ", groups=" + std::to_string(opt_.groups);
  return s + ")";
}

}  // namespace eq
