// equilab — the scale (semigroup) convolution of Deep Scale-Spaces (Worrall & Welling 2019), [N, Cin, S, H, W] ->
// [N, Cout, S, H, W], and its layer.
//
// Weights w [Cout, Cin, Ks, k, k] are tied across scales; Ks is the "interaction", how many scales up the scale axis
// an output reads. Output scale s is
//
//   out[:, :, s] = bias + sum_{j < min(Ks, S - s)} conv2d(x[:, :, s + j], w[:, :, j], dilation b^s, padding b^s (k/2))
//
// The scale axis is zero-padded at the top: terms with s + j >= S are dropped (not computed). The dilation b^s is
// what makes the layer equivariant to the scale action of the lifting (scale_lift.h): subsampling every spatial axis
// by b and moving one scale up commutes with it exactly (zero padding, odd kernels, b^s integer; tested):
//   scale_conv(D_b(x[:, :, 1:])) = D_b(scale_conv(x)[:, :, 1:]),   D_b = keep every b-th pixel from pixel 0.
//
// Implementation: one autograd op on the kernels of engine/scale_conv_kernel.h: per (sample, output scale), one
// direct convolution (engine/direct_conv.h) of a zero-padded copy of the scale window, written in place into the
// 5-D output; the input gradient gathered per input scale, the weight gradient as per-pixel outer products. No
// im2col and no GEMM: with 16 output channels per scale a GEMM reuses each gathered column only 16 times, and the
// gathering cost as much as the multiply. Earlier versions composed scale_window + conv2d + stack per scale;
// apps/bench/bench_scale.cpp times both (scaleconv_fwd_bwd_* vs scaleconv_composed_fwd_bwd_*). scale_window stays
// for DeformScaleConv, whose per-scale deform_conv2d needs it.
#pragma once
#include <memory>

#include "engine/rng.h"
#include "layers/module.h"

namespace eq {

// b^s as an int dilation; base must be an integer >= 1 (a fractional dilation does not exist). Throws when b^s
// exceeds 2^20 (no image is that large).
int scale_dilation(float base, int64_t s, const char* op);

// The input scales output scale s reads, x[:, :, s : s + n] as [N, Cin*n, H, W] (channel c*n + j is channel c at
// scale s + j), n = min(interaction, S - s): one differentiable op (a copy). And the matching weight slice
// w[:, :, :n] as [Cout, Cin*n, kh, kw] (slice + reshape).
Tensor scale_window(const Tensor& x, int64_t s, int64_t interaction);
Tensor scale_window_weight(const Tensor& w, int64_t n);

// x [N, Cin, S, H, W], w [Cout, Cin, Ks, kh, kw] (kh, kw odd), b [Cout] or undefined -> [N, Cout, S, H, W].
Tensor scale_conv(const Tensor& x, const Tensor& w, const Tensor& b, float base);
// Direct loops over every (n, o, s, y, x, j, c, ki, kj) (scale_conv_kernel.h's references), same semantics, with
// its gradient by the same loops. For tests.
Tensor scale_conv_reference(const Tensor& x, const Tensor& w, const Tensor& b, float base);

class ScaleConv : public Module {
 public:
  // interaction = Ks >= 1; base an integer >= 1. Weight and bias uniform in +-1/sqrt(Cin * Ks * k * k) (PyTorch's
  // default rule, as Conv2d; the DSS code uses He-normal weights and bias 1).
  ScaleConv(int in_channels, int out_channels, int kernel, int interaction, float base, Rng& rng, bool bias = true);
  Tensor forward(const Tensor& x) override { return scale_conv(x, weight, bias, base_); }
  std::string name() const override;
  int interaction() const { return interaction_; }
  float base() const { return base_; }
  Tensor weight, bias;  // [Cout, Cin, Ks, k, k], [Cout] (undefined without bias)

 private:
  int in_, out_, kernel_, interaction_;
  float base_;
};

}  // namespace eq
