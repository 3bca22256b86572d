// equilab apps/sie — the SSL methods SIE compares and their training loop (see train.h; losses in losses/vicreg.h).
//
// What each method builds (R = inv_dim + equi_dim, P = projector_dim, G = group_dim), following the reference
// models (facebookresearch/SIE src/models.py):
//   vicreg           encoder -> R -> projector(R -> P -> P);  VICReg 25 / 25 / 1 (REFERENCES.md section 7).
//   equimod          encoder -> R; an invariant projector and an equivariant projector, both on the full R;
//                    MLP predictor Linear(P + G -> P)-ReLU-Linear(P -> P) on [z_equi1, g] (the reference's
//                    MLPPredictor with two layers). Loss (its "VICRegEquiMod"): VICReg 10 / 10 / 1 on the
//                    invariant embeddings + equi_factor * (10 MSE(pred, z_equi2) + 10 variance + 1 covariance of
//                    the equivariant embeddings).
//   hyper            encoder -> R -> projector(R -> P -> P); hypernetwork predictor on the embedding (the
//                    reference's "SIEOnlyEqui"): sie_loss without an invariant part, the prediction weighted 10.
//   sie              encoder -> R split into [0, inv_dim) and [inv_dim, R); projector_inv(inv_dim -> P -> P),
//                    projector_equi(equi_dim -> P -> P); hypernetwork predictor on the equivariant embedding;
//                    sie_loss 10 / 10 / 1 with equi_factor and the prediction's variance hinge.
//   sie-no-pred-var  the same without the prediction's variance hinge ("SIENoVar").
// Every predictor acts on embeddings (after the projector), as in the reference. Adam with coupled weight decay,
// constant learning rate, as the reference's main.py.
#include "apps/sie/train.h"

#include <chrono>
#include <cmath>
#include <cstdio>

#include "apps/common/progress.h"
#include "engine/autograd.h"
#include "engine/optim.h"
#include "engine/shape_ops.h"
#include "layers/activation.h"
#include "layers/hypernetwork_predictor.h"
#include "layers/linear.h"
#include "layers/projector.h"
#include "layers/sequential.h"
#include "layers/small_resnet.h"
#include "losses/mse.h"
#include "losses/vicreg.h"

namespace eq {

const std::vector<std::string>& sie_method_names() {
  static const std::vector<std::string> names{"vicreg", "equimod", "hyper", "sie", "sie-no-pred-var"};
  return names;
}

namespace {

constexpr int64_t kEvalBatch = 256;  // rows per forward pass in represent / embed

bool is_split(const std::string& method) { return method == "sie" || method == "sie-no-pred-var"; }

void check_config(const SieConfig& c) {
  bool known = false;
  for (const auto& m : sie_method_names()) known = known || m == c.method;
  if (!known) fail("train_sie: unknown method '", c.method, "' (choose vicreg, equimod, hyper, sie or sie-no-pred-var)");
  check(c.inv_dim > 0 && c.equi_dim > 0 && c.projector_dim > 0 && c.encoder_width > 0, "train_sie: inv_dim ",
        c.inv_dim, ", equi_dim ", c.equi_dim, ", projector_dim ", c.projector_dim, " and encoder_width ",
        c.encoder_width, " must be positive");
  check(c.epochs >= 0, "train_sie: epochs must be >= 0, not ", c.epochs);
  check(c.batch_size >= 2, "train_sie: batch_size must be >= 2 (variance terms need two pairs), not ", c.batch_size);
  check(c.lr > 0 && c.weight_decay >= 0 && c.equi_factor >= 0, "train_sie: lr ", c.lr, ", weight_decay ",
        c.weight_decay, " and equi_factor ", c.equi_factor, " must be positive / non-negative");
}

// The model's modules with fresh parameters drawn from rng, in a fixed order (encoder, projectors, predictor).
SieModel build_model(const SieConfig& c, int in_channels, int group_dim, Rng& rng) {
  SieModel m;
  m.config = c;
  m.group_dim = group_dim;
  m.split = is_split(c.method);
  const int r = c.inv_dim + c.equi_dim, p = c.projector_dim;
  m.encoder = std::make_shared<SmallResNet>(in_channels, r, rng, c.encoder_width);
  if (m.split) {
    m.projector_inv = make_projector(c.inv_dim, p, p, rng);
    m.projector_equi = make_projector(c.equi_dim, p, p, rng);
  } else {
    m.projector_inv = make_projector(r, p, p, rng);
    if (c.method == "equimod") m.projector_equi = make_projector(r, p, p, rng);
  }
  if (c.method == "equimod") {
    auto mlp = std::make_shared<Sequential>();
    mlp->add(std::make_shared<Linear>(p + group_dim, p, rng))
        .add(std::make_shared<ReLU>())
        .add(std::make_shared<Linear>(p, p, rng));
    m.predictor = mlp;
  } else if (c.method != "vicreg") {
    m.predictor = std::make_shared<HypernetworkPredictor>(p, group_dim, rng);
  }
  return m;
}

std::vector<Tensor> all_parameters(const SieModel& m) {
  std::vector<Tensor> params;
  for (const auto* module : {&m.encoder, &m.projector_inv, &m.projector_equi, &m.predictor})
    if (*module)
      for (auto& t : (*module)->parameters()) params.push_back(t);
  return params;
}

void set_training(const SieModel& m, bool on) {
  for (const auto* module : {&m.encoder, &m.projector_inv, &m.projector_equi, &m.predictor})
    if (*module) (*module)->train(on);
}

// The loss of one batch of pairs and its unweighted terms, for the log.
struct StepTerms {
  Tensor loss;
  double invariance = 0, equivariance = 0, variance = 0, covariance = 0;
};

StepTerms step_loss(const SieModel& m, const PairBatch& batch) {
  const SieConfig& c = m.config;
  Tensor r1 = m.encoder->forward(batch.first), r2 = m.encoder->forward(batch.second);
  StepTerms out;
  if (c.method == "vicreg") {
    VicregTerms t = vicreg_loss(m.projector_inv->forward(r1), m.projector_inv->forward(r2));
    out.loss = t.loss;
    out.invariance = t.invariance.item();
    out.variance = t.variance.item();
    out.covariance = t.covariance.item();
  } else if (c.method == "equimod") {
    const VicregWeights w{10, 10, 1};
    VicregTerms inv = vicreg_loss(m.projector_inv->forward(r1), m.projector_inv->forward(r2), w);
    Tensor e1 = m.projector_equi->forward(r1), e2 = m.projector_equi->forward(r2);
    Tensor pred = m.predictor->forward(concat({e1, batch.group}, 1));
    Tensor equi_mse = mse_loss(pred, e2);
    Tensor equi_var = (variance_hinge(e1) + variance_hinge(e2)) * 0.5f;
    Tensor equi_cov = covariance_penalty(e1) + covariance_penalty(e2);
    Tensor equi_loss = equi_mse * w.invariance + equi_var * w.variance + equi_cov * w.covariance;
    out.loss = inv.loss + equi_loss * c.equi_factor;
    out.invariance = inv.invariance.item();
    out.equivariance = equi_mse.item();
    out.variance = inv.variance.item() + equi_var.item();
    out.covariance = inv.covariance.item() + equi_cov.item();
  } else {
    auto& hyper = dynamic_cast<HypernetworkPredictor&>(*m.predictor);
    SieWeights w;
    w.prediction_variance = c.method != "sie-no-pred-var";
    Tensor inv1, inv2, e1, e2;
    if (m.split) {
      inv1 = m.projector_inv->forward(slice(r1, 1, 0, c.inv_dim));
      inv2 = m.projector_inv->forward(slice(r2, 1, 0, c.inv_dim));
      e1 = m.projector_equi->forward(slice(r1, 1, c.inv_dim, c.inv_dim + c.equi_dim));
      e2 = m.projector_equi->forward(slice(r2, 1, c.inv_dim, c.inv_dim + c.equi_dim));
      w.equi_factor = c.equi_factor;
    } else {
      e1 = m.projector_inv->forward(r1);
      e2 = m.projector_inv->forward(r2);
      w.equi_factor = 1;  // the prediction is the only similarity term (the reference's SIEOnlyEqui)
    }
    SieTerms t = sie_loss(inv1, inv2, e1, e2, hyper.predict(e1, batch.group), w);
    out.loss = t.loss;
    out.invariance = t.invariance.item();
    out.equivariance = t.equivariance.item();
    out.variance = t.variance.item() + t.prediction_variance.item();
    out.covariance = t.covariance.item();
  }
  return out;
}

// Batches of object indices for one epoch: every object once, shuffled. A last batch smaller than half a batch is
// dropped (its variance and covariance estimates would be noise) unless it is the only one.
std::vector<std::vector<int64_t>> epoch_batches(int64_t objects, int batch_size, Rng& rng) {
  auto batches = make_batches(objects, batch_size, &rng);
  if (batches.size() > 1 && static_cast<int>(batches.back().size()) * 2 < batch_size) batches.pop_back();
  if (!batches.empty() && batches.back().size() < 2) batches.pop_back();
  return batches;
}

// Applies f to row blocks of `input` with every module in eval mode and no gradient; concatenates the outputs.
template <class F>
Tensor batched_eval(const SieModel& m, const Tensor& input, F f) {
  check(input.defined() && input.dim() >= 1 && input.size(0) >= 1, "SieModel: empty input ",
        input.defined() ? input.shape() : Shape{});
  const bool was_training = m.encoder->is_training();
  set_training(m, false);
  NoGrad no_grad;
  std::vector<Tensor> parts;
  for (int64_t b = 0; b < input.size(0); b += kEvalBatch)
    parts.push_back(f(slice(input, 0, b, std::min<int64_t>(input.size(0), b + kEvalBatch))));
  set_training(m, was_training);
  return parts.size() == 1 ? parts[0] : concat(parts, 0);
}

}  // namespace

Tensor SieModel::represent(const Tensor& images) const {
  check(encoder != nullptr, "SieModel::represent: the model has no encoder (not trained)");
  return batched_eval(*this, images, [&](const Tensor& x) { return encoder->forward(x); });
}

Tensor SieModel::embed(const Tensor& images) const {
  check(encoder && projector_inv, "SieModel::embed: the model has no encoder or projector (not trained)");
  return batched_eval(*this, images, [&](const Tensor& x) {
    Tensor r = encoder->forward(x);
    if (split) return projector_equi->forward(slice(r, 1, config.inv_dim, config.inv_dim + config.equi_dim));
    return (projector_equi ? projector_equi : projector_inv)->forward(r);
  });
}

Tensor SieModel::predict(const Tensor& embedding_first, const Tensor& group) const {
  if (!predictor) fail("SieModel::predict: method '", config.method, "' has no predictor");
  const int64_t e = config.projector_dim;
  if (embedding_first.dim() != 2 || embedding_first.size(1) != e || group.dim() != 2 || group.size(1) != group_dim ||
      group.size(0) != embedding_first.size(0))
    fail("SieModel::predict: expects embeddings [N, ", e, "] and group elements [N, ", group_dim, "], got ",
         embedding_first.shape(), " and ", group.shape());
  return batched_eval(*this, concat({embedding_first, group}, 1), [&](const Tensor& zg) {
    return predictor->forward(zg);
  });
}

SieModel train_sie(const ViewSet& train, const SieConfig& config,
                   const std::function<void(const SieEpochLog&)>& on_epoch) {
  check_config(config);
  const int64_t objects = train.num_objects();
  check(train.views_per_object >= 2 && objects >= 2, "train_sie: ", train.data.name, " needs >= 2 objects with >= 2 "
        "views each (has ", objects, " objects, ", train.views_per_object, " views per object)");
  check(train.group_dim >= 1 && train.data.images.dim() == 4, "train_sie: ", train.data.name, " has group_dim ",
        train.group_dim, " and images ", train.data.images.shape(), " (want group_dim >= 1, [N, C, H, W])");
  // Two streams: parameters are drawn first from one, batches and view pairs from the other, so changing the
  // model's size does not change which pairs are seen.
  Rng init_rng(config.seed), data_rng(config.seed ^ 0x5eed5eedULL);
  SieModel model = build_model(config, train.data.channels(), train.group_dim, init_rng);
  Adam optimizer(all_parameters(model), config.lr, 0.9f, 0.999f, 1e-8f, config.weight_decay);
  set_training(model, true);

  for (int epoch = 1; epoch <= config.epochs; ++epoch) {
    const auto start = std::chrono::steady_clock::now();
    const auto batches = epoch_batches(objects, config.batch_size, data_rng);
    SieEpochLog log;
    log.epoch = epoch;
    std::unique_ptr<ProgressBar> bar;
    if (config.verbose)
      bar = std::make_unique<ProgressBar>(static_cast<int64_t>(batches.size()),
                                          config.method + " epoch " + std::to_string(epoch) + "/" +
                                              std::to_string(config.epochs),
                                          "pair");
    for (size_t step = 0; step < batches.size(); ++step) {
      const PairBatch pairs = sample_pairs(train, batches[step], data_rng);
      StepTerms t = step_loss(model, pairs);
      const double loss = t.loss.item();
      if (!std::isfinite(loss))
        fail("train_sie: ", config.method, " loss became ", loss, " at epoch ", epoch, ", step ", step + 1,
             " (lr ", config.lr, ")");
      optimizer.zero_grad();
      t.loss.backward();
      optimizer.step();
      log.loss += loss;
      log.invariance += t.invariance;
      log.equivariance += t.equivariance;
      log.variance += t.variance;
      log.covariance += t.covariance;
      if (bar) {
        char extra[32];
        std::snprintf(extra, sizeof extra, "loss %.4f", loss);
        bar->step(static_cast<int64_t>(batches[step].size()), extra);
      }
    }
    if (bar) bar->finish();
    const double steps = static_cast<double>(std::max<size_t>(batches.size(), 1));
    log.loss /= steps;
    log.invariance /= steps;
    log.equivariance /= steps;
    log.variance /= steps;
    log.covariance /= steps;
    log.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (on_epoch) on_epoch(log);
  }
  set_training(model, false);
  return model;
}

}  // namespace eq
