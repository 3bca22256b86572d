// equilab bench — kernel workloads: sgemm and conv2d forward + backward, named and shaped as in
// ../shared/bench/torch_reference.py so the outputs join by name.
//
// conv_fwd_bwd_<cin>_<cout>_<hw>: batch 64, 3x3 kernel, zero padding 1, bias, input requiring grad; one call is
// sum(conv2d(x, w, b)).backward(), as PyTorch's conv(x).sum().backward(): forward, grad-input, grad-weight and
// grad-bias, with gradients accumulating across calls as PyTorch's do. FLOPs = 3 x 2 N Cout H W Cin 9. The
// workload itself is apps/bench/conv_workload.h, shared with the group and scale benches.
#include <memory>

#include "apps/bench/bench.h"
#include "apps/bench/conv_workload.h"
#include "engine/matmul.h"
#include "engine/rng.h"

namespace eq::bench {
namespace {

Workload sgemm_workload(int64_t n) {
  auto rng = std::make_shared<Rng>(0);
  auto a = std::make_shared<Tensor>(Tensor::randn({n, n}, *rng));
  auto b = std::make_shared<Tensor>(Tensor::randn({n, n}, *rng));
  auto c = std::make_shared<Tensor>(Tensor::zeros({n, n}));
  return {"sgemm_" + std::to_string(n),
          [a, b, c, n] { gemm(false, false, n, n, n, 1.0f, a->data(), n, b->data(), n, 0.0f, c->data(), n); },
          2.0 * n * n * n, 20};
}

// conv_fwd_bwd_<cin>_<cout>_<hw> at batch 64.
Workload kernel_conv(int64_t cin, int64_t cout, int64_t hw) {
  return conv_workload(conv_name(cin, cout, hw), 64, cin, cout, hw);
}

const Registrar registrar("kernels", [] {
  return std::vector<Workload>{sgemm_workload(1024), kernel_conv(1, 32, 28), kernel_conv(32, 64, 14),
                               kernel_conv(64, 64, 32), kernel_conv(128, 128, 8)};
});

}  // namespace
}  // namespace eq::bench
