#include "apps/common/classifier_training.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "apps/common/csv_log.h"
#include "apps/common/progress.h"
#include "engine/autograd.h"
#include "engine/checkpoint.h"
#include "engine/optim.h"
#include "engine/reduce.h"
#include "engine/shape_ops.h"
#include "losses/cross_entropy.h"

namespace eq {

namespace {

// Group 0: every parameter no rule matches (multiplier 1); group r + 1: the parameters of rule r. Without rules,
// one group with all parameters: the optimizer (and its checkpoint keys) are those of a plain parameter list.
std::vector<ParamGroup> parameter_groups(const Module& model, const TrainConfig& c) {
  std::vector<ParamGroup> groups(1 + c.lr_multipliers.size());
  groups[0].name = "base";
  for (size_t r = 0; r < c.lr_multipliers.size(); ++r) {
    const auto& [pattern, multiplier] = c.lr_multipliers[r];
    check(!pattern.empty(), "train: lr multiplier rule ", r, " has an empty name pattern");
    groups[r + 1].name = "'" + pattern + "'";
    groups[r + 1].lr_multiplier = multiplier;
  }
  for (const auto& [name, t] : model.named_parameters()) {
    size_t g = 0;
    for (size_t r = 0; r < c.lr_multipliers.size() && g == 0; ++r)
      if (name.find(c.lr_multipliers[r].first) != std::string::npos) g = r + 1;
    groups[g].params.push_back(t);
  }
  for (size_t r = 0; r < c.lr_multipliers.size(); ++r)
    check(!groups[r + 1].params.empty(), "train: lr multiplier rule '", c.lr_multipliers[r].first,
          "' matches no parameter name of ", model.name());
  return groups;
}

std::unique_ptr<Optimizer> make_optimizer(const TrainConfig& c, std::vector<ParamGroup> groups) {
  if (c.optimizer == "sgd") return std::make_unique<SGD>(std::move(groups), c.lr, 0.9f, true, c.weight_decay);
  if (c.optimizer == "adam") return std::make_unique<Adam>(std::move(groups), c.lr, 0.9f, 0.999f, 1e-8f, c.weight_decay);
  if (c.optimizer == "adamw") return std::make_unique<AdamW>(std::move(groups), c.lr, 0.9f, 0.999f, 1e-8f, c.weight_decay);
  fail("train: unknown optimizer '", c.optimizer, "' (choose sgd, adam or adamw)");
}

// The model's parameters and buffers, by name: what a best-epoch copy has to hold.
NamedTensors model_state(const Module& model) {
  NamedTensors all = model.named_parameters();
  for (auto& nt : model.named_buffers()) all.push_back(nt);
  return all;
}

NamedTensors clone_all(const NamedTensors& tensors) {
  NamedTensors out;
  for (const auto& [name, t] : tensors) out.emplace_back(name, t.clone());
  return out;
}

// The selection rule of keep_best_val: the earliest epoch with the highest held-out accuracy as float32, the
// precision the checkpoint's history keeps (so an uninterrupted and a resumed run pick the same epoch).
size_t best_epoch_index(const std::vector<EpochRecord>& h) {
  size_t best = 0;
  for (size_t i = 1; i < h.size(); ++i)
    if (static_cast<float>(h[i].test_accuracy) > static_cast<float>(h[best].test_accuracy)) best = i;
  return best;
}

std::unique_ptr<LRSchedule> make_schedule(const TrainConfig& c) {
  if (c.schedule == "cosine") return std::make_unique<CosineLR>(c.lr, c.epochs);
  if (c.schedule == "step") return std::make_unique<StepLR>(c.lr, std::vector<int>{c.epochs / 2, c.epochs * 3 / 4});
  if (c.schedule == "none") return std::make_unique<StepLR>(c.lr, std::vector<int>{});
  fail("train: unknown schedule '", c.schedule, "' (choose cosine, step or none)");
}

// Everything a resumed run needs: parameters, buffers, optimizer state, and (added by the caller) the kept best
// epoch's weights and the finished epochs' records.
NamedTensors checkpoint_tensors(const Module& model, const Optimizer& opt) {
  NamedTensors all = with_prefix("model.", model_state(model));
  for (auto& nt : with_prefix("optimizer.", opt.state())) all.push_back(nt);
  return all;
}

Tensor history_tensor(const std::vector<EpochRecord>& h) {
  Tensor t({static_cast<int64_t>(h.size()), 7});
  for (size_t i = 0; i < h.size(); ++i) {
    const double row[7] = {double(h[i].epoch), h[i].lr, h[i].train_loss, h[i].train_accuracy,
                           h[i].test_loss, h[i].test_accuracy, h[i].seconds};
    for (int j = 0; j < 7; ++j) t.data()[i * 7 + j] = static_cast<float>(row[j]);
  }
  return t;
}

std::vector<EpochRecord> history_from(const Tensor& t) {
  std::vector<EpochRecord> h;
  for (int64_t i = 0; i < t.size(0); ++i) {
    const float* r = t.data() + i * 7;
    h.push_back({static_cast<int>(r[0]), r[1], r[2], r[3], r[4], r[5], r[6]});
  }
  return h;
}

}  // namespace

std::vector<int> predict_classes(Module& model, const Tensor& images, int batch) {
  const bool was_training = model.is_training();
  model.eval();
  NoGrad no_grad;
  std::vector<int> out;
  const int64_t n = images.size(0);
  for (int64_t b = 0; b < n; b += batch) {
    Tensor x = slice(images, 0, b, std::min<int64_t>(n, b + batch));
    for (int c : argmax_rows(model(x))) out.push_back(c);
  }
  model.train(was_training);
  return out;
}

Evaluation evaluate_classifier(Module& model, const Dataset& data, int batch) {
  const bool was_training = model.is_training();
  model.eval();
  NoGrad no_grad;
  double loss = 0, correct = 0;
  for (auto& idx : make_batches(data.size(), batch, nullptr)) {
    Batch b = gather_batch(data, idx);
    Tensor logits = model(b.images);
    loss += cross_entropy(logits, b.labels).item() * static_cast<double>(idx.size());
    correct += accuracy(logits, b.labels) * static_cast<double>(idx.size());
  }
  model.train(was_training);
  const double n = static_cast<double>(std::max<int64_t>(1, data.size()));
  return {loss / n, correct / n};
}

TrainResult train_classifier(Module& model, const Dataset& train, const Dataset& test, const TrainConfig& c) {
  check(c.epochs >= 1 && c.batch >= 1 && c.lr > 0, "train: epochs, batch and lr must be positive (got ", c.epochs,
        ", ", c.batch, ", ", c.lr, ")");
  check(train.size() > 0, "train: the training set '", train.name, "' is empty");
  auto opt = make_optimizer(c, parameter_groups(model, c));
  auto schedule = make_schedule(c);
  TrainResult result;
  NamedTensors best;  // keep_best_val: copy of the best epoch's parameters and buffers so far
  int first_epoch = 0;
  const std::string ckpt = c.out_dir.empty() ? "" : c.out_dir + "/checkpoint.safetensors";

  if (c.resume && !ckpt.empty() && std::filesystem::exists(ckpt)) {
    Checkpoint cp = load_safetensors(ckpt);
    // Strict: a checkpoint of another model (or other flags) is an error listing every mismatch, never a
    // partial load.
    try {
      load_into(Checkpoint{strip_prefix(cp.tensors, "model."), {}}, model_state(model), /*strict=*/true);
      opt->load_state(strip_prefix(cp.tensors, "optimizer."));
      if (c.keep_best_val) {
        const NamedTensors kept = strip_prefix(cp.tensors, "best.model.");
        if (kept.empty()) fail("it holds no best-epoch weights 'best.model.*' (written without keep_best_val)");
        best = clone_all(model_state(model));
        load_into(Checkpoint{kept, {}}, best, /*strict=*/true);
      }
    } catch (const Error& e) {
      fail("cannot resume from ", ckpt, " (was it written with other flags?): ", e.what());
    }
    result.history = history_from(cp.get("history"));
    first_epoch = static_cast<int>(result.history.size());
    std::printf("resumed from %s after epoch %d\n", ckpt.c_str(), first_epoch);
  }
  std::unique_ptr<CsvLog> csv;
  if (!c.out_dir.empty()) {
    csv = std::make_unique<CsvLog>(c.out_dir + "/train_log.csv",
                                   std::vector<std::string>{"epoch", "lr", "train_loss", "train_accuracy", "test_loss",
                                                            "test_accuracy", "seconds"},
                                   /*append=*/first_epoch > 0);
  }

  const auto t_start = std::chrono::steady_clock::now();
  for (int epoch = first_epoch; epoch < c.epochs; ++epoch) {
    const auto t0 = std::chrono::steady_clock::now();
    opt->set_lr(schedule->lr(epoch));
    model.train();
    Rng rng(c.seed * 1000003ULL + static_cast<uint64_t>(epoch));
    const auto batches = make_batches(train.size(), c.batch, &rng, /*drop_last=*/true);
    ProgressBar progress(static_cast<int64_t>(batches.size()),
                         "epoch " + std::to_string(epoch + 1) + "/" + std::to_string(c.epochs), "img");
    double loss_sum = 0, correct = 0, seen = 0;
    for (const auto& idx : batches) {
      Batch b = gather_batch(train, idx);
      Tensor x = c.augment ? c.augment(b.images, rng) : b.images;
      Tensor logits = model(x);
      Tensor loss = cross_entropy(logits, b.labels);
      opt->zero_grad();
      loss.backward();
      opt->step();
      const double bs = static_cast<double>(idx.size());
      loss_sum += loss.item() * bs;
      correct += accuracy(logits, b.labels) * bs;
      seen += bs;
      char extra[64];
      std::snprintf(extra, sizeof extra, "loss %.4f", loss_sum / seen);
      progress.step(static_cast<int64_t>(idx.size()), extra);
    }
    progress.finish();
    const Evaluation ev = evaluate_classifier(model, test);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EpochRecord rec{epoch + 1, opt->lr(), loss_sum / seen, correct / seen, ev.loss, ev.accuracy, secs};
    result.history.push_back(rec);
    if (!c.quiet)
      std::printf("epoch %3d  lr %.4g  train loss %.4f acc %.2f%%  test loss %.4f acc %.2f%%  %.1fs\n", rec.epoch,
                  rec.lr, rec.train_loss, 100 * rec.train_accuracy, rec.test_loss, 100 * rec.test_accuracy, secs);
    std::fflush(stdout);
    if (csv) csv->row({rec.epoch, rec.lr, rec.train_loss, rec.train_accuracy, rec.test_loss,
                       rec.test_accuracy, rec.seconds});
    if (c.keep_best_val && best_epoch_index(result.history) + 1 == result.history.size())
      best = clone_all(model_state(model));
    if (!ckpt.empty()) {
      NamedTensors all = checkpoint_tensors(model, *opt);
      for (auto& nt : with_prefix("best.model.", best)) all.push_back(nt);
      all.emplace_back("history", history_tensor(result.history));
      save_safetensors(ckpt, all, {{"format", "equilab classifier checkpoint"}, {"epoch", std::to_string(epoch + 1)}});
    }
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  if (result.history.empty()) return result;
  size_t selected = result.history.size() - 1;
  if (c.keep_best_val) {
    selected = best_epoch_index(result.history);
    const NamedTensors targets = model_state(model);
    NoGrad no_grad;
    for (size_t i = 0; i < targets.size(); ++i) {
      Tensor target = targets[i].second;
      target.copy_from(best[i].second);
    }
    if (!c.quiet)
      std::printf("kept the weights of epoch %d (best held-out accuracy %.2f%%; last epoch %.2f%%)\n",
                  result.history[selected].epoch, 100 * result.history[selected].test_accuracy,
                  100 * result.history.back().test_accuracy);
  }
  result.selected_epoch = result.history[selected].epoch;
  result.test_accuracy = result.history[selected].test_accuracy;
  return result;
}

}  // namespace eq
