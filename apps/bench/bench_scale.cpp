// equilab bench — the Deep Scale-Spaces scale convolution next to the plain convolutions it is made of.
//
// scaleconv_fwd_bwd_16_16_28_s4: batch 64, 16 -> 16 channels per scale, S = 4 scales, 28x28, 3x3 kernels,
// interaction Ks = 2, base 2 (dilations 1, 2, 4, 8), bias; x, weight and bias require grad; one call is forward +
// backward of sum(out) (gradients accumulate across calls, as PyTorch's do). Scales 0-2 read two input scales
// (32 channels), the top scale one (its second term is dropped): 7 conv terms of 16 -> 16 channels each, and the
// FLOP count is those 7 terms only, 3 x 2 N Cout H W Cin 9 x 7.
//
// scaleconv_ref_conv_<cin>_16_28_d<d>: the four plain conv2d calls ScaleConv runs, one per scale, timed alone with
// the same batch, forward + backward: 32 -> 16 channels at dilations 1, 2, 4 and 16 -> 16 at dilation 8, padding =
// dilation. Their times add up to what ScaleConv would take with zero overhead; the difference is the slicing,
// reshaping and stacking around them.
#include <memory>

#include "apps/bench/bench.h"
#include "engine/autograd.h"
#include "engine/conv.h"
#include "engine/rng.h"
#include "layers/scale_conv.h"

namespace eq::bench {
namespace {

constexpr int64_t kBatch = 64, kChannels = 16, kScales = 4, kSize = 28, kInteraction = 2;

Workload scale_conv_workload() {
  struct State {
    Tensor x, w, b, seed;
  };
  Rng rng(0);
  auto s = std::make_shared<State>();
  s->x = Tensor::randn({kBatch, kChannels, kScales, kSize, kSize}, rng).set_requires_grad();
  s->w = Tensor::randn({kChannels, kChannels, kInteraction, 3, 3}, rng, 0, 0.1f).set_requires_grad();
  s->b = Tensor::randn({kChannels}, rng).set_requires_grad();
  s->seed = Tensor::ones({kBatch, kChannels, kScales, kSize, kSize});
  int64_t terms = 0;
  for (int64_t scale = 0; scale < kScales; ++scale) terms += std::min(kInteraction, kScales - scale);
  const double flops = 3.0 * 2 * kBatch * kChannels * kSize * kSize * kChannels * 9 * terms;
  return {"scaleconv_fwd_bwd_16_16_28_s4", [s] { scale_conv(s->x, s->w, s->b, 2.0f).backward(s->seed); }, flops, 10};
}

Workload plain_conv_workload(int64_t cin, int dilation) {
  struct State {
    Tensor x, w, b, seed;
    Conv2dOptions opt;
  };
  Rng rng(1);
  auto s = std::make_shared<State>();
  s->x = Tensor::randn({kBatch, cin, kSize, kSize}, rng).set_requires_grad();
  s->w = Tensor::randn({kChannels, cin, 3, 3}, rng, 0, 0.1f).set_requires_grad();
  s->b = Tensor::randn({kChannels}, rng).set_requires_grad();
  s->seed = Tensor::ones({kBatch, kChannels, kSize, kSize});
  s->opt.dilation_h = s->opt.dilation_w = dilation;
  s->opt.pad_h = s->opt.pad_w = dilation;
  return {"scaleconv_ref_conv_" + std::to_string(cin) + "_16_28_d" + std::to_string(dilation),
          [s] { conv2d(s->x, s->w, s->b, s->opt).backward(s->seed); },
          3.0 * 2 * kBatch * kChannels * kSize * kSize * cin * 9, 10};
}

const Registrar registrar("scale", [] {
  return std::vector<Workload>{scale_conv_workload(), plain_conv_workload(32, 1), plain_conv_workload(32, 2),
                               plain_conv_workload(32, 4), plain_conv_workload(16, 8)};
});

}  // namespace
}  // namespace eq::bench
