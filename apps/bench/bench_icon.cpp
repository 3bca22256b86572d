// equilab bench — the FMICON loss, forward + backward, the workload torch_reference.py times as icon_fwd_bwd:
// batch 4, D = 32, P = hw * hw pixels per map, four randn maps [4, P, 32] that require grad, the loss summed over
// pixels and batch (IconReduction::Sum, as the reference's sum of per-sample .sum()), gradients to all four maps.
// PyTorch materialises 4096 x 4096 matrices at hw = 64; the blocked op keeps O(P) statistics.
#include "apps/bench/bench.h"
#include "engine/autograd.h"
#include "engine/rng.h"
#include "losses/icon.h"

namespace eq::bench {
namespace {

Workload icon_workload(int64_t hw, int64_t d, int64_t batch, int reps) {
  Rng rng(0);
  std::vector<Tensor> maps;
  for (int k = 0; k < 4; ++k) maps.push_back(Tensor::randn({batch, hw * hw, d}, rng).set_requires_grad());
  IconOptions opt;
  opt.reduction = IconReduction::Sum;
  // FLOPs of the panel products, each 2 * P^2 * D per sample: S1 and S2 in the forward, S1 and S2 recomputed and
  // the four gradient products in the backward (8 in all); the exps are not counted.
  const double p = static_cast<double>(hw * hw);
  const double flops = 8.0 * 2.0 * p * p * static_cast<double>(d * batch);
  return {"icon_fwd_bwd_" + std::to_string(hw) + "_d" + std::to_string(d),
          [maps, opt] { icon_loss(maps[0], maps[1], maps[2], maps[3], opt).backward(); }, flops, reps};
}

// 128x128 (P = 16,384) has no PyTorch counterpart in torch_reference.py (its dense matrices would be 1 GB each): it
// is here for the memory claim, `/usr/bin/time -v build/bench --only icon_fwd_bwd_128` (peak RSS).
std::vector<Workload> icon_workloads() {
  return {icon_workload(28, 32, 4, 10), icon_workload(64, 32, 4, 5), icon_workload(128, 32, 4, 2)};
}

Registrar icon_registrar("icon", icon_workloads);

}  // namespace
}  // namespace eq::bench
