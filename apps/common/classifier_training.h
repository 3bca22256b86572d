// equilab apps — supervised training of an image classifier, shared by apps/classify and the equivariance studies.
//
// One epoch: shuffle (an Rng derived from seed and epoch, so a resumed run draws the same batches), forward,
// fused cross-entropy, backward, optimizer step; then evaluation on the held-out set (the `test` argument: a test
// set, or a validation split when keep_best_val selects the epoch) in eval mode without a tape.
// Every epoch prints a line, appends a CSV row, and (with a checkpoint path) saves model + optimizer state
// atomically, so `resume` continues where an interrupted run stopped.
#pragma once
#include <functional>
#include <string>
#include <vector>

#include "apps/common/datasets.h"
#include "layers/module.h"

namespace eq {

struct TrainConfig {
  int epochs = 5;
  int batch = 64;
  float lr = 0.05f;
  std::string optimizer = "sgd";   // sgd (momentum 0.9, Nesterov) | adam | adamw
  float weight_decay = 5e-4f;
  std::string schedule = "cosine";  // cosine | step (x0.1 at 50% and 75%) | none
  uint64_t seed = 0;
  std::string out_dir;          // CSV log and checkpoint go here when not empty
  bool resume = false;          // continue from out_dir/checkpoint.safetensors if it exists
  bool quiet = false;           // no per-epoch lines (progress bar still shown)
  // Optional per-batch augmentation of the training images [B, C, H, W] (no gradient needed).
  std::function<Tensor(const Tensor&, Rng&)> augment;
  // Per-parameter learning rates: (substring, multiplier) rules. A parameter whose name in
  // model.named_parameters() (e.g. "3.offset_conv.weight") contains a rule's substring trains at lr * multiplier
  // (first matching rule wins), the rest at lr; the schedule scales all of them alike (engine/optim.h, parameter
  // groups). A rule that matches no parameter is an error (a typo would otherwise change nothing, silently).
  std::vector<std::pair<std::string, float>> lr_multipliers;
  // Model selection on the held-out set: keep a copy of the parameters and buffers of the epoch with the highest
  // accuracy on `test` (earliest on ties; compared as float32, as the checkpoint stores them, so a resumed run
  // chooses the same epoch) and load them into the model when training ends. Pass a validation split as `test`
  // and score the real test set afterwards. The checkpoint carries the kept copy ("best.model.*"), so resume works.
  bool keep_best_val = false;
};

struct EpochRecord {
  int epoch;  // 1-based
  double lr, train_loss, train_accuracy, test_loss, test_accuracy, seconds;
};

struct TrainResult {
  std::vector<EpochRecord> history;  // includes epochs restored from a checkpoint
  int selected_epoch = 0;            // 1-based: the epoch whose weights the model holds on return (the last one,
                                     // or the best on the held-out set with keep_best_val)
  double test_accuracy = 0;          // held-out accuracy of those weights (history[selected_epoch - 1])
  double seconds = 0;                // wall time of the epochs run in this call
};

TrainResult train_classifier(Module& model, const Dataset& train, const Dataset& test, const TrainConfig& config);

// Loss and accuracy of `model` (switched to eval mode for the call) on `data`, without recording a tape.
struct Evaluation {
  double loss, accuracy;
};
Evaluation evaluate_classifier(Module& model, const Dataset& data, int batch = 256);

// Predicted classes for every sample (eval mode, no tape).
std::vector<int> predict_classes(Module& model, const Tensor& images, int batch = 256);

}  // namespace eq
