// equilab — Dropout layer: inverted dropout in training, identity in eval. Owns its random stream, seeded from
// the model's Rng at construction, so a run with the same seed drops the same units.
#pragma once
#include "engine/rng.h"
#include "layers/module.h"

namespace eq {

class Dropout : public Module {
 public:
  Dropout(float p, Rng& rng);
  Tensor forward(const Tensor& x) override;
  std::string name() const override { return "Dropout(" + std::to_string(p_) + ")"; }

 private:
  float p_;
  Rng rng_;
};

}  // namespace eq
