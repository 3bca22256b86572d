// equilab bench — the Deep Scale-Spaces scale convolution next to the plain convolutions it is compared with.
//
// scaleconv_fwd_bwd_16_16_28_s4: batch 64, 16 -> 16 channels per scale, S = 4 scales, 28x28, 3x3 kernels,
// interaction Ks = 2, base 2 (dilations 1, 2, 4, 8), bias; x, weight and bias require grad; one call is forward +
// backward of sum(out) (gradients accumulate across calls, as PyTorch's do). Scales 0-2 read two input scales
// (32 channels), the top scale one (its second term is dropped): 7 conv terms of 16 -> 16 channels each, and the
// FLOP count is those 7 terms only, 3 x 2 N Cout H W Cin 9 x 7.
//
// scaleconv_composed_fwd_bwd_16_16_28_s4: the same layer as it used to be built, from differentiable pieces
// (scale_window copy + conv2d per scale, then stack), same FLOP count: what the direct kernels
// (engine/scale_conv_kernel.h, engine/direct_conv.h) save, measured in the same run.
//
// scaleconv_ref_conv_64_64_28: the plain conv of the same total size (issue #3's yardstick): 16 channels x 4 scales
// in and out, i.e. conv_fwd_bwd_64_64_28 (apps/bench/conv_workload.h) under the scale group's prefix, so that
// `bench --only scaleconv` prints the layer and its yardstick together. (Through im2col + sgemm the layer could not
// match it: its GEMMs would be 16 rows tall (Cout per scale) to the yardstick's 64, so 4x the gathering and packing
// per FLOP; the direct kernels gather nothing.)
//
// scaleconv_ref_conv_<cin>_16_28_d<d>: the four plain conv2d calls one per output scale, timed alone with the same
// batch: 32 -> 16 channels at dilations 1, 2, 4 and 16 -> 16 at dilation 8, padding = dilation. Their times add up to
// the per-scale convolutions the composed version ran.
#include <memory>

#include "apps/bench/bench.h"
#include "apps/bench/conv_workload.h"
#include "engine/autograd.h"
#include "engine/conv.h"
#include "engine/rng.h"
#include "engine/shape_ops.h"
#include "layers/scale_conv.h"

namespace eq::bench {
namespace {

constexpr int64_t kBatch = 64, kChannels = 16, kScales = 4, kSize = 28, kInteraction = 2;

// The pre-kernel composition of scale_conv (kept here only to measure what the kernel saves).
Tensor composed_scale_conv(const Tensor& x, const Tensor& w, const Tensor& b, float base) {
  std::vector<Tensor> outs;
  for (int64_t s = 0; s < x.size(2); ++s) {
    Conv2dOptions opt;
    opt.dilation_h = opt.dilation_w = scale_dilation(base, s, "composed_scale_conv");
    opt.pad_h = opt.pad_w = opt.dilation_h * static_cast<int>(w.size(3) / 2);
    const Tensor window = scale_window(x, s, w.size(2));
    outs.push_back(conv2d(window, scale_window_weight(w, window.size(1) / x.size(1)), b, opt));
  }
  return stack(outs, 2);
}

Workload scale_conv_workload(bool composed) {
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
  if (composed)
    return {"scaleconv_composed_fwd_bwd_16_16_28_s4",
            [s] { composed_scale_conv(s->x, s->w, s->b, 2.0f).backward(s->seed); }, flops, 10};
  return {"scaleconv_fwd_bwd_16_16_28_s4", [s] { scale_conv(s->x, s->w, s->b, 2.0f).backward(s->seed); }, flops, 10};
}

Workload per_scale_conv(int64_t cin, int dilation) {
  return conv_workload("scaleconv_ref_conv_" + std::to_string(cin) + "_16_28_d" + std::to_string(dilation), kBatch,
                       cin, kChannels, kSize, dilation, 10, 1);
}

const Registrar registrar("scale", [] {
  const int64_t total = kChannels * kScales;
  return std::vector<Workload>{scale_conv_workload(false),
                               scale_conv_workload(true),
                               conv_workload("scaleconv_ref_conv_64_64_28", kBatch, total, total, kSize),
                               per_scale_conv(32, 1),
                               per_scale_conv(32, 2),
                               per_scale_conv(32, 4),
                               per_scale_conv(16, 8)};
});

}  // namespace
}  // namespace eq::bench
