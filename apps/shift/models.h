// equilab shift app — the models it compares, every one a FLAT Sequential so that per-layer errors see each conv,
// ReLU and pooling step on its own row.
//
// Shift study (1 x S x S images, S divisible by 4; c1 = 16, c2 = 32 channels, hidden 64):
//   maxpool        conv3x3 - ReLU - MaxPool2d(2)      - conv3x3 - ReLU - MaxPool2d(2)      - Flatten - FC - ReLU - FC
//   maxblur(f)     conv3x3 - ReLU - MaxBlurPool(2, f) - conv3x3 - ReLU - MaxBlurPool(2, f) - ...   (Zhang's fix)
//   strided        conv3x3 stride 2 - ReLU - conv3x3 stride 2 - ReLU - ...
//   convblur(f)    conv3x3 - ReLU - BlurPool(f) - conv3x3 - ReLU - BlurPool(f) - ...                (Zhang's fix)
// MaxBlurPool with f = 1 computes exactly MaxPool2d(2) (max at stride 1, then every other sample), so maxblur(1) is
// the baseline; the app builds f = 1 as a real MaxPool2d and tests/test_shift_app.cpp checks the two agree.
// Convs use zero "same" padding, blur-pools reflect padding (the reference defaults).
//
// Rotation study (global pooling at the end, so the logits of the p4 net are exactly invariant to quarter turns):
//   plain  conv3x3(1 -> 2c) - ReLU - MaxPool2d(2) - conv3x3(2c -> 4c) - ReLU - MaxPool2d(2) - conv3x3(4c -> 4c) -
//          ReLU - GlobalAvgPool - FC
//   p4     P4Lift(1 -> c) - ReLU - P4MaxPool2d(2) - P4Conv(c -> 2c) - ReLU - P4MaxPool2d(2) - P4Conv(2c -> 2c) - ReLU -
//          P4Pool(max over rotations) - GlobalAvgPool - FC
// A p4 layer with base channels c has 4x the weights per input channel of a plain layer (4 input rotations), so
// doubling the plain widths gives about the same parameter count (the p4 net computes ~2x more).
#pragma once
#include <memory>
#include <string>

#include "engine/rng.h"
#include "layers/sequential.h"

namespace eq {

// kind: "maxpool", "maxblur", "strided" or "convblur"; filter_size 1..7 is used by the blur kinds.
std::shared_ptr<Sequential> make_shift_model(const std::string& kind, int filter_size, int image_size,
                                             int num_classes, Rng& rng);
// "maxpool", "maxblur f=3", "strided", "convblur f=3": a label for tables and legends.
std::string shift_model_label(const std::string& kind, int filter_size);

// kind: "plain" or "p4"; base_channels c as in the header comment.
std::shared_ptr<Sequential> make_rotation_model(const std::string& kind, int base_channels, int num_classes,
                                                Rng& rng);

}  // namespace eq
