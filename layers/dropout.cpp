#include "layers/dropout.h"

#include "engine/norm.h"

namespace eq {

Dropout::Dropout(float p, Rng& rng) : p_(p), rng_(rng.next_u64()) {
  check(p >= 0.0f && p < 1.0f, "Dropout: probability must be in [0, 1) (got ", p, ")");
}

Tensor Dropout::forward(const Tensor& x) { return dropout(x, p_, is_training(), rng_); }

}  // namespace eq
