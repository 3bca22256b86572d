#include "layers/projector.h"

#include "layers/activation.h"
#include "layers/batch_norm.h"
#include "layers/linear.h"

namespace eq {

std::shared_ptr<Sequential> make_projector(int64_t in_features, int64_t hidden, int64_t out_features, Rng& rng) {
  check(in_features > 0 && hidden > 0 && out_features > 0, "make_projector: sizes must be positive (in ",
        in_features, ", hidden ", hidden, ", out ", out_features, ")");
  auto net = std::make_shared<Sequential>();
  net->add(std::make_shared<Linear>(in_features, hidden, rng))
      .add(std::make_shared<BatchNorm1d>(hidden))
      .add(std::make_shared<ReLU>())
      .add(std::make_shared<Linear>(hidden, out_features, rng, /*bias=*/false));
  return net;
}

}  // namespace eq
