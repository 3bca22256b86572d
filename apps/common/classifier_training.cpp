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

std::unique_ptr<Optimizer> make_optimizer(const TrainConfig& c, std::vector<Tensor> params) {
  if (c.optimizer == "sgd") return std::make_unique<SGD>(std::move(params), c.lr, 0.9f, true, c.weight_decay);
  if (c.optimizer == "adam") return std::make_unique<Adam>(std::move(params), c.lr, 0.9f, 0.999f, 1e-8f, c.weight_decay);
  if (c.optimizer == "adamw") return std::make_unique<AdamW>(std::move(params), c.lr, 0.9f, 0.999f, 1e-8f, c.weight_decay);
  fail("train: unknown optimizer '", c.optimizer, "' (choose sgd, adam or adamw)");
}

std::unique_ptr<LRSchedule> make_schedule(const TrainConfig& c) {
  if (c.schedule == "cosine") return std::make_unique<CosineLR>(c.lr, c.epochs);
  if (c.schedule == "step") return std::make_unique<StepLR>(c.lr, std::vector<int>{c.epochs / 2, c.epochs * 3 / 4});
  if (c.schedule == "none") return std::make_unique<StepLR>(c.lr, std::vector<int>{});
  fail("train: unknown schedule '", c.schedule, "' (choose cosine, step or none)");
}

// Everything a resumed run needs: parameters, buffers, optimizer state, and the finished epochs' records.
NamedTensors checkpoint_tensors(const Module& model, const Optimizer& opt) {
  NamedTensors all = with_prefix("model.", model.named_parameters());
  for (auto& nt : with_prefix("model.", model.named_buffers())) all.push_back(nt);
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
  auto opt = make_optimizer(c, model.parameters());
  auto schedule = make_schedule(c);
  TrainResult result;
  int first_epoch = 0;
  const std::string ckpt = c.out_dir.empty() ? "" : c.out_dir + "/checkpoint.safetensors";

  if (c.resume && !ckpt.empty() && std::filesystem::exists(ckpt)) {
    Checkpoint cp = load_safetensors(ckpt);
    // Strict: a checkpoint of another model (or other flags) is an error listing every mismatch, never a
    // partial load.
    NamedTensors model_state = model.named_parameters();
    for (auto& nt : model.named_buffers()) model_state.push_back(nt);
    try {
      load_into(Checkpoint{strip_prefix(cp.tensors, "model."), {}}, model_state, /*strict=*/true);
      opt->load_state(strip_prefix(cp.tensors, "optimizer."));
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
    if (!ckpt.empty()) {
      NamedTensors all = checkpoint_tensors(model, *opt);
      all.emplace_back("history", history_tensor(result.history));
      save_safetensors(ckpt, all, {{"format", "equilab classifier checkpoint"}, {"epoch", std::to_string(epoch + 1)}});
    }
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  result.test_accuracy = result.history.empty() ? 0 : result.history.back().test_accuracy;
  return result;
}

}  // namespace eq
