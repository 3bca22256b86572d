// equilab scale study — the scale-equivariance error Delta at the probes of a model (REFERENCES.md section 3).
//
// For a rescaling L_s (rescale_transform: bicubic about the centre, zero border) and a probe's feature map Phi:
//
//     Delta(s) = sum_n ||L_s Phi(x_n) - Phi(L_s x_n)||^2 / sum_n ||L_s Phi(x_n)||^2      (ratio of sums)
//
// Scale-space maps [N, C, S, H, W] are first projected over the scale axis with the model's own scale pooling:
// rescaling an image by s moves its content along the scale axis (by -log_b s scales), which a plane-by-plane
// rescale cannot express, and the projection is what the network itself does before its head (SESN measures the
// scale-projected features likewise). Plain maps and p4 maps (whose extra axis is rotation, untouched by scaling)
// are compared as they are; logits [N, K] are compared without any transform, i.e. Delta measures invariance.
#pragma once
#include <vector>

#include "apps/scale/models.h"
#include "engine/tensor.h"

namespace eq {

// One Delta per probe of `model` (in model.probes' order) for factor s, over all of `images` [N, C, H, W]
// (in chunks of `batch`); the model runs in eval mode without a tape.
std::vector<double> probe_equivariance_errors(ScaleModel& model, const Tensor& images, float factor,
                                              ScalePoolMode projection, int64_t batch = 256);

}  // namespace eq
