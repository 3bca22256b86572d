// equilab — the FMICON feature-map inverse-consistency loss (FeatureMapICON, REFERENCES.md section 6), blocked in
// the style of flash attention so that the P x P similarity matrices are never stored.
//
// Per batch element, with the four feature maps flattened to pixels x channels (A maps [PA, D], B maps [PB, D]):
//
//   L = sum_{i in A} log( sum_{j in B} rowsoftmax_j(A1 B1^T)_ij * colsoftmax_i(A2 B2^T)_ij  + epsilon )
//
// rowsoftmax normalises over the B pixels j for each A pixel i, colsoftmax over the A pixels i for each j. L is
// log P[Phi_AB o Phi_BA(x) = x] summed over the pixels of A, at most 0 (epsilon = 0). A1 = F~A, B1 = F.B,
// A2 = F^A, B2 = FvB come from four independent augmentation draws. The loss returned is -L (to be minimised),
// averaged over the N * PA pixels (Mean, as FeatureMapICON) or summed (Sum, as shared/bench/torch_reference.py).
//
// "Attempt 0" of the write-up: one fixed vector per pixel position, identical in all four maps, with a growing
// norm, drives both softmaxes to the identity and -L to 0 (to -PA log(1 + epsilon) with an epsilon): a perfect
// loss that learns nothing, which is why the maps must come from different augmentations.
//
// Memory: O(N * P) saved statistics; per thread one (forward) or two (backward) column panels [PA, panel_cols]
// and chunks [48, panel_cols] of the similarity matrices and, in the backward, partial dA1, dA2 [N, PA, D]. These
// scratch buffers are kept per thread between calls, on 2 MB pages where Linux allows (engine/huge_page_buffer.h).
// The dense reference keeps P x P.
#pragma once
#include "engine/tensor.h"

namespace eq {

enum class IconReduction {
  Mean,  // -(1 / (N * PA)) sum_n L_n: the mean over A's pixels, as FeatureMapICON trains
  Sum,   // -sum_n L_n: as torch_reference.py's icon_loss summed over the batch
};

struct IconOptions {
  IconReduction reduction = IconReduction::Mean;
  // Added inside the log. 0 (the default) is the write-up's definition; FeatureMapICON's code adds 1e-4, which
  // bounds the loss of a pixel by -log(epsilon) and moves the "attempt 0" limit from 0 to -log(1 + epsilon).
  // The loss is computed in the log domain, so epsilon = 0 is finite and stable however poor the match.
  float epsilon = 0.0f;
  // Width of the column panels [PA, panel_cols] that both passes walk (a speed/memory knob only: the result does
  // not depend on it beyond float rounding). Multiples of 16 suit the micro-kernel.
  int64_t panel_cols = 64;
};

// a1, a2: [N, PA, D]; b1, b2: [N, PB, D] (pixel-major rows of D features). Returns a scalar; gradients flow to all
// four inputs. Errors name "icon_loss" and the four shapes.
Tensor icon_loss(const Tensor& a1, const Tensor& b1, const Tensor& a2, const Tensor& b2,
                 const IconOptions& options = {});

// The dense reference: materialises the P x P matrices in double precision (same statistics, same log-domain
// formulas, no blocking or threads). For tests and small sizes only; differentiable like icon_loss.
Tensor icon_loss_dense(const Tensor& a1, const Tensor& b1, const Tensor& a2, const Tensor& b2,
                       const IconOptions& options = {});

// A network's feature map [N, D, H, W] -> the [N, H * W, D] pixel rows icon_loss takes (pixel index y * W + x).
// Differentiable (a permute and a reshape).
Tensor icon_pixels(const Tensor& feature_map);

}  // namespace eq
