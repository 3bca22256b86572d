// equilab — UNet: a small U-Net giving a D-dimensional feature vector per pixel (FMICON's backbone, REFERENCES.md
// section 6; Ronneberger et al. 2015 in miniature).
//
// With L levels and base width w (L = 3 shown), on x [N, Cin, H, W]:
//
//   enc0 = block(Cin -> w)(x)                                   [N, w,  H,   W  ]
//   enc1 = block(w -> 2w)(maxpool2(enc0))                       [N, 2w, H/2, W/2]
//   enc2 = block(2w -> 4w)(maxpool2(enc1))      (the bottom)    [N, 4w, H/4, W/4]
//   dec1 = block(4w + 2w -> 2w)(concat(up(enc2), enc1))         [N, 2w, H/2, W/2]
//   dec0 = block(2w + w -> w)(concat(up(dec1), enc0))           [N, w,  H,   W  ]
//   out  = conv1x1(w -> D)(dec0)                                [N, D,  H,   W  ]
//
// block = (conv3x3 without bias - BatchNorm - ReLU) twice; maxpool2 = 2x2 max pooling, stride 2 (floor, so an odd
// side loses its last row or column); up = bilinear resize (align_corners = false) to the skip's exact size, which
// makes any H, W >= 2^(L-1) work, odd ones included (the skip keeps the full-resolution detail the pooling
// dropped). The output has the input's H, W. The head is linear: FMICON normalises its output afterwards
// (FeatureBallNorm), so no activation here.
//
// Padding is zeros by default: the borders then tell the network where it is, which is exactly the shortcut the
// FMICON attempts 0-2 fall into (a position code per pixel). Away from the borders (beyond the receptive field,
// about 30 px for L = 3) the network commutes with shifts by multiples of 2^(L-1), and only with those: max
// pooling samples a fixed stride-2 grid (tested). Circular padding removes the border from the convolutions but not
// from the bilinear upsampling, which repeats the edge pixel.
#pragma once
#include <memory>
#include <vector>

#include "engine/rng.h"
#include "engine/shape_ops.h"
#include "layers/module.h"
#include "layers/sequential.h"

namespace eq {

class UNet : public Module {
 public:
  // levels >= 1 (1 = two conv blocks at full resolution and the head, no pooling). Weights from `rng`
  // (PyTorch's default conv initialisation; BatchNorm gamma 1, beta 0).
  UNet(int in_channels, int out_channels, int base_width, Rng& rng, int levels = 3, PadMode padding = PadMode::Zeros);
  // x [N, in_channels, H, W] with H, W >= min_size() -> [N, out_channels, H, W].
  Tensor forward(const Tensor& x) override;
  std::string name() const override;

  int levels() const { return levels_; }
  int64_t min_size() const { return int64_t{1} << (levels_ - 1); }  // smallest H or W the pooling leaves >= 1

 private:
  int in_, out_, width_, levels_;
  std::vector<std::shared_ptr<Sequential>> down_;  // levels blocks, level k outputs base_width << k channels
  std::vector<std::shared_ptr<Sequential>> up_;    // levels - 1 blocks; up_[k] outputs base_width << k channels
  std::shared_ptr<Module> head_;
};

}  // namespace eq
