// equilab bench — kernel workloads: sgemm and conv2d forward + backward, named and shaped as in
// ../shared/bench/torch_reference.py so the outputs join by name.
//
// conv_fwd_bwd_<cin>_<cout>_<hw>: batch 64, 3x3 kernel, zero padding 1, bias, input requiring grad; one call is
// sum(conv2d(x, w, b)).backward(), as PyTorch's conv(x).sum().backward(): forward, grad-input, grad-weight and
// grad-bias, with gradients accumulating across calls as PyTorch's do. FLOPs = 3 x 2 N Cout H W Cin 9.
#include <memory>

#include "apps/bench/bench.h"
#include "engine/autograd.h"
#include "engine/conv.h"
#include "engine/matmul.h"
#include "engine/reduce.h"
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

Workload conv_workload(int64_t n, int64_t cin, int64_t cout, int64_t hw) {
  Rng rng(0);
  struct State {
    Tensor x, w, b;
    Conv2dOptions opt;
  };
  auto s = std::make_shared<State>();
  s->x = Tensor::randn({n, cin, hw, hw}, rng).set_requires_grad();
  s->w = Tensor::randn({cout, cin, 3, 3}, rng, 0, 0.1f).set_requires_grad();
  s->b = Tensor::randn({cout}, rng).set_requires_grad();
  s->opt.pad_h = s->opt.pad_w = 1;
  return {"conv_fwd_bwd_" + std::to_string(cin) + "_" + std::to_string(cout) + "_" + std::to_string(hw),
          [s] { sum(conv2d(s->x, s->w, s->b, s->opt)).backward(); },
          3.0 * 2 * n * cout * hw * hw * cin * 9, 20};
}

const Registrar registrar("kernels", [] {
  return std::vector<Workload>{sgemm_workload(1024),         conv_workload(64, 1, 32, 28),
                               conv_workload(64, 32, 64, 14), conv_workload(64, 64, 64, 32),
                               conv_workload(64, 128, 128, 8)};
});

}  // namespace
}  // namespace eq::bench
