// p4 group convolutions: the filter-bank expansion (by hand, vs a composition of rot90/concat, gradients), and
// the equivariance property itself for P4Lift, P4Conv, a 3-layer stack and the pooled invariant — with a check
// that the same property test fails for things that are not p4-equivariant.
#include <doctest/doctest.h>

#include "engine/autograd.h"
#include "engine/conv.h"
#include "engine/elementwise.h"
#include "engine/p4_weights.h"
#include "engine/reduce.h"
#include "engine/resample.h"
#include "engine/rng.h"
#include "engine/shape_ops.h"
#include "layers/conv2d.h"
#include "layers/p4_conv.h"
#include "layers/p4_lift.h"
#include "layers/p4_pool.h"
#include "tests/gradcheck.h"
#include "tests/test_helpers.h"

using namespace eq;
using eq::testing::max_abs_diff;
using V = const std::vector<Tensor>&;

namespace {

// The action of a 90-degree rotation on a p4 map [N, C, 4, H, W]: every map rotated (rot90 on H, W) and the
// rotation axis shifted by one: out[:, :, r] = rot90(y[:, :, r-1]).
Tensor rotate_p4(const Tensor& y) {
  return rot90(concat({slice(y, 2, 3, 4), slice(y, 2, 0, 3)}, 2), 1);
}

// max |f(rot90 x) - rotate_p4(f(x))| relative to max |f(x)|: ~1e-7 for an exactly equivariant layer.
template <class F>
float p4_equivariance_error(F f, const Tensor& x, bool input_is_p4) {
  NoGrad no_grad;
  Tensor y = f(x);
  Tensor y_rot = f(input_is_p4 ? rotate_p4(x) : rot90(x, 1));
  Tensor expected = rotate_p4(y);
  if (y_rot.shape() != expected.shape()) return 1e9f;
  float scale = 0;
  for (float v : y.to_vector()) scale = std::max(scale, std::fabs(v));
  return max_abs_diff(y_rot, expected) / std::max(scale, 1e-12f);
}

Tensor base_3x3() { return Tensor::from({1, 1, 3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9}); }

}  // namespace

TEST_CASE("p4: lifting bank rotates the filter counter-clockwise, as rot90 (by hand)") {
  // [[1,2,3],[4,5,6],[7,8,9]] rotated 90 degrees counter-clockwise is [[3,6,9],[2,5,8],[1,4,7]].
  Tensor bank = p4_lift_weights(base_3x3());
  CHECK(bank.shape() == Shape{4, 1, 3, 3});
  const std::vector<float> v = bank.to_vector();
  CHECK(std::vector<float>(v.begin(), v.begin() + 9) == std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8, 9});
  CHECK(std::vector<float>(v.begin() + 9, v.begin() + 18) == std::vector<float>{3, 6, 9, 2, 5, 8, 1, 4, 7});
  CHECK(std::vector<float>(v.begin() + 18, v.begin() + 27) == std::vector<float>{9, 8, 7, 6, 5, 4, 3, 2, 1});
  CHECK(std::vector<float>(v.begin() + 27, v.begin() + 36) == std::vector<float>{7, 4, 1, 8, 5, 2, 9, 6, 3});
}

TEST_CASE("p4: group bank shifts the input-rotation axis by the output rotation (by hand)") {
  // w [1, 1, 4, 1, 1] with plane s holding 10 + s: bank[r, s] = w[(s - r) mod 4], so bank row r = 1 reads planes
  // 3, 0, 1, 2 -> 13, 10, 11, 12.
  Tensor w = Tensor::from({1, 1, 4, 1, 1}, {10, 11, 12, 13});
  Tensor bank = p4_group_weights(w);
  CHECK(bank.shape() == Shape{4, 4, 1, 1});
  CHECK(bank.to_vector() == std::vector<float>{10, 11, 12, 13, 13, 10, 11, 12, 12, 13, 10, 11, 11, 12, 13, 10});
  CHECK(p4_expand_bias(Tensor::from({2}, {1, 2})).to_vector() == std::vector<float>{1, 1, 1, 1, 2, 2, 2, 2});
}

TEST_CASE("p4: gather expansion equals the rot90/concat composition, values and gradients") {
  Rng rng(1);
  for (int k : {1, 2, 3, 5}) {
    INFO("kernel " << k);
    Tensor wl = Tensor::randn({3, 2, k, k}, rng).set_requires_grad();
    Tensor wg = Tensor::randn({3, 2, 4, k, k}, rng).set_requires_grad();
    CHECK(max_abs_diff(p4_lift_weights(wl), p4_lift_weights_reference(wl)) == 0.0f);
    CHECK(max_abs_diff(p4_group_weights(wg), p4_group_weights_reference(wg)) == 0.0f);
    // Gradients of the same weighted sum through both paths.
    Tensor seed_l = Tensor::randn({12, 2, k, k}, rng), seed_g = Tensor::randn({12, 8, k, k}, rng);
    p4_lift_weights(wl).backward(seed_l);
    p4_group_weights(wg).backward(seed_g);
    Tensor gl = wl.grad().clone(), gg = wg.grad().clone();
    wl.zero_grad();
    wg.zero_grad();
    p4_lift_weights_reference(wl).backward(seed_l);
    p4_group_weights_reference(wg).backward(seed_g);
    CHECK(max_abs_diff(gl, wl.grad()) < 1e-5f);
    CHECK(max_abs_diff(gg, wg.grad()) < 1e-5f);
  }
}

TEST_CASE("p4: gradient checks of the expansion ops") {
  Rng rng(2);
  Tensor wl = Tensor::randn({2, 3, 3, 3}, rng).set_requires_grad();
  Tensor wg = Tensor::randn({3, 2, 4, 3, 3}, rng).set_requires_grad();
  Tensor b = Tensor::randn({3}, rng).set_requires_grad();
  CHECK_GRADIENTS([](V t) { return p4_lift_weights(t[0]); }, {wl});
  CHECK_GRADIENTS([](V t) { return p4_group_weights(t[0]); }, {wg});
  CHECK_GRADIENTS([](V t) { return p4_expand_bias(t[0]); }, {b});
}

TEST_CASE("p4: P4Lift is rotation equivariant (zeros, circular, reflect padding; odd, even, non-square maps)") {
  Rng rng(3);
  for (PadMode pad : {PadMode::Zeros, PadMode::Circular, PadMode::Reflect})
    for (const Shape& s : {Shape{2, 3, 9, 9}, Shape{2, 3, 8, 8}, Shape{1, 2, 7, 10}}) {
      INFO(pad_mode_name(pad) << " " << shape_str(s));
      P4Lift lift(static_cast<int>(s[1]), 4, 3, rng, same_padding(3, pad));
      Tensor x = Tensor::randn(s, rng);
      CHECK(lift(x).shape() == Shape{s[0], 4, 4, s[2], s[3]});
      CHECK(p4_equivariance_error([&](const Tensor& v) { return lift(v); }, x, false) < 1e-5f);
    }
  P4Lift lift5(1, 2, 5, rng);
  CHECK(p4_equivariance_error([&](const Tensor& v) { return lift5(v); }, Tensor::randn({2, 1, 11, 11}, rng), false) <
        1e-5f);
}

TEST_CASE("p4: P4Conv is rotation equivariant") {
  Rng rng(4);
  for (PadMode pad : {PadMode::Zeros, PadMode::Circular}) {
    INFO(pad_mode_name(pad));
    P4Conv conv(3, 5, 3, rng, same_padding(3, pad));
    Tensor x = Tensor::randn({2, 3, 4, 10, 10}, rng);
    CHECK(conv(x).shape() == Shape{2, 5, 4, 10, 10});
    CHECK(p4_equivariance_error([&](const Tensor& v) { return conv(v); }, x, true) < 1e-5f);
  }
  P4Conv conv5(2, 2, 5, rng);
  CHECK(p4_equivariance_error([&](const Tensor& v) { return conv5(v); }, Tensor::randn({1, 2, 4, 9, 7}, rng), true) <
        1e-5f);
}

TEST_CASE("p4: a 3-layer p4 stack is equivariant, and P4Pool + global pool is rotation invariant") {
  Rng rng(5);
  P4Lift l1(1, 6, 3, rng);
  P4Conv l2(6, 6, 3, rng, same_padding(3, PadMode::Circular));
  P4Conv l3(6, 4, 3, rng);
  P4Pool rotation_max;
  auto features = [&](const Tensor& x) {
    Tensor h = relu(l1(x));
    h = p4_max_pool2d(relu(l2(h)), Pool2dOptions{});  // 2x2 windows tile a 16x16 map symmetrically
    return l3(h);
  };
  Tensor x = Tensor::randn({3, 1, 16, 16}, rng);
  CHECK(features(x).shape() == Shape{3, 4, 4, 8, 8});
  CHECK(p4_equivariance_error(features, x, false) < 1e-5f);

  auto invariant = [&](const Tensor& v) { return mean(rotation_max(features(v)), {2, 3}); };  // [N, 4]
  Tensor z = invariant(x);
  for (int k = 1; k < 4; ++k) {
    INFO("rotation by " << 90 * k << " degrees");
    CHECK(max_abs_diff(invariant(rot90(x, k)), z) < 1e-5f);
  }
  P4Pool rotation_mean(P4PoolMode::Mean);
  Tensor zm = mean(rotation_mean(features(x)), {2, 3});
  CHECK(max_abs_diff(mean(rotation_mean(features(rot90(x, 1))), {2, 3}), zm) < 1e-5f);
}

TEST_CASE("p4: the property test fails for layers that are not p4-equivariant (it is not vacuous)") {
  Rng rng(6);
  Tensor x = Tensor::randn({2, 3, 9, 9}, rng);
  // A plain conv: rot90(conv(x)) != conv(rot90(x)).
  Conv2d plain(3, 4, 3, rng, same_padding(3));
  Tensor y = plain(x), y_rot = plain(rot90(x, 1));
  CHECK(max_abs_diff(y_rot, rot90(y, 1)) > 0.1f);
  // Four copies of the same unrotated filter, dressed up as a p4 map: the check must reject it.
  Tensor w = Tensor::randn({4, 3, 3, 3}, rng);
  auto unrotated = [&](const Tensor& v) {
    Tensor bank = reshape(stack({w, w, w, w}, 1), {16, 3, 3, 3});
    Tensor out = conv2d(v, bank, Tensor(), same_padding(3));
    return reshape(out, {v.size(0), 4, 4, v.size(2), v.size(3)});
  };
  CHECK(p4_equivariance_error(unrotated, x, false) > 0.1f);
  // A group conv that rotates the filters but forgets the cyclic shift of the input-rotation axis.
  Tensor wg = Tensor::randn({2, 3, 4, 3, 3}, rng);
  auto no_shift = [&](const Tensor& v) {
    std::vector<Tensor> banks;
    for (int r = 0; r < 4; ++r) banks.push_back(reshape(rot90(wg, r), {2, 12, 3, 3}));
    Tensor bank = reshape(stack(banks, 1), {8, 12, 3, 3});
    Tensor out = conv2d(reshape(v, {v.size(0), 12, v.size(3), v.size(4)}), bank, Tensor(), same_padding(3));
    return reshape(out, {v.size(0), 2, 4, v.size(3), v.size(4)});
  };
  CHECK(p4_equivariance_error(no_shift, Tensor::randn({2, 3, 4, 9, 9}, rng), true) > 0.1f);
}

TEST_CASE("p4: strides and even kernels are exact only when the output grid is symmetric about the centre") {
  // Stride 2, pad 1, k = 3: on 9x9 the sampled centres are rows 0, 2, .., 8 (symmetric about 4); on 8x8 they are
  // 0, 2, 4, 6 (not symmetric about 3.5), so rotating the input samples different positions.
  Rng rng(7);
  Conv2dOptions strided = same_padding(3);
  strided.stride_h = strided.stride_w = 2;
  P4Lift lift(2, 3, 3, rng, strided);
  auto f = [&](const Tensor& v) { return lift(v); };
  CHECK(p4_equivariance_error(f, Tensor::randn({2, 2, 9, 9}, rng), false) < 1e-5f);
  CHECK(p4_equivariance_error(f, Tensor::randn({2, 2, 8, 8}, rng), false) > 0.05f);
  // An even kernel is exact with symmetric padding (k = 2, pad 1: 8x8 -> 9x9, centres on the half-pixel grid,
  // symmetric) and broken by the asymmetric "same" padding that keeps 8x8 (pad 0 before, 1 after).
  Conv2dOptions pad1;
  pad1.pad_h = pad1.pad_w = 1;
  P4Lift even(2, 3, 2, rng, pad1);
  Tensor x = Tensor::randn({2, 2, 8, 8}, rng);
  CHECK(even(x).shape() == Shape{2, 3, 4, 9, 9});
  CHECK(p4_equivariance_error([&](const Tensor& v) { return even(v); }, x, false) < 1e-5f);
  P4Lift even_same(2, 3, 2, rng, Conv2dOptions{});
  auto same_size = [&](const Tensor& v) { return even_same(pad2d(v, 0, 1, 0, 1, PadMode::Zeros)); };
  CHECK(same_size(x).shape() == Shape{2, 3, 4, 8, 8});
  CHECK(p4_equivariance_error(same_size, x, false) > 0.05f);
}

TEST_CASE("p4: layer and pooling gradient checks") {
  Rng rng(8);
  P4Lift lift(2, 3, 3, rng);
  Tensor x = Tensor::randn({2, 2, 5, 6}, rng).set_requires_grad();
  CHECK_GRADIENTS([&](V t) { return lift(t[0]); }, {x, lift.weight, lift.bias});

  P4Conv conv(2, 2, 3, rng, same_padding(3, PadMode::Circular));
  Tensor xp = Tensor::randn({2, 2, 4, 5, 5}, rng).set_requires_grad();
  CHECK_GRADIENTS([&](V t) { return conv(t[0]); }, {xp, conv.weight, conv.bias});

  // Distinct values (0.05 apart) keep the maxima away from ties.
  const int64_t n = 2 * 2 * 4 * 4 * 4;
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = 0.05f * static_cast<float>(i) - 3.0f;
  for (int64_t i = n - 1; i > 0; --i) std::swap(v[static_cast<size_t>(i)], v[static_cast<size_t>(rng.randint(i + 1))]);
  Tensor xm = Tensor::from({2, 2, 4, 4, 4}, v).set_requires_grad();
  CHECK_GRADIENTS([](V t) { return p4_rotation_pool(t[0], P4PoolMode::Max); }, {xm});
  CHECK_GRADIENTS([](V t) { return p4_rotation_pool(t[0], P4PoolMode::Mean); }, {xm});
  CHECK_GRADIENTS([](V t) { return p4_max_pool2d(t[0], Pool2dOptions{}); }, {xm});
  P4MaxPool2d pool(2);
  CHECK(pool(xm).shape() == Shape{2, 2, 4, 2, 2});
  CHECK(pool.name() == "P4MaxPool2d(k=2, stride=2)");
}

TEST_CASE("p4: bad inputs name the layer and the shapes") {
  Rng rng(9);
  P4Lift lift(3, 4, 3, rng);
  P4Conv conv(3, 4, 3, rng);
  CHECK_THROWS_NAMING(lift(Tensor::zeros({2, 2, 8, 8})), "P4Lift(3, 4, k=3", "[2, 2, 8, 8]");
  CHECK_THROWS_NAMING(conv(Tensor::zeros({2, 3, 8, 8})), "P4Conv(3, 4, k=3", "[N, 3, 4, H, W]", "[2, 3, 8, 8]");
  CHECK_THROWS_NAMING(conv(Tensor::zeros({2, 3, 3, 8, 8})), "P4Conv", "[2, 3, 3, 8, 8]");
  CHECK_THROWS_NAMING(conv(Tensor::zeros({2, 2, 4, 8, 8})), "P4Conv", "[2, 2, 4, 8, 8]");
  CHECK_THROWS_NAMING(p4_lift_weights(Tensor::zeros({2, 3, 3, 2})), "p4_lift_weights", "[2, 3, 3, 2]");
  CHECK_THROWS_NAMING(p4_group_weights(Tensor::zeros({2, 3, 3, 3, 3})), "p4_group_weights", "[2, 3, 3, 3, 3]");
  CHECK_THROWS_NAMING(p4_expand_bias(Tensor::zeros({2, 2})), "p4_expand_bias", "[2, 2]");
  CHECK_THROWS_NAMING(p4_rotation_pool(Tensor::zeros({2, 3, 8, 8})), "p4_rotation_pool", "[2, 3, 8, 8]");
  CHECK_THROWS_NAMING(p4_max_pool2d(Tensor::zeros({2, 3, 2, 8, 8}), Pool2dOptions{}), "p4_max_pool2d",
                      "[2, 3, 2, 8, 8]");
  Conv2dOptions grouped = same_padding(3);
  grouped.groups = 3;
  CHECK_THROWS_NAMING(P4Conv(3, 3, 3, rng, grouped), "P4Conv", "groups");
  CHECK_THROWS_NAMING(P4Lift(0, 3, 3, rng), "P4Lift", "positive");
  CHECK(lift.name() == "P4Lift(3, 4, k=3, pad=1 zeros)");
}
