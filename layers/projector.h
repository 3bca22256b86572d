// equilab — the VICReg / SIE projector ("expander"): representation -> embedding, where the SSL losses act.
//
//   Linear(in -> hidden) - BatchNorm1d(hidden) - ReLU - Linear(hidden -> out, no bias)     [N, in] -> [N, out]
//
// The reference's Projector(repr, "h-...-out") with one hidden layer: every hidden Linear is followed by BN and
// ReLU, the last Linear has no bias and no activation (REFERENCES.md section 7).
#pragma once
#include <memory>

#include "engine/rng.h"
#include "layers/sequential.h"

namespace eq {

std::shared_ptr<Sequential> make_projector(int64_t in_features, int64_t hidden, int64_t out_features, Rng& rng);

}  // namespace eq
