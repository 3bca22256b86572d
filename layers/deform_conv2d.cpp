#include "layers/deform_conv2d.h"

#include <algorithm>
#include <cmath>

#include "engine/elementwise.h"
#include "engine/shape_ops.h"

namespace eq {

DeformConv2d::DeformConv2d(int in, int out, int kernel, Rng& rng, DeformConv2dOptions opt, bool modulated,
                           bool with_bias)
    : in_(in), out_(out), kernel_(kernel), opt_(opt), modulated_(modulated) {
  check(in > 0 && out > 0 && kernel > 0, "DeformConv2d: channels and kernel must be positive (got in ", in, ", out ",
        out, ", kernel ", kernel, ")");
  check(opt.groups >= 1 && in % opt.groups == 0 && out % opt.groups == 0, "DeformConv2d: groups ", opt.groups,
        " must divide both in_channels ", in, " and out_channels ", out);
  check(opt.offset_groups >= 1 && in % opt.offset_groups == 0, "DeformConv2d: offset_groups ", opt.offset_groups,
        " must divide in_channels ", in);
  const int64_t fan_in = static_cast<int64_t>(in / opt.groups) * kernel * kernel;
  const float bound = 1.0f / std::sqrt(static_cast<float>(fan_in));
  weight = register_parameter("weight", Tensor::uniform({out, in / opt.groups, kernel, kernel}, rng, -bound, bound));
  if (with_bias) bias = register_parameter("bias", Tensor::uniform({out}, rng, -bound, bound));

  Conv2dOptions offset_opt;
  offset_opt.stride_h = opt.stride_h, offset_opt.stride_w = opt.stride_w;
  offset_opt.pad_h = opt.pad_h, offset_opt.pad_w = opt.pad_w;
  offset_opt.dilation_h = opt.dilation_h, offset_opt.dilation_w = opt.dilation_w;
  const int taps = opt.offset_groups * kernel * kernel;
  offset_conv = register_module("offset_conv",
                                std::make_shared<Conv2d>(in, (modulated ? 3 : 2) * taps, kernel, rng, offset_opt));
  // Zero start: the regular sampling grid (and mask 0.5 for v2).
  std::fill(offset_conv->weight.data(), offset_conv->weight.data() + offset_conv->weight.numel(), 0.0f);
  std::fill(offset_conv->bias.data(), offset_conv->bias.data() + offset_conv->bias.numel(), 0.0f);
}

std::pair<Tensor, Tensor> DeformConv2d::offsets_and_mask(const Tensor& x) {
  check(x.dim() == 4 && x.size(1) == in_, "DeformConv2d(", in_, ", ", out_, ", k=", kernel_,
        "): expects input [N, ", in_, ", H, W] but got ", x.shape());
  const Tensor raw = offset_conv->forward(x);  // [N, (2 or 3)*G*k*k, Ho, Wo]
  if (!modulated_) return {raw, Tensor()};
  const int64_t taps = static_cast<int64_t>(opt_.offset_groups) * kernel_ * kernel_;
  return {slice(raw, 1, 0, 2 * taps), sigmoid(slice(raw, 1, 2 * taps, 3 * taps))};
}

Tensor DeformConv2d::forward(const Tensor& x) {
  const auto [offset, mask] = offsets_and_mask(x);
  return deform_conv2d(x, offset, weight, bias, mask, opt_);
}

std::string DeformConv2d::name() const {
  std::string s = std::string(modulated_ ? "DeformConv2dV2(" : "DeformConv2d(") + std::to_string(in_) + ", " +
                  std::to_string(out_) + ", k=" + std::to_string(kernel_);
  if (opt_.stride_h != 1) s += ", stride=" + std::to_string(opt_.stride_h);
  if (opt_.pad_h) s += ", pad=" + std::to_string(opt_.pad_h);
  if (opt_.dilation_h != 1) s += ", dilation=" + std::to_string(opt_.dilation_h);
  if (opt_.groups != 1) s += ", groups=" + std::to_string(opt_.groups);
  if (opt_.offset_groups != 1) s += ", offset_groups=" + std::to_string(opt_.offset_groups);
  return s + ")";
}

}  // namespace eq
