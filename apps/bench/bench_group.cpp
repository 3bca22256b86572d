// equilab bench — group-equivariant workloads next to the plain convolution of the same size.
//
// p4conv_fwd_bwd_<cin>_<cout>_<hw>: batch 64, P4Conv(cin, cout, 3x3, zero padding 1, bias) on [64, cin, 4, hw, hw],
// input requiring grad; one call = forward (bank expansion + one conv2d) + backward to input, weight and bias.
// FLOPs = 3 x 2 N (cout*4) hw hw (cin*4) 9: the same count as conv_fwd_bwd_<4 cin>_<4 cout>_<hw>, which is
// registered here too, so the two GFLOP/s figures compare the p4 layer's overhead (the expansion and its gradient)
// against the plain convolution it runs on.
#include <memory>

#include "apps/bench/bench.h"
#include "apps/bench/conv_workload.h"
#include "engine/autograd.h"
#include "engine/rng.h"
#include "layers/p4_conv.h"

namespace eq::bench {
namespace {

Workload p4conv_workload(int64_t n, int cin, int cout, int64_t hw) {
  struct State {
    Rng rng{0};
    std::unique_ptr<P4Conv> layer;
    Tensor x, seed;
  };
  auto s = std::make_shared<State>();
  s->layer = std::make_unique<P4Conv>(cin, cout, 3, s->rng);  // stride 1, zero padding 1
  s->x = Tensor::randn({n, cin, 4, hw, hw}, s->rng).set_requires_grad();
  s->seed = Tensor::ones({n, cout, 4, hw, hw});  // d(sum)/d(y)
  return {"p4conv_fwd_bwd_" + std::to_string(cin) + "_" + std::to_string(cout) + "_" + std::to_string(hw),
          [s] { s->layer->forward(s->x).backward(s->seed); },
          3.0 * 2 * n * (cout * 4) * hw * hw * (cin * 4) * 9, 20};
}

const Registrar registrar("group", [] {
  return std::vector<Workload>{p4conv_workload(64, 16, 16, 28), conv_workload(conv_name(64, 64, 28), 64, 64, 64, 28)};
});

}  // namespace
}  // namespace eq::bench
