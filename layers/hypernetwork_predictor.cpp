#include "layers/hypernetwork_predictor.h"

#include <cmath>

#include "engine/elementwise.h"
#include "engine/matmul.h"
#include "engine/reduce.h"
#include "engine/shape_ops.h"

namespace eq {

HypernetworkPredictor::HypernetworkPredictor(int64_t embed_dim, int64_t group_dim, Rng& rng, float init_bound)
    : embed_(embed_dim), group_(group_dim) {
  check(embed_dim > 0 && group_dim > 0, "HypernetworkPredictor: embed_dim and group_dim must be positive (got ",
        embed_dim, ", ", group_dim, ")");
  const float bound = init_bound > 0 ? init_bound : std::sqrt(3.0f / static_cast<float>(embed_dim));
  weight = register_parameter("weight", Tensor::uniform({group_dim, embed_dim, embed_dim}, rng, -bound, bound));
}

Tensor HypernetworkPredictor::predict(const Tensor& z, const Tensor& g) {
  check(z.defined() && g.defined(), name(), ": undefined input");
  if (z.dim() != 2 || z.size(1) != embed_ || g.dim() != 2 || g.size(1) != group_ || g.size(0) != z.size(0))
    fail(name(), ": expects embeddings [B, ", embed_, "] and group elements [B, ", group_, "], got ", z.shape(),
         " and ", g.shape());
  const int64_t b = z.size(0);
  // zA[b, i, j] = sum_k z[b, k] A_i[j, k]: weight viewed as [G E, E] is the stacked A_i, and linear() multiplies
  // by its transpose.
  Tensor za = reshape(linear(z, reshape(weight, {group_ * embed_, embed_})), {b, group_, embed_});
  // out[b, j] = sum_i g[b, i] zA[b, i, j]
  return sum(za * reshape(g, {b, group_, 1}), {1});
}

Tensor HypernetworkPredictor::forward(const Tensor& z_and_g) {
  if (z_and_g.dim() != 2 || z_and_g.size(1) != embed_ + group_)
    fail(name(), ": forward expects [z, g] concatenated, [B, ", embed_ + group_, "], got ", z_and_g.shape());
  return predict(slice(z_and_g, 1, 0, embed_), slice(z_and_g, 1, embed_, embed_ + group_));
}

Tensor HypernetworkPredictor::matrix(const std::vector<float>& g) const {
  if (static_cast<int64_t>(g.size()) != group_)
    fail(name(), ": matrix needs a group element of ", group_, " numbers, got ", g.size());
  Tensor a({embed_, embed_});
  const int64_t ee = embed_ * embed_;
  for (int64_t i = 0; i < group_; ++i)
    for (int64_t k = 0; k < ee; ++k) a.data()[k] += g[static_cast<size_t>(i)] * weight.data()[i * ee + k];
  return a;
}

std::string HypernetworkPredictor::name() const {
  return "HypernetworkPredictor(E=" + std::to_string(embed_) + ", G=" + std::to_string(group_) + ")";
}

}  // namespace eq
