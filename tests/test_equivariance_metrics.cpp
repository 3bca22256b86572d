// apps/common/equivariance: Delta is 0 for the identity and for exactly equivariant layers (circular conv under
// roll, p4 lifting under quarter turns, 1x1 conv under rescaling) and clearly positive where equivariance breaks
// (zero borders, plain convs under rotation, sub-pixel shifts after pooling); per-layer Delta, shift consistency and
// deformation stability behave as their definitions say; bad inputs name the function and the shapes.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <memory>

#include "apps/common/equivariance.h"
#include "augment/rotation.h"
#include "engine/elementwise.h"
#include "engine/resample.h"
#include "engine/rng.h"
#include "engine/shape_ops.h"
#include "layers/activation.h"
#include "layers/conv2d.h"
#include "layers/linear.h"
#include "layers/p4_lift.h"
#include "layers/pooling.h"
#include "layers/sequential.h"
#include "tests/test_helpers.h"

using namespace eq;

namespace {

class Identity : public Module {
 public:
  Tensor forward(const Tensor& x) override { return x.clone(); }
  std::string name() const override { return "Identity"; }
};

// Records whether it was called in training mode.
class ModeProbe : public Module {
 public:
  Tensor forward(const Tensor& x) override {
    saw_training = is_training();
    return x.clone();
  }
  std::string name() const override { return "ModeProbe"; }
  bool saw_training = true;
};

// Keeps the first 4 rows: not a rotation-compatible shape change.
class CropRows : public Module {
 public:
  Tensor forward(const Tensor& x) override { return slice(x, 2, 0, 4); }
  std::string name() const override { return "CropRows"; }
};

Conv2dOptions padded(PadMode mode, int kernel = 3) { return same_padding(kernel, mode); }

}  // namespace

TEST_CASE("equivariance metrics: the identity model has Delta 0 under every shift") {
  Rng rng(1);
  Identity id;
  Tensor x = Tensor::randn({3, 2, 9, 8}, rng);
  for (ShiftPadding pad : {ShiftPadding::Circular, ShiftPadding::Zeros})
    for (auto [dy, dx] : {std::pair<float, float>{1, 2}, {-3, 0}, {0.5f, -1.25f}}) {
      INFO(shift_padding_name(pad) << " shift " << dy << ", " << dx);
      CHECK(equivariance_error(id, x, shift_transform(dy, dx, pad)) == 0.0);
    }
  // The explicit T_in / T_out form: a wrong T_out (shift the other way) must give a large Delta.
  auto right = [](const Tensor& t) { return roll(t, 0, 1); };
  auto left = [](const Tensor& t) { return roll(t, 0, -1); };
  CHECK(equivariance_error(id, x, right, right) == 0.0);
  CHECK(equivariance_error(id, x, right, left) > 0.5);
}

TEST_CASE("equivariance metrics: circular conv commutes with roll; zero padding breaks it at the borders") {
  Rng rng(2);
  Tensor x = Tensor::uniform({4, 2, 10, 9}, rng, 0.5f, 1.5f);  // nonzero borders, so zero padding matters
  Conv2d circular(2, 3, 3, rng, padded(PadMode::Circular));
  Conv2d zeros(2, 3, 3, rng, padded(PadMode::Zeros));
  const EquivarianceTransform roll_t = shift_transform(2, -3, ShiftPadding::Circular);
  const double exact = equivariance_error(circular, x, roll_t);
  const double broken = equivariance_error(zeros, x, roll_t);
  MESSAGE("circular conv Delta " << exact << ", zero-padded conv Delta " << broken);
  CHECK(exact < 1e-10);
  CHECK(broken > 1e-2);
}

TEST_CASE("equivariance metrics: p4 lifting and a rot90-symmetrised function commute with quarter turns") {
  Rng rng(3);
  Tensor x = Tensor::randn({2, 2, 9, 9}, rng);
  P4Lift lift(2, 3, 3, rng);
  Conv2d plain(2, 3, 3, rng, padded(PadMode::Zeros));
  for (int k : {1, 2, 3}) {
    INFO("k = " << k);
    CHECK(equivariance_error(lift, x, rot90_transform(k)) < 1e-10);
    CHECK(equivariance_error(plain, x, rot90_transform(k)) > 0.05);
  }
  auto symmetrised = [](const Tensor& t) { return t + rot90(t, 1) + rot90(t, 2) + rot90(t, 3); };
  CHECK(equivariance_error(symmetrised, x, rot90_transform(1)) < 1e-12);
  CHECK(equivariance_error([](const Tensor& t) { return flip_h(t); }, x, rot90_transform(1)) > 0.5);
}

TEST_CASE("equivariance metrics: per-layer Delta follows the stride (integer vs sub-pixel output shifts)") {
  Rng rng(4);
  Sequential net({std::make_shared<Conv2d>(1, 4, 3, rng, padded(PadMode::Circular)), std::make_shared<ReLU>(),
                  std::make_shared<MaxPool2d>(2), std::make_shared<Conv2d>(4, 2, 3, rng, padded(PadMode::Circular)),
                  std::make_shared<GlobalAvgPool2d>()});
  Tensor x = Tensor::randn({3, 1, 12, 12}, rng);
  // An even shift is an integer shift on the stride-2 map: every layer stays exactly equivariant.
  const auto even = per_layer_equivariance_error(net, x, shift_transform(2, -4, ShiftPadding::Circular));
  REQUIRE(even.size() == 5);
  CHECK(even[2].name.find("2 MaxPool2d") == 0);
  CHECK(even[2].shape == Shape{3, 4, 6, 6});
  CHECK(even[4].shape == Shape{3, 2});
  for (const auto& row : even) {
    INFO(row.name);
    CHECK(row.delta < 1e-10);
  }
  // An odd shift: exact before the pooling, a half-pixel (bilinear) shift after it, which max pooling does not obey.
  const auto odd = per_layer_equivariance_error(net, x, shift_transform(1, 1, ShiftPadding::Circular));
  CHECK(odd[0].delta < 1e-10);
  CHECK(odd[1].delta < 1e-10);
  CHECK(odd[2].delta > 1e-2);
  CHECK(odd[3].delta > 1e-2);
}

TEST_CASE("equivariance metrics: per-layer rotation on p4 and plain maps, rescaling on pointwise vs spatial convs") {
  Rng rng(5);
  Tensor x = Tensor::randn({2, 1, 11, 11}, rng);
  Sequential p4({std::make_shared<P4Lift>(1, 2, 3, rng), std::make_shared<ReLU>()});
  for (const auto& row : per_layer_equivariance_error(p4, x, rot90_transform(1))) CHECK(row.delta < 1e-10);
  Sequential plain({std::make_shared<Conv2d>(1, 2, 3, rng, padded(PadMode::Zeros)), std::make_shared<ReLU>()});
  for (const auto& row : per_layer_equivariance_error(plain, x, rot90_transform(1))) CHECK(row.delta > 0.05);

  Tensor smooth = Tensor::uniform({2, 2, 16, 16}, rng);
  Sequential pointwise({std::make_shared<Conv2d>(2, 3, 1, rng, Conv2dOptions{}, false)});
  Sequential spatial({std::make_shared<Conv2d>(2, 3, 5, rng, padded(PadMode::Zeros, 5), false)});
  const double dp = per_layer_equivariance_error(pointwise, smooth, rescale_transform(0.7f))[0].delta;
  const double ds = per_layer_equivariance_error(spatial, smooth, rescale_transform(0.7f))[0].delta;
  MESSAGE("rescale 0.7: 1x1 conv Delta " << dp << ", 5x5 conv Delta " << ds);
  CHECK(dp < 1e-10);
  CHECK(ds > 1e-2);
}

TEST_CASE("equivariance metrics: shift consistency, invariant vs strided models") {
  Rng rng(6);
  Tensor images = Tensor::randn({64, 1, 12, 12}, rng);
  Sequential invariant({std::make_shared<Conv2d>(1, 5, 3, rng, padded(PadMode::Circular)),
                        std::make_shared<GlobalAvgPool2d>()});
  CHECK(shift_consistency(invariant, images, 3, ShiftPadding::Circular, 7) == 100.0);
  Conv2dOptions strided;
  strided.stride_h = strided.stride_w = 2;
  // No biases: a constant logit offset would make the prediction nearly input-independent.
  Sequential subsampling({std::make_shared<Conv2d>(1, 2, 1, rng, strided, false), std::make_shared<Flatten>(),
                          std::make_shared<Linear>(2 * 6 * 6, 10, rng, false)});
  const double c = shift_consistency(subsampling, images, 3, ShiftPadding::Circular, 7, 16);
  MESSAGE("strided subsampling model: consistency " << c << "%");
  CHECK(c < 60.0);
  CHECK(shift_consistency(subsampling, images, 0, ShiftPadding::Zeros, 7) == 100.0);  // no shift, same prediction
  // Same seed, same answer; batch size does not matter.
  CHECK(shift_consistency(subsampling, images, 3, ShiftPadding::Zeros, 9, 64) ==
        shift_consistency(subsampling, images, 3, ShiftPadding::Zeros, 9, 64));
  CHECK_THROWS_NAMING(shift_consistency(invariant, Tensor::zeros({4, 12, 12}), 1, ShiftPadding::Zeros, 0),
                      "shift_consistency", "[4, 12, 12]");
  Conv2d maps(1, 2, 3, rng);
  CHECK_THROWS_NAMING(shift_consistency(maps, images, 1, ShiftPadding::Zeros, 0), "shift_consistency",
                      "[64, 2, 10, 10]");
}

TEST_CASE("equivariance metrics: deformation stability grows with ||grad tau|| and is ~0 at 0") {
  Rng rng(7);
  Tensor images = Tensor::uniform({6, 1, 16, 16}, rng);
  auto identity = [](const Tensor& t) { return t; };
  const auto points = deformation_stability(identity, images, {0.0f, 0.05f, 0.2f}, 3.0f, 11, 4);
  REQUIRE(points.size() == 3);
  CHECK(points[0].gradient_norm == 0.0);
  CHECK(points[0].relative_change < 1e-4);
  CHECK(points[1].gradient_norm == doctest::Approx(0.05).epsilon(1e-3));
  CHECK(points[2].gradient_norm == doctest::Approx(0.2).epsilon(1e-3));
  CHECK(points[1].relative_change > 1e-3);
  CHECK(points[2].relative_change > points[1].relative_change);
  // Global average pooling barely notices a deformation that the raw pixels do.
  GlobalAvgPool2d pool;
  const auto pooled = deformation_stability(pool, images, {0.2f}, 3.0f, 11, 4);
  CHECK(pooled[0].relative_change < points[2].relative_change);
  CHECK_THROWS_NAMING(deformation_stability(identity, images, {}, 1.0f, 0), "deformation_stability");
}

TEST_CASE("equivariance metrics: eval mode during the measurement, previous mode restored; bad shapes named") {
  ModeProbe probe;
  Rng rng(8);
  Tensor x = Tensor::randn({2, 1, 5, 5}, rng);
  probe.train();
  equivariance_error(probe, x, shift_transform(1, 0, ShiftPadding::Circular));
  CHECK_FALSE(probe.saw_training);
  CHECK(probe.is_training());
  CHECK_THROWS_NAMING(relative_squared_error(Tensor::zeros({2, 3}), Tensor::zeros({3, 2}), "my_metric"), "my_metric",
                      "[2, 3]", "[3, 2]");
  // A layer whose output does not follow the transform's shape change (rot90 of a non-square map vs a fixed crop).
  Sequential cropper({std::make_shared<CropRows>()});
  Tensor wide = Tensor::randn({1, 1, 5, 8}, rng);
  CHECK_THROWS_NAMING(per_layer_equivariance_error(cropper, wide, rot90_transform(1)), "per_layer_equivariance_error",
                      "0 CropRows", "[1, 1, 8, 4]", "[1, 1, 4, 5]");
  CHECK(relative_squared_error(Tensor::zeros({2}), Tensor::zeros({2})) == 0.0);
  CHECK(std::isinf(relative_squared_error(Tensor::zeros({2}), Tensor::ones({2}))));
}
