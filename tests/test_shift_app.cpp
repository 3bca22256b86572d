// The shift app's pure logic: the toy-signal poolings (hand-computed outputs from Zhang's Fig. 1 and the lecture),
// the per-shift metrics, and the models it compares (MaxBlurPool filter 1 is the max-pool baseline; the P4CNN's
// logits are invariant to quarter turns and the plain CNN's are not; comparable parameter counts).
//
// The app's sources are not part of libequilab.a (they link into build/shift only), so they are compiled here.
#include <doctest/doctest.h>

#include "apps/common/equivariance.h"
#include "apps/shift/models.cpp"
#include "apps/shift/toy_signal.cpp"
#include "engine/autograd.h"
#include "engine/resample.h"
#include "layers/blur_pool.h"
#include "layers/pooling.h"
#include "tests/test_helpers.h"

using namespace eq;
using eq::testing::max_abs_diff;

namespace {

std::vector<float> shifted_output(const std::function<Tensor(const Tensor&)>& pool, const Tensor& x, int s) {
  return pool(translate_int(x, {0}, {s}, ShiftPadding::Circular)).to_vector();
}

void check_values(const std::vector<float>& got, const std::vector<float>& want) {
  REQUIRE(got.size() == want.size());
  for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-6));
}

}  // namespace

TEST_CASE("shift_app: toy signals are [0,0,1,1] repeated and a single [1,1] bump") {
  check_values(toy_signal(8).to_vector(), {0, 0, 1, 1, 0, 0, 1, 1});
  check_values(toy_bump(8).to_vector(), {0, 0, 1, 1, 0, 0, 0, 0});
  CHECK(toy_signal(8).shape() == Shape{1, 1, 1, 8});
  CHECK_THROWS_NAMING(toy_signal(6), "toy_signal", "6");
  CHECK_THROWS_NAMING(toy_bump(0), "toy_bump");
}

TEST_CASE("shift_app: max-pool of the toy signal flips under a 1-sample shift (Zhang Fig. 1, by hand)") {
  const Tensor x = toy_signal(8);
  check_values(shifted_output(toy_max_pool, x, 0), {0, 1, 0, 1});
  check_values(shifted_output(toy_max_pool, x, 1), {1, 1, 1, 1});
  check_values(shifted_output(toy_max_pool, x, 2), {1, 0, 1, 0});
}

TEST_CASE("shift_app: max + blur-pool [1,2,1]/4 of the toy signal changes smoothly (by hand)") {
  // Dense circular maxima of [0,0,1,1,0,0,1,1]: [0,1,1,1,0,1,1,1]; out[j] = (m[2j-1] + 2 m[2j] + m[2j+1]) / 4.
  const auto blur3 = [](const Tensor& x) { return toy_max_blur_pool(x, 3); };
  const Tensor x = toy_signal(8);
  check_values(shifted_output(blur3, x, 0), {0.5f, 1, 0.5f, 1});
  // Shifted by one: m = [1,0,1,1,1,0,1,1] -> 0.75 everywhere.
  check_values(shifted_output(blur3, x, 1), {0.75f, 0.75f, 0.75f, 0.75f});
}

TEST_CASE("shift_app: max + blur-pool with filter 1 is the max-pool") {
  Rng rng(3);
  const Tensor x = Tensor::uniform({1, 1, 1, 12}, rng);
  CHECK(max_abs_diff(toy_max_blur_pool(x, 1), toy_max_pool(x)) == 0.0f);
  // ...and a real blur is not (the test would notice a blur that does nothing).
  CHECK(max_abs_diff(toy_max_blur_pool(x, 3), toy_max_pool(x)) > 1e-3f);
  CHECK_THROWS_NAMING(toy_max_pool(Tensor::zeros({1, 1, 1, 7})), "toy_max_pool", "[1, 1, 1, 7]");
  CHECK_THROWS_NAMING(toy_max_blur_pool(Tensor::zeros({2, 1, 1, 8}), 3), "toy_max_blur_pool", "[2, 1, 1, 8]");
}

TEST_CASE("shift_app: toy_shift_study metrics match hand-computed values on the bump") {
  const ToyShiftStudy max_study = toy_shift_study("max", toy_max_pool, toy_bump(16));
  const ToyShiftStudy blur_study =
      toy_shift_study("blur", [](const Tensor& x) { return toy_max_blur_pool(x, 3); }, toy_bump(16));
  REQUIRE(max_study.outputs.size() == 16);
  REQUIRE(max_study.change.size() == 16);
  // Max-pool: y0 = [0,1,0,...], y1 = [0,1,1,0,...]: change 1; y0 shifted by half a sample is [0,.5,.5,0,...],
  // so Delta = (0.25 + 0.25) / 0.5 = 1. Even shifts move the output by whole samples: Delta = 0.
  CHECK(max_study.change[1] == doctest::Approx(1.0));
  CHECK(max_study.equivariance_error[1] == doctest::Approx(1.0));
  CHECK(max_study.equivariance_error[2] == doctest::Approx(0.0).epsilon(1e-9));
  CHECK(max_study.change[0] == 0.0);
  // Blur: y0 = [.25, 1, .25, 0, ...] half-shifted is [.125, .625, .625, .125, 0...]; y1 = [0, .75, .75, 0, ...]:
  // Delta = 4 * .125^2 / (2 * .125^2 + 2 * .625^2) = 0.0625 / 0.8125.
  CHECK(blur_study.equivariance_error[1] == doctest::Approx(0.0625 / 0.8125).epsilon(1e-5));
  CHECK(blur_study.equivariance_error[4] == doctest::Approx(0.0).epsilon(1e-9));
}

TEST_CASE("shift_app: MaxBlurPool with filter 1 computes MaxPool2d(2), so maxblur f=1 is the baseline net") {
  Rng rng(5);
  const Tensor x = Tensor::uniform({2, 3, 8, 10}, rng);
  MaxBlurPool mbp(3, 2, 1, 2);
  MaxPool2d mp(2);
  CHECK(max_abs_diff(mbp(x), mp(x)) == 0.0f);

  // Same seed, same parameter shapes and draw order: identical weights, hence identical logits.
  Rng ra(11), rb(11);
  auto baseline = make_shift_model("maxpool", 1, 28, 10, ra);
  auto maxblur1 = make_shift_model("maxblur", 1, 28, 10, rb);
  const Tensor images = Tensor::uniform({2, 1, 28, 28}, rng);
  NoGrad no_grad;
  const Tensor la = baseline->forward(images), lb = maxblur1->forward(images);
  CHECK(la.shape() == Shape{2, 10});
  CHECK(max_abs_diff(la, lb) < 1e-5f);
  Rng rc(11);
  auto maxblur3 = make_shift_model("maxblur", 3, 28, 10, rc);
  CHECK(max_abs_diff(la, maxblur3->forward(images)) > 1e-4f);  // the blur changes the output
}

TEST_CASE("shift_app: every shift-study model maps [N,1,28,28] to [N,10] logits with the same parameter count") {
  Rng rng(2);
  const Tensor images = Tensor::uniform({3, 1, 28, 28}, rng);
  NoGrad no_grad;
  int64_t params = -1;
  for (const std::string kind : {"maxpool", "maxblur", "strided", "convblur"}) {
    auto m = make_shift_model(kind, 4, 28, 10, rng);
    CHECK(m->forward(images).shape() == Shape{3, 10});
    if (params < 0) params = m->num_parameters();
    CHECK(m->num_parameters() == params);  // the blurs have no parameters
  }
  CHECK_THROWS_NAMING(make_shift_model("avgpool", 1, 28, 10, rng), "make_shift_model", "avgpool");
  CHECK_THROWS_NAMING(make_shift_model("maxblur", 9, 28, 10, rng), "make_shift_model", "9");
  CHECK(shift_model_label("maxblur", 3) == "maxblur f=3");
  CHECK(shift_model_label("strided", 3) == "strided");
}

TEST_CASE("shift_app: the P4CNN's logits are invariant to quarter turns, the plain CNN's are not") {
  Rng rng(7);
  auto p4 = make_rotation_model("p4", 4, 10, rng);
  auto plain = make_rotation_model("plain", 4, 10, rng);
  const double ratio = static_cast<double>(p4->num_parameters()) / static_cast<double>(plain->num_parameters());
  CHECK(ratio > 0.9);
  CHECK(ratio < 1.1);
  const Tensor x = Tensor::uniform({2, 1, 28, 28}, rng);
  CHECK(equivariance_error(*p4, x, rot90_transform(1)) < 1e-10);
  CHECK(equivariance_error(*plain, x, rot90_transform(1)) > 1e-6);
  // Every p4 layer up to the rotation pool is equivariant under rotate_p4 (rank-5 maps).
  for (const auto& row : per_layer_equivariance_error(*p4, x, rot90_transform(1))) {
    INFO(row.name);
    CHECK(row.delta < 1e-10);
  }
  CHECK_THROWS_NAMING(make_rotation_model("so2", 4, 10, rng), "make_rotation_model", "so2");
}
