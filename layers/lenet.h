// equilab — LeNet-style classifier (the benchmark's `train_step_lenet` model):
//   [N, C, H, W] -> conv 3x3 (C->32, pad 1), ReLU, maxpool 2 -> conv 3x3 (32->64, pad 1), ReLU, maxpool 2
//   -> flatten [N, 64 * H/4 * W/4] -> Linear(->128), ReLU -> Linear(128 -> classes)
// For MNIST (1x28x28) the flattened size is 64*7*7 = 3136, as in ../shared/bench/torch_reference.py.
#pragma once
#include "engine/rng.h"
#include "layers/sequential.h"

namespace eq {

std::shared_ptr<Sequential> make_lenet(int in_channels, int image_size, int num_classes, Rng& rng);

}  // namespace eq
