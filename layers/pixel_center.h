// equilab — PixelCenter: subtract the per-location batch mean of a feature map (FMICON, REFERENCES.md section 6).
//
// Training: y = x - mean_n(x), the mean over the batch taken separately for every (c, h, w), and the running mean
//           [C, H, W] moves towards it: running = (1 - momentum) running + momentum mean_n(x).
// Eval:     y = x - running.
// Why: a network can otherwise encode "where am I" in a constant per-position vector, which solves a dense
// matching loss without looking at the image; removing the per-position mean takes that shortcut away. In training
// the gradient flows through the mean (like batch norm). With a batch of 1 the training output is all zeros.
#pragma once
#include "layers/module.h"

namespace eq {

class PixelCenter : public Module {
 public:
  PixelCenter(int64_t channels, int64_t height, int64_t width, float momentum = 0.1f);
  Tensor forward(const Tensor& x) override;  // x [N, C, H, W] with the constructor's C, H, W
  std::string name() const override;
  Tensor running_mean;  // buffer [C, H, W], zeros at start: saved in checkpoints, not trained

 private:
  int64_t channels_, height_, width_;
  float momentum_;
};

}  // namespace eq
