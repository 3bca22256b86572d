#include "augment/equivariant_wrapper.h"

namespace eq {

WarpSampler fmicon_sampler(uint64_t seed, float sigma) {
  auto rng = std::make_shared<Rng>(seed);
  return [rng, sigma](const Tensor& x) {
    check(x.defined() && x.dim() == 4, "fmicon_sampler: expected images [N, C, H, W], got ",
          x.defined() ? x.shape() : Shape{});
    return fmicon_warp(x.size(0), x.size(2), x.size(3), *rng, sigma);
  };
}

EquivariantAugmentation::EquivariantAugmentation(std::shared_ptr<Module> net, WarpSampler sampler, bool warp_in_eval)
    : net_(std::move(net)), sampler_(std::move(sampler)), warp_in_eval_(warp_in_eval) {
  check(net_ != nullptr, "EquivariantAugmentation: the network is null");
  check(static_cast<bool>(sampler_), "EquivariantAugmentation: the warp sampler is empty");
  register_module("net", net_);
}

Tensor EquivariantAugmentation::forward(const Tensor& x) {
  if (!is_training() && !warp_in_eval_) return net_->forward(x);
  Warp warp = sampler_(x);
  check(static_cast<bool>(warp.apply) && warp.has_inverse(), "EquivariantAugmentation: warp '", warp.name,
        "' has no inverse to unwarp the output of ", net_->name(), " (input ",
        x.defined() ? x.shape() : Shape{}, ")");
  const Tensor out = warp.inverse(net_->forward(warp.apply(x)));
  last_ = std::move(warp);
  return out;
}

}  // namespace eq
