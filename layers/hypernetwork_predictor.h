// equilab — HypernetworkPredictor: SIE's predictor, a linear map whose matrix is a linear function of the group
// element (REFERENCES.md section 7; the reference's ParametrizedNet with the "linear" hypernetwork, no bias, no ReLU).
//
//   A(g) = sum_i g_i A_i   (group_dim matrices A_i [E, E]),    predict(z, g)[b] = A(g[b]) z[b]
//   z [B, E] (the first view's equivariant embedding), g [B, G] (the relative group element) -> [B, E]
//
// Because A(g) is linear in g, the predictor can only act on the embedding the way the group element's
// coordinates allow: with g = (cos t, sin t) it can learn A(g) = cos t A_0 + sin t A_1, a rotation by t in planes
// of the embedding. The layer computes z A_i^T for every i with one GEMM ([B, E] x [E, G E]) and then the
// g-weighted sum, so it never builds the B matrices A(g[b]).
//
// Module::forward takes one tensor: forward([z, g]) accepts the two concatenated along the features ([B, E + G]),
// which lets code that holds any predictor as a Module (SieModel) call it alike; predict(z, g) is the explicit form.
#pragma once
#include "engine/rng.h"
#include "layers/module.h"

namespace eq {

class HypernetworkPredictor : public Module {
 public:
  // A_i initialised uniform in +-init_bound. The default (init_bound <= 0) is sqrt(3 / E): for a unit group
  // element (a unit quaternion, or (cos, sin)) the entries of A(g) then have variance 1 / E, so A(g) z keeps the
  // scale of z at the start. (The reference inherits PyTorch's Linear(G, E * E) default, +-1/sqrt(G), which
  // magnifies z about sqrt(E / 12) times: harmless over 2000 GPU epochs, slow to undo in a short CPU run.)
  HypernetworkPredictor(int64_t embed_dim, int64_t group_dim, Rng& rng, float init_bound = 0);
  Tensor predict(const Tensor& z, const Tensor& g);
  Tensor forward(const Tensor& z_and_g) override;  // [B, E + G] -> [B, E]
  std::string name() const override;

  int64_t embed_dim() const { return embed_; }
  int64_t group_dim() const { return group_; }
  // A(g) for one group element (g has G numbers): [E, E]. For tests and inspection (no gradient).
  Tensor matrix(const std::vector<float>& g) const;

  Tensor weight;  // [G, E, E]: weight[i] = A_i

 private:
  int64_t embed_, group_;
};

}  // namespace eq
