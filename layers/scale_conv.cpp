#include "layers/scale_conv.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "engine/autograd.h"
#include "engine/parallel.h"
#include "engine/scale_conv_kernel.h"
#include "engine/shape_ops.h"

namespace eq {


int scale_dilation(float base, int64_t s, const char* op) {
  check(std::isfinite(base) && base >= 1 && base == std::floor(base), op, ": base must be an integer >= 1 (the ",
        "dilation b^s must be a whole number of pixels), got ", base);
  constexpr int64_t kMaxDilation = int64_t{1} << 20;
  int64_t d = 1;
  for (int64_t i = 0; i < s; ++i) {
    d *= static_cast<int64_t>(base);
    check(d <= kMaxDilation, op, ": dilation ", base, "^", s, " exceeds ", kMaxDilation, " (too many scales)");
  }
  return static_cast<int>(d);
}

// One op instead of slice + reshape: in [N, C, S, H, W] the n scales of one (sample, channel) are one contiguous
// run of n*H*W values, and so is channel block c of the window, so forward and backward are plain run copies /
// adds, each run owned by one thread. (slice + reshape would cost an extra gradient buffer and copy per scale.)
Tensor scale_window(const Tensor& x, int64_t s, int64_t interaction) {
  check(x.dim() == 5 && s >= 0 && s < x.size(2) && interaction >= 1, "scale_window: scale ", s, " of input ",
        x.shape(), " with interaction ", interaction, " (expected [N, C, S, H, W], 0 <= s < S, interaction >= 1)");
  const int64_t N = x.size(0), C = x.size(1), S = x.size(2), plane = x.size(3) * x.size(4);
  const int64_t n = std::min(interaction, S - s), runs = N * C, run = n * plane;
  Tensor out({N, C * n, x.size(3), x.size(4)});
  const float* px = x.data();
  float* po = out.data();
#pragma omp parallel for if (runs * run > kParallelGrain)
  for (int64_t r = 0; r < runs; ++r) std::copy(px + (r * S + s) * plane, px + (r * S + s) * plane + run, po + r * run);
  if (!any_requires_grad({&x})) return out;
  record(out, "scale_window", {x}, [runs, run, S, s, plane](const float* g, const std::vector<float*>& gin) {
    float* gx = gin[0];
#pragma omp parallel for if (runs * run > kParallelGrain)
    for (int64_t r = 0; r < runs; ++r) {
      float* dst = gx + (r * S + s) * plane;
      const float* src = g + r * run;
      for (int64_t i = 0; i < run; ++i) dst[i] += src[i];
    }
  });
  return out;
}

Tensor scale_window_weight(const Tensor& w, int64_t n) {
  const Tensor kept = n == w.size(2) ? w : slice(w, 2, 0, n);
  return reshape(kept, {w.size(0), w.size(1) * n, w.size(3), w.size(4)});
}

namespace {

void check_scale_conv(const Tensor& x, const Tensor& w, const Tensor& b, float base, const char* op) {
  check(x.defined() && w.defined(), op, ": input and weight must be defined");
  check(x.dim() == 5, op, ": input must be [N, Cin, S, H, W], got ", x.shape());
  check(w.dim() == 5, op, ": weight must be [Cout, Cin, Ks, kh, kw], got ", w.shape());
  check(x.size(1) == w.size(1), op, ": input has ", x.size(1), " channels but weight expects ", w.size(1), " (input ",
        x.shape(), ", weight ", w.shape(), ")");
  check(x.numel() > 0 && w.numel() > 0, op, ": empty input ", x.shape(), " or weight ", w.shape());
  check(w.size(3) % 2 == 1 && w.size(4) % 2 == 1, op, ": kernel ", w.size(3), "x", w.size(4),
        " must be odd (an even kernel with padding b^s (k/2) changes the size per scale; weight ", w.shape(), ")");
  if (b.defined())
    check(b.dim() == 1 && b.size(0) == w.size(0), op, ": bias ", b.shape(), " must be [", w.size(0), "] (weight ",
          w.shape(), ")");
  scale_dilation(base, x.size(2) - 1, op);
}

// The kernel's view of a checked call: sizes and the dilation b^s of every output scale.
ScaleConvShape scale_conv_shape(const Tensor& x, const Tensor& w, float base, const char* op) {
  ScaleConvShape g;
  g.N = x.size(0), g.Cin = x.size(1), g.S = x.size(2), g.H = x.size(3), g.W = x.size(4);
  g.Cout = w.size(0), g.Ks = w.size(2), g.kh = w.size(3), g.kw = w.size(4);
  for (int64_t s = 0; s < g.S; ++s) g.dilation.push_back(scale_dilation(base, s, op));
  return g;
}

}  // namespace

Tensor scale_conv(const Tensor& x, const Tensor& w, const Tensor& b, float base) {
  check_scale_conv(x, w, b, base, "scale_conv");
  const ScaleConvShape g = scale_conv_shape(x, w, base, "scale_conv");
  Tensor y = Tensor::empty({g.N, g.Cout, g.S, g.H, g.W});  // the kernel writes every element
  scale_conv_forward(g, x.data(), w.data(), b.defined() ? b.data() : nullptr, y.data());
  if (!any_requires_grad({&x, &w, &b})) return y;
  // dx needs only the weight, dw only the input.
  Storage keep_x = w.requires_grad() ? x.impl()->data : nullptr;
  Storage keep_w = x.requires_grad() ? w.impl()->data : nullptr;
  record(y, "scale_conv", {x, w, b}, [g, keep_x, keep_w](const float* gy, const std::vector<float*>& gin) {
    scale_conv_backward(g, keep_x ? keep_x->data() : nullptr, keep_w ? keep_w->data() : nullptr, gy, gin[0], gin[1],
                        gin[2]);
  });
  return y;
}

Tensor scale_conv_reference(const Tensor& x, const Tensor& w, const Tensor& b, float base) {
  check_scale_conv(x, w, b, base, "scale_conv_reference");
  const ScaleConvShape g = scale_conv_shape(x, w, base, "scale_conv_reference");
  Tensor y({g.N, g.Cout, g.S, g.H, g.W});
  scale_conv_forward_reference(g, x.data(), w.data(), b.defined() ? b.data() : nullptr, y.data());
  if (!any_requires_grad({&x, &w, &b})) return y;
  record(y, "scale_conv_reference", {x, w, b},
         [g, xs = x.impl()->data, ws = w.impl()->data](const float* gy, const std::vector<float*>& gin) {
           scale_conv_backward_reference(g, xs->data(), ws->data(), gy, gin[0], gin[1], gin[2]);
         });
  return y;
}

ScaleConv::ScaleConv(int in, int out, int kernel, int interaction, float base, Rng& rng, bool with_bias)
    : in_(in), out_(out), kernel_(kernel), interaction_(interaction), base_(base) {
  check(in > 0 && out > 0 && kernel > 0 && interaction > 0, "ScaleConv: channels, kernel and interaction must be ",
        "positive (got in ", in, ", out ", out, ", kernel ", kernel, ", interaction ", interaction, ")");
  check(kernel % 2 == 1, "ScaleConv: kernel must be odd (got ", kernel, ")");
  scale_dilation(base, 0, "ScaleConv");
  const float bound = 1.0f / std::sqrt(static_cast<float>(int64_t{in} * interaction * kernel * kernel));
  weight = register_parameter("weight", Tensor::uniform({out, in, interaction, kernel, kernel}, rng, -bound, bound));
  if (with_bias) bias = register_parameter("bias", Tensor::uniform({out}, rng, -bound, bound));
}

std::string ScaleConv::name() const {
  std::ostringstream os;
  os << "ScaleConv(" << in_ << ", " << out_ << ", k=" << kernel_ << ", Ks=" << interaction_ << ", base=" << base_
     << ")";
  return os.str();
}

}  // namespace eq
