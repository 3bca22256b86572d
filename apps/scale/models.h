// equilab scale study — the six compared architectures, all the SESN MNIST CNN layout scaled down for CPU:
//
//   3 x [conv 7x7 (pad 3), ReLU, max-pool 2, BN]  ->  [N, c3, 3, 3]  ->  flatten, FC hidden, BN, ReLU, dropout, FC
//
//   cnn          plain Conv2d
//   deform_cnn   DeformConv2d (v1, zero-initialised offset branch) in place of conv 2 and 3
//   dss_v1       ScaleLift (Gaussian) then ScaleConv blocks (per-scale max-pool, BN shared over scales), then
//                ScalePool over the scale axis before the head
//   dss_v2       the same with BilinearScaleLift
//   deform_dss   dss_v1 with DeformScaleConv in place of scale conv 2 and 3
//   p4cnn        P4Lift / P4Conv blocks (per-rotation max-pool), P4Pool (max over rotations) before the head
//
// With Ks = 1 a scale conv has exactly a Conv2d's parameters, so the DSS models match the CNN; a p4 conv has 4x a
// Conv2d's weights, so the p4 net uses p4_width (about 1/2) of the channels.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "engine/rng.h"
#include "layers/scale_pool.h"
#include "layers/sequential.h"

namespace eq {

struct ScaleModelConfig {
  std::vector<int> channels{12, 24, 32};  // conv blocks 1..3 (SESN: 32 / 63 / 95; scaled down for CPU)
  int hidden = 128;                        // FC (SESN: 256)
  float dropout = 0.7f;                    // SESN's
  int kernel = 7;
  // DSS settings (REFERENCES.md section 2, the SESN reimplementation): base 2, sigma0 0.25, 2 scales, Ks 1.
  float base = 2.0f, sigma0 = 0.25f;
  int scales = 2, interaction = 1;
  ScalePoolMode scale_pool = ScalePoolMode::Mean;  // the study averages over scales
  float p4_width = 0.5f;                           // p4 channels = round(p4_width * channels)
};

// A built model and where to look inside it.
struct ScaleModel {
  std::string kind;                   // one of scale_model_kinds()
  std::shared_ptr<Sequential> net;
  // Probes for the equivariance error: (name, index of the Sequential child whose output is measured). "conv1" ..
  // "conv3" are each block's ReLU output (before its pool; conv3 is the last conv layer), "logits" the output.
  std::vector<std::pair<std::string, size_t>> probes;
  bool scale_space = false;           // rank-5 maps carry a scale axis (project it before comparing maps)
};

const std::vector<std::string>& scale_model_kinds();

// The substring naming the offset-predicting parameters (DeformConv2d's / DeformScaleConv's child "offset_conv"):
// the study trains them at a fraction of the learning rate (TrainConfig::lr_multipliers).
inline const char* const kOffsetParamPattern = "offset";

ScaleModel make_scale_model(const std::string& kind, const ScaleModelConfig& config, int in_channels,
                            int num_classes, Rng& rng);

}  // namespace eq
