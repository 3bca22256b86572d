#include "layers/deform_scale_conv.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "engine/deform_conv.h"
#include "engine/elementwise.h"
#include "engine/shape_ops.h"

namespace eq {

DeformScaleConv::DeformScaleConv(int in, int out, int kernel, int interaction, float base, Rng& rng,
                                 int offset_groups, bool modulated, bool with_bias)
    : in_(in), out_(out), kernel_(kernel), interaction_(interaction), offset_groups_(offset_groups), base_(base),
      modulated_(modulated) {
  check(in > 0 && out > 0 && kernel > 0 && interaction > 0, "DeformScaleConv: channels, kernel and interaction ",
        "must be positive (got in ", in, ", out ", out, ", kernel ", kernel, ", interaction ", interaction, ")");
  check(kernel % 2 == 1, "DeformScaleConv: kernel must be odd (got ", kernel, ")");
  check(offset_groups >= 1 && in % offset_groups == 0, "DeformScaleConv: offset_groups ", offset_groups,
        " must divide in_channels ", in);
  scale_dilation(base, 0, "DeformScaleConv");
  const float bound = 1.0f / std::sqrt(static_cast<float>(int64_t{in} * interaction * kernel * kernel));
  weight = register_parameter("weight", Tensor::uniform({out, in, interaction, kernel, kernel}, rng, -bound, bound));
  if (with_bias) bias = register_parameter("bias", Tensor::uniform({out}, rng, -bound, bound));
  const int taps = offset_groups * kernel * kernel;
  offset_conv = register_module(
      "offset_conv", std::make_shared<ScaleConv>(in, (modulated ? 3 : 2) * taps, kernel, interaction, base, rng));
  std::fill(offset_conv->weight.data(), offset_conv->weight.data() + offset_conv->weight.numel(), 0.0f);
  std::fill(offset_conv->bias.data(), offset_conv->bias.data() + offset_conv->bias.numel(), 0.0f);
}

Tensor DeformScaleConv::forward(const Tensor& x) {
  check(x.dim() == 5 && x.size(1) == in_, name(), ": expects input [N, ", in_, ", S, H, W] but got ", x.shape());
  const int64_t N = x.size(0), S = x.size(2), H = x.size(3), W = x.size(4);
  const int64_t taps = static_cast<int64_t>(offset_groups_) * kernel_ * kernel_;
  const Tensor raw = offset_conv->forward(x);  // [N, (2 or 3) * taps, S, H, W]
  std::vector<Tensor> outs;
  outs.reserve(static_cast<size_t>(S));
  for (int64_t s = 0; s < S; ++s) {
    const int dilation = scale_dilation(base_, s, "DeformScaleConv");
    const Tensor raw_s = reshape(slice(raw, 2, s, s + 1), {N, raw.size(1), H, W});
    Tensor offset = modulated_ ? slice(raw_s, 1, 0, 2 * taps) : raw_s;
    if (dilation != 1) offset = mul(offset, static_cast<float>(dilation));  // grid steps -> pixels
    const Tensor mask = modulated_ ? sigmoid(slice(raw_s, 1, 2 * taps, 3 * taps)) : Tensor();
    DeformConv2dOptions opt;
    opt.dilation_h = opt.dilation_w = dilation;
    opt.pad_h = opt.pad_w = dilation * (kernel_ / 2);
    opt.offset_groups = offset_groups_;
    const Tensor window = scale_window(x, s, interaction_);
    outs.push_back(deform_conv2d(window, offset, scale_window_weight(weight, window.size(1) / in_), bias, mask, opt));
  }
  return stack(outs, 2);
}

std::string DeformScaleConv::name() const {
  std::ostringstream os;
  os << (modulated_ ? "DeformScaleConvV2(" : "DeformScaleConv(") << in_ << ", " << out_ << ", k=" << kernel_
     << ", Ks=" << interaction_ << ", base=" << base_;
  if (offset_groups_ != 1) os << ", offset_groups=" << offset_groups_;
  os << ")";
  return os.str();
}

}  // namespace eq
