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
