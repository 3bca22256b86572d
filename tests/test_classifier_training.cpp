// apps/common/classifier_training: an interrupted run resumed from its checkpoint takes exactly the steps of an
// uninterrupted run; a checkpoint of another model is refused, naming the file.
#include <doctest/doctest.h>

#include "apps/common/classifier_training.h"
#include "layers/activation.h"
#include "layers/batch_norm.h"
#include "layers/linear.h"
#include "layers/sequential.h"
#include "tests/temp_dir.h"
#include "tests/test_helpers.h"

using namespace eq;

namespace {

// 64 random 1x4x4 "images" whose class is the sign pattern of two pixels: learnable, tiny, no download.
Dataset toy_dataset(uint64_t seed) {
  Rng rng(seed);
  Dataset d;
  d.images = Tensor::randn({64, 1, 4, 4}, rng);
  for (int64_t i = 0; i < 64; ++i)
    d.labels.push_back((d.images.data()[i * 16] > 0 ? 1 : 0) + (d.images.data()[i * 16 + 5] > 0 ? 2 : 0));
  d.num_classes = 4;
  d.name = "toy";
  return d;
}

std::shared_ptr<Sequential> toy_model(int hidden) {
  Rng rng(7);
  auto net = std::make_shared<Sequential>();
  net->add(std::make_shared<Flatten>())
      .add(std::make_shared<Linear>(16, hidden, rng))
      .add(std::make_shared<BatchNorm1d>(hidden))
      .add(std::make_shared<ReLU>())
      .add(std::make_shared<Linear>(hidden, 4, rng));
  return net;
}

// schedule "none": the learning rate does not depend on the total epoch count, so a 2-epoch run is exactly the
// first two epochs of a 3-epoch run (the interrupted run).
TrainConfig toy_config(const std::string& out, int epochs, bool resume) {
  TrainConfig c;
  c.epochs = epochs;
  c.batch = 16;
  c.lr = 0.05f;
  c.optimizer = "adam";
  c.schedule = "none";
  c.out_dir = out;
  c.resume = resume;
  c.quiet = true;
  return c;
}

}  // namespace

TEST_CASE("classifier_training: resuming from a checkpoint reproduces the uninterrupted run bit for bit") {
  eq::testing::TempDir dir("resume");
  const Dataset train = toy_dataset(1), test = toy_dataset(2);

  auto straight = toy_model(8);
  const TrainResult full = train_classifier(*straight, train, test, toy_config(dir.file("straight"), 3, false));

  // The interrupted run: 2 epochs, then a fresh process (fresh model, same seed) resumes for the third.
  auto before = toy_model(8);
  train_classifier(*before, train, test, toy_config(dir.file("split"), 2, false));
  auto after = toy_model(8);
  const TrainResult resumed = train_classifier(*after, train, test, toy_config(dir.file("split"), 3, true));

  REQUIRE(resumed.history.size() == 3);
  CHECK(resumed.history[2].train_loss == full.history[2].train_loss);
  CHECK(resumed.test_accuracy == full.test_accuracy);
  const auto a = straight->named_parameters(), b = after->named_parameters();
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("parameter " << a[i].first);
    CHECK(eq::testing::max_abs_diff(a[i].second, b[i].second) == 0.0f);
  }
  // The running statistics travel too.
  CHECK(eq::testing::max_abs_diff(straight->named_buffers()[0].second, after->named_buffers()[0].second) == 0.0f);
  // A model that was not resumed differs: the comparison above is not vacuous.
  CHECK(eq::testing::max_abs_diff(a[1].second, before->named_parameters()[1].second) > 0.0f);
}

TEST_CASE("classifier_training: a checkpoint of another model is refused, naming the file") {
  eq::testing::TempDir dir("resume_mismatch");
  const Dataset train = toy_dataset(1), test = toy_dataset(2);
  auto small = toy_model(8);
  train_classifier(*small, train, test, toy_config(dir.file("run"), 1, false));
  auto wider = toy_model(12);
  CHECK_THROWS_NAMING(train_classifier(*wider, train, test, toy_config(dir.file("run"), 2, true)),
                      "cannot resume from", "checkpoint.safetensors", "wrong shape");
}

namespace {

void check_same_parameters(const Module& a, const Module& b) {
  const auto pa = a.named_parameters(), pb = b.named_parameters();
  REQUIRE(pa.size() == pb.size());
  for (size_t i = 0; i < pa.size(); ++i) {
    INFO("parameter " << pa[i].first);
    CHECK(eq::testing::max_abs_diff(pa[i].second, pb[i].second) == 0.0f);
  }
}

// A rate high enough that the held-out accuracy goes up and down between epochs, so the best epoch is not the last.
TrainConfig noisy_config(const std::string& out, int epochs, bool resume) {
  TrainConfig c = toy_config(out, epochs, resume);
  c.lr = 0.3f;
  c.keep_best_val = true;
  return c;
}

}  // namespace

TEST_CASE("classifier_training: keep_best_val returns the best held-out epoch's weights, also after a resume") {
  eq::testing::TempDir dir("best_val");
  const Dataset train = toy_dataset(1), val = toy_dataset(2);
  const int epochs = 4;
  auto model = toy_model(8);
  const TrainResult r = train_classifier(*model, train, val, noisy_config(dir.file("full"), epochs, false));
  REQUIRE(r.history.size() == static_cast<size_t>(epochs));
  // The selected epoch has the highest held-out accuracy, and the earliest one among equals.
  double best = 0;
  int first_best = 0;
  for (const auto& e : r.history)
    if (e.test_accuracy > best) best = e.test_accuracy, first_best = e.epoch;
  CHECK(r.selected_epoch == first_best);
  CHECK(r.test_accuracy == best);
  // Not vacuous: with this rate the last epoch is worse than the best one.
  REQUIRE(r.selected_epoch < epochs);
  CHECK(r.history.back().test_accuracy < r.test_accuracy);
  // The model holds exactly the weights (and running statistics) a run stopped at that epoch ends with.
  auto stopped = toy_model(8);
  TrainConfig plain = toy_config(dir.file("stopped"), r.selected_epoch, false);
  plain.lr = 0.3f;
  const TrainResult s = train_classifier(*stopped, train, val, plain);
  CHECK(s.selected_epoch == r.selected_epoch);  // without keep_best_val: the last epoch
  check_same_parameters(*model, *stopped);
  CHECK(eq::testing::max_abs_diff(model->named_buffers()[0].second, stopped->named_buffers()[0].second) == 0.0f);
  CHECK(evaluate_classifier(*model, val).accuracy == doctest::Approx(r.test_accuracy).epsilon(1e-12));

  // Interrupted right after the best epoch: the kept copy travels in the checkpoint, and the choice is the same.
  auto before = toy_model(8);
  train_classifier(*before, train, val, noisy_config(dir.file("split"), r.selected_epoch, false));
  auto after = toy_model(8);
  const TrainResult resumed = train_classifier(*after, train, val, noisy_config(dir.file("split"), epochs, true));
  CHECK(resumed.selected_epoch == r.selected_epoch);
  check_same_parameters(*model, *after);

  // A checkpoint without a kept copy cannot resume a keep_best_val run.
  auto other = toy_model(8);
  CHECK_THROWS_NAMING(train_classifier(*other, train, val, noisy_config(dir.file("stopped"), epochs, true)),
                      "cannot resume from", "best.model.");
}

TEST_CASE("classifier_training: lr_multipliers train the matched parameters at their own rate") {
  eq::testing::TempDir dir("lr_mult");
  const Dataset train = toy_dataset(1), test = toy_dataset(2);
  // Sequential children: 0 Flatten, 1 Linear, 2 BatchNorm1d, 3 ReLU, 4 Linear. Multiplier 0 freezes the head.
  auto model = toy_model(8);
  auto fresh = toy_model(8);
  TrainConfig c = toy_config(dir.file("frozen"), 1, false);
  c.lr_multipliers = {{"4.", 0.0f}};
  train_classifier(*model, train, test, c);
  const auto trained = model->named_parameters(), initial = fresh->named_parameters();
  for (size_t i = 0; i < trained.size(); ++i) {
    INFO("parameter " << trained[i].first);
    const bool head = trained[i].first.rfind("4.", 0) == 0;
    CHECK((eq::testing::max_abs_diff(trained[i].second, initial[i].second) == 0.0f) == head);
  }
  // Resume with groups is exact; resuming with another multiplier is refused.
  c.lr_multipliers = {{"1.", 0.1f}};
  auto straight = toy_model(8);
  c.out_dir = dir.file("straight"), c.epochs = 3;
  train_classifier(*straight, train, test, c);
  auto part = toy_model(8);
  c.out_dir = dir.file("split"), c.epochs = 2;
  train_classifier(*part, train, test, c);
  auto rest = toy_model(8);
  c.epochs = 3, c.resume = true;
  train_classifier(*rest, train, test, c);
  check_same_parameters(*straight, *rest);
  c.lr_multipliers = {{"1.", 0.5f}};
  auto wrong = toy_model(8);
  CHECK_THROWS_NAMING(train_classifier(*wrong, train, test, c), "cannot resume", "group.1.lr_multiplier");
  c.lr_multipliers = {{"offset", 0.1f}};
  c.resume = false;
  CHECK_THROWS_NAMING(train_classifier(*wrong, train, test, c), "train", "'offset'", "matches no parameter");
}
