// equilab — SmallResNet: a CPU-sized residual encoder for 32x32 RGB and 28x28 grey images (the SIE backbone; the
// reference uses a ResNet-18 at 256x256).
//
//   [N, C, H, W] -> conv3x3(C -> w)-BN-ReLU                         at H x W       (stem, stride 1)
//                -> BasicBlock(w -> 2w, stride 2)                    at H/2          32x32: 16x16, 28x28: 14x14
//                -> BasicBlock(2w -> 4w, stride 2)                   at H/4          8x8 / 7x7
//                -> BasicBlock(4w -> out_dim, stride 2)              at H/8          4x4 / 4x4
//                -> global average pool                              [N, out_dim]    (the representation)
// BasicBlock(in -> out, s): relu(BN(conv3x3(relu(BN(conv3x3_s(x))))) + shortcut(x)), shortcut = BN(conv1x1_s) when
// the shape changes. Every block's last BN starts with gamma = 0 (the reference's zero_init_residual), so each
// block starts as its shortcut. Convs have no bias (BN follows). The representation is non-negative (after ReLU),
// as a ResNet's. Only the stem works at full resolution, where it has few input channels: with w = 16 and
// out_dim = 128 a 32x32 image costs ~23 MFLOP forward (w = 32: ~70), so one SIE step on 128 pairs (256 images,
// forward + backward) is ~18 GFLOP.
#pragma once
#include <memory>

#include "engine/rng.h"
#include "layers/batch_norm.h"
#include "layers/conv2d.h"
#include "layers/module.h"

namespace eq {

class BasicBlock : public Module {
 public:
  BasicBlock(int in_channels, int out_channels, int stride, Rng& rng);
  Tensor forward(const Tensor& x) override;
  std::string name() const override;

 private:
  int in_, out_, stride_;
  std::shared_ptr<Conv2d> conv1_, conv2_, shortcut_conv_;  // shortcut_conv_ null for the identity shortcut
  std::shared_ptr<BatchNorm> bn1_, bn2_, shortcut_bn_;
};

class SmallResNet : public Module {
 public:
  // in_channels 1 (grey) or 3 (RGB), any H, W >= 8; out_dim: the representation size; width: the stem's channels.
  SmallResNet(int in_channels, int out_dim, Rng& rng, int width = 16);
  Tensor forward(const Tensor& x) override;  // [N, in_channels, H, W] -> [N, out_dim]
  std::string name() const override;
  int out_dim() const { return out_dim_; }

 private:
  int in_channels_, out_dim_, width_;
  std::shared_ptr<Conv2d> stem_;
  std::shared_ptr<BatchNorm> stem_bn_;
  std::shared_ptr<BasicBlock> block1_, block2_, block3_;
};

}  // namespace eq
