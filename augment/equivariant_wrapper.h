// equilab — EquivariantAugmentation: FMICON's "warp -> network -> unwarp" as a Module.
//
// forward(x) = w.inverse(net(w.apply(x))) with a warp w drawn afresh for every call from a WarpSampler. The warp
// and unwarp are differentiable ops, so the loss's gradient flows through the unwarp and the warp into the
// network's parameters (and into x, if it requires grad). The wrapper registers the network as its child "net",
// so parameters(), checkpoints and train()/eval() see through it.
#pragma once
#include <functional>
#include <memory>

#include "augment/warp.h"
#include "layers/module.h"

namespace eq {

// Draws a warp for the batch x (it may read x's shape). A sampler owns whatever Rng it uses.
using WarpSampler = std::function<Warp(const Tensor& x)>;

// fmicon_warp(N, H, W, rng, sigma) for each batch, from an Rng seeded with `seed` and owned by the sampler.
WarpSampler fmicon_sampler(uint64_t seed, float sigma = 0.05f);

class EquivariantAugmentation : public Module {
 public:
  // warp_in_eval: whether eval mode warps too (default: eval mode is plain net(x), as at test time in FMICON).
  EquivariantAugmentation(std::shared_ptr<Module> net, WarpSampler sampler, bool warp_in_eval = false);
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "EquivariantAugmentation(" + net_->name() + ")"; }
  // The warp used by the last forward call that warped (name "" before the first).
  const Warp& last_warp() const { return last_; }
  Module& net() { return *net_; }

 private:
  std::shared_ptr<Module> net_;
  WarpSampler sampler_;
  bool warp_in_eval_;
  Warp last_;
};

}  // namespace eq
