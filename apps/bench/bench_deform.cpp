// equilab bench — deformable convolution, forward + backward, the shape torch_reference.py times for
// torchvision.ops.deform_conv2d: batch 16, 32 -> 32 channels, 28x28, 3x3, padding 1, offsets randn*0.5, no mask,
// no bias; x, w and the offsets require grad; the loss is the sum of the output.
#include "apps/bench/bench.h"
#include "engine/autograd.h"
#include "engine/deform_conv.h"
#include "engine/rng.h"

namespace eq::bench {
namespace {

std::vector<Workload> deform_workloads() {
  const int64_t n = 16, c = 32, hw = 28, k = 3;
  Rng rng(0);
  Tensor x = Tensor::randn({n, c, hw, hw}, rng).set_requires_grad();
  Tensor w = Tensor::randn({c, c, k, k}, rng).set_requires_grad();
  Tensor offset = Tensor::randn({n, 2 * k * k, hw, hw}, rng, 0.0f, 0.5f).set_requires_grad();
  DeformConv2dOptions opt;
  opt.pad_h = opt.pad_w = 1;
  const Tensor seed = Tensor::ones({n, c, hw, hw});  // d(sum(out)) / d(out); gradients accumulate, as in PyTorch
  // FLOPs of the three GEMMs (forward, grad weight, grad columns); the bilinear sampling is not counted.
  const double flops = 3.0 * 2.0 * static_cast<double>(c * c * k * k * hw * hw * n);
  return {{"deform_fwd_bwd_32_28",
           [=] { deform_conv2d(x, offset, w, Tensor(), Tensor(), opt).backward(seed); }, flops, 20}};
}

Registrar deform_registrar("deform", deform_workloads);

}  // namespace
}  // namespace eq::bench
