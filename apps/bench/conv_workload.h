// equilab bench — the plain conv2d workload every group compares against: batch n, cin -> cout channels, hw x hw,
// 3x3 kernel, zero padding = dilation (same size), bias; x, weight and bias require grad. One call is forward +
// backward of sum(y) (seeded with ones, which is what sum().backward() seeds): grad-input, grad-weight and
// grad-bias, accumulating across calls as PyTorch's do. FLOPs = 3 x 2 N Cout H W Cin 9.
#pragma once
#include <memory>
#include <string>

#include "apps/bench/bench.h"
#include "engine/autograd.h"
#include "engine/conv.h"
#include "engine/rng.h"

namespace eq::bench {

inline Workload conv_workload(std::string name, int64_t n, int64_t cin, int64_t cout, int64_t hw, int dilation = 1,
                              int reps = 20, uint64_t seed = 0) {
  struct State {
    Tensor x, w, b, ones;
    Conv2dOptions opt;
  };
  Rng rng(seed);
  auto s = std::make_shared<State>();
  s->x = Tensor::randn({n, cin, hw, hw}, rng).set_requires_grad();
  s->w = Tensor::randn({cout, cin, 3, 3}, rng, 0, 0.1f).set_requires_grad();
  s->b = Tensor::randn({cout}, rng).set_requires_grad();
  s->ones = Tensor::ones({n, cout, hw, hw});
  s->opt.dilation_h = s->opt.dilation_w = dilation;
  s->opt.pad_h = s->opt.pad_w = dilation;
  return {std::move(name), [s] { conv2d(s->x, s->w, s->b, s->opt).backward(s->ones); },
          3.0 * 2 * n * cout * hw * hw * cin * 9, reps};
}

// The name bench_kernels.cpp and ../shared/bench/torch_reference.py use: conv_fwd_bwd_<cin>_<cout>_<hw>.
inline std::string conv_name(int64_t cin, int64_t cout, int64_t hw) {
  return "conv_fwd_bwd_" + std::to_string(cin) + "_" + std::to_string(cout) + "_" + std::to_string(hw);
}

}  // namespace eq::bench
