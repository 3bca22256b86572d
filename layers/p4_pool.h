// equilab — pooling for p4 feature maps [N, C, 4, H, W].
//
//   P4Pool          max (or mean) over the rotation axis -> [N, C, H, W]. Rotating the input of a p4 net permutes
//                   that axis cyclically (and rotates the maps), so the result is rotation-EQUIVARIANT as a plain
//                   map, and after a global spatial pool rotation-INVARIANT: the invariant logits of a P4CNN.
//   p4_max_pool2d   spatial max pooling of every rotation channel on its own: the view [N, C*4, H, W] through
//   P4MaxPool2d     max_pool2d and back. Exactly equivariant when the pooling windows tile the map symmetrically
//                   (kernel = stride dividing H and W, e.g. 2x2 on 28x28); on odd sizes the last row/column is
//                   dropped on one side only, which breaks it.
#pragma once
#include "engine/pool.h"
#include "layers/module.h"

namespace eq {

enum class P4PoolMode { Max, Mean };

Tensor p4_rotation_pool(const Tensor& x, P4PoolMode mode = P4PoolMode::Max);  // [N,C,4,H,W] -> [N,C,H,W]
Tensor p4_max_pool2d(const Tensor& x, const Pool2dOptions& opt);                // [N,C,4,H,W] -> [N,C,4,Ho,Wo]

class P4Pool : public Module {
 public:
  explicit P4Pool(P4PoolMode mode = P4PoolMode::Max) : mode_(mode) {}
  Tensor forward(const Tensor& x) override { return p4_rotation_pool(x, mode_); }
  std::string name() const override { return mode_ == P4PoolMode::Max ? "P4Pool(max)" : "P4Pool(mean)"; }

 private:
  P4PoolMode mode_;
};

class P4MaxPool2d : public Module {
 public:
  explicit P4MaxPool2d(int kernel, int stride = -1);  // stride -1: = kernel
  Tensor forward(const Tensor& x) override { return p4_max_pool2d(x, opt_); }
  std::string name() const override;

 private:
  Pool2dOptions opt_;
};

}  // namespace eq
