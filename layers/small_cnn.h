// equilab — the small CNN of the benchmark (`train_step_smallcnn`), a VGG-like net for CIFAR-scale images:
//   [N, C, H, W] -> [conv3x3-BN-ReLU] x2 at 32 ch -> x2 at 64 ch (first stride 2) -> x2 at 128 ch (first stride 2)
//   -> global average pool [N, 128] -> Linear(128 -> classes).  Convs have no bias (BN follows).
#pragma once
#include "engine/rng.h"
#include "layers/sequential.h"

namespace eq {

std::shared_ptr<Sequential> make_small_cnn(int in_channels, int num_classes, Rng& rng);

}  // namespace eq
