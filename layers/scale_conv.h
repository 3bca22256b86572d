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
// Implementation: for each output scale, the input scales s .. s+n-1 (n = min(Ks, S - s)) are laid side by side as
// channels, [N, Cin*n, H, W] with channel c*n + j = input channel c at scale s + j, and ONE conv2d with the matching
// weight slice [Cout, Cin*n, k, k] and dilation b^s computes every term of that scale; the S outputs are stacked on
// axis 2. All of it is composed of differentiable ops (scale_window, slice/reshape of the weight, conv2d, stack),
// so the only backward written here is scale_window's. The per-scale convolutions run at plain conv2d speed
// (large dilations included); what ScaleConv adds is memory traffic: the window copies, the stack, and their
// gradient buffers (measured in apps/bench/bench_scale.cpp).
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
// Direct loops over every (n, o, s, y, x, j, c, ki, kj) in double, same semantics; no gradient. For tests.
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
