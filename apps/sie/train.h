// equilab apps/sie — the self-supervised methods SIE compares, and their training loop (REFERENCES.md section 7).
//
// Every method trains an encoder images -> representation [B, R] (R = inv_dim + equi_dim) on pairs of views with
// a known relative group element g (apps/sie/views.h). The methods differ in what is split and what predicts:
//   "vicreg"          no split, no predictor: VICReg on the projected full representation (invariant only).
//   "equimod"         no split; two projectors on the full representation, an invariant one (VICReg) and an
//                     equivariant one, where an MLP predictor on [z1, g] predicts z2 (EquiMod-like; the reference's
//                     VICRegEquiMod).
//   "hyper"           no split; the hypernetwork predictor A(g) z1 = (sum_i g_i A_i) z1 predicts z2.
//   "sie"             split: VICReg invariance on the invariant part; the hypernetwork predictor on the
//                     equivariant part; variance terms on both views and on the prediction (SIE).
//   "sie-no-pred-var" SIE without the prediction's variance term (the ablation that tends to collapse).
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "apps/sie/views.h"
#include "layers/module.h"

namespace eq {

const std::vector<std::string>& sie_method_names();  // the five names above, in that order

struct SieConfig {
  std::string method = "sie";
  int inv_dim = 64, equi_dim = 64;   // representation split; methods without split use R = inv_dim + equi_dim whole
  int projector_dim = 256;           // hidden and output width of each projector
  int encoder_width = 16;            // SmallResNet stem channels (stages w, 2w, 4w, then R): compute ~ width^2
  float equi_factor = 0.45f;         // SIE's weight of the equivariant prediction term (its README command)
  int epochs = 10;
  int batch_size = 128;              // pairs per step
  float lr = 1e-3f;                  // Adam
  float weight_decay = 1e-6f;
  uint64_t seed = 0;
  bool verbose = true;               // progress bar per epoch
};

// One line of the training log: means over the epoch's steps of the total loss and of its unweighted terms
// (invariance and equivariance MSE; variance = the views' hinge plus, for SIE, the prediction's; covariance;
// equimod adds its invariant and equivariant heads' variance and covariance terms).
struct SieEpochLog {
  int epoch = 0;
  double loss = 0, invariance = 0, equivariance = 0, variance = 0, covariance = 0, seconds = 0;
};

// A trained model. All methods expose the same three maps so evaluation treats them alike.
struct SieModel {
  SieConfig config;
  int group_dim = 0;
  bool split = false;                      // true for sie and sie-no-pred-var
  std::shared_ptr<Module> encoder;         // images -> [B, R]
  std::shared_ptr<Module> projector_inv;   // (split) invariant part -> embedding; (no split) full -> embedding
  std::shared_ptr<Module> projector_equi;  // (split) equivariant part -> embedding; (equimod) full -> equivariant
                                           // embedding; null for vicreg and hyper
  std::shared_ptr<Module> predictor;       // null for vicreg; forward takes [z, g] concatenated, [N, E + G]

  int representation_dim() const { return config.inv_dim + config.equi_dim; }
  // Frozen representations [N, R] of images [N, C, H, W] (eval mode, no gradient, batched internally). With the
  // split, columns [0, inv_dim) are the invariant part and [inv_dim, R) the equivariant part.
  Tensor represent(const Tensor& images) const;
  // The embeddings the predictor acts on, [N, E] with E = projector_dim (eval mode, no gradient): the
  // equivariant projector's output when there is one (sie, sie-no-pred-var, equimod), the projector's otherwise.
  Tensor embed(const Tensor& images) const;
  // The predicted embedding of the second view from the first view's embedding [N, E] and the relative group
  // element [N, group_dim]. Throws for vicreg (no predictor).
  Tensor predict(const Tensor& embedding_first, const Tensor& group) const;
};

// Trains one method on `train` (pairs drawn with sample_pairs, one pass = every object once per epoch), calling
// on_epoch after each epoch. Deterministic for a given seed and thread count.
SieModel train_sie(const ViewSet& train, const SieConfig& config,
                   const std::function<void(const SieEpochLog&)>& on_epoch = {});

}  // namespace eq
